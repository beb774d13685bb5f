"""fastapi-vss's result shape and result files, shared by search, label sheets and the REST API."""
