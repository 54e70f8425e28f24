"""The store: the only package that speaks SQL. PostgreSQL (or SQLite) holds the truth."""

from sqlalchemy import Engine

from conveyor.store.claims import ClaimStore
from conveyor.store.engine import make_engine
from conveyor.store.jobs import JobStore
from conveyor.store.records import ClaimedJob, ExpiredRun, Finish, Inserted, NewJob, ProgressUpdate
from conveyor.store.runs import RunStore
from conveyor.store.upkeep import UpkeepStore
from conveyor.store.workers import WorkerStore

__all__ = [
    "ClaimStore",
    "ClaimedJob",
    "Engine",
    "ExpiredRun",
    "Finish",
    "Inserted",
    "JobStore",
    "NewJob",
    "ProgressUpdate",
    "RunStore",
    "UpkeepStore",
    "WorkerStore",
    "make_engine",
]
