"""The REST service behind api.py: projects, engines, request batching and jobs (fastapi-vss's API)."""
