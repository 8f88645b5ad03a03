"""Hub tests: a local Hub-API server (hub_server.py) and the fixtures built on it (conftest.py)."""
