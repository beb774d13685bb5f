"""VSS engine, used by the CLI, the Streamlit pages, the REST API and the tests; never imports streamlit.

Packages, lowest first: ``files`` (safe file reading), ``config`` (projects), ``fastapi_vss`` (result shape),
``redis`` (the Redis layout and its stores), ``embed`` (images to vectors; torch is imported lazily),
``labeling`` (search, votes, predict, load, decisions), ``mining`` (rare events), ``jobs`` (background and
RQ jobs), ``rest`` (the service behind api.py).  tests/test_architecture.py checks the directions.
"""
