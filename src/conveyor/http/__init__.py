"""Conveyor's HTTP API as a Python client, for services that do not import the job types.

``Client`` (sync) and ``AsyncClient`` speak only HTTP (httpx): they return the Python
client's ``JobView``/``Page``/``BulkResult`` and raise its exception classes, mapped from
the stable ``code`` of each API error.
"""

from conveyor.http.aio import AsyncClient
from conveyor.http.errors import Forbidden, InvalidRequest, ServerUnreachable, Unauthorized
from conveyor.http.sync import Client
from conveyor.http.wire import Accepted, JobRequest

__all__ = [
    "Accepted",
    "AsyncClient",
    "Client",
    "Forbidden",
    "InvalidRequest",
    "JobRequest",
    "ServerUnreachable",
    "Unauthorized",
]
