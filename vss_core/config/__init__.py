"""Project configuration: the fastapi-vss YAML files, their keys, and configs fetched from a server."""
