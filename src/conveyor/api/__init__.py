"""The HTTP API (FastAPI): everything the Python client can do, for any HTTP client."""

from conveyor.api.app import create_app

__all__ = ["create_app"]
