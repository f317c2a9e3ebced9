"""The job model and the storage backends. Imports nothing from actors/ or supervisor/.

PostgresStorage is imported on first use, so psycopg (the ``postgres`` extra)
is needed only by those who use it.
"""

from typing import TYPE_CHECKING, Any

from storage.clock import Clock, ManualClock, SystemClock
from storage.contract import Storage
from storage.job import Job
from storage.memory import MemoryStorage
from storage.model import (
    Claim,
    Disposition,
    JobInfo,
    JobResult,
    NewJob,
    Outcome,
    QueueStats,
    Status,
)
from storage.policy import Backoff, MaxRetries, Policy
from storage.sqlite import SqliteStorage

if TYPE_CHECKING:
    from storage.postgres import PostgresStorage


def __getattr__(name: str) -> Any:
    if name == "PostgresStorage":
        from storage.postgres import PostgresStorage  # noqa: PLC0415 - optional dependency

        return PostgresStorage
    raise AttributeError(f"module 'storage' has no attribute {name!r}")


__all__ = [
    "Backoff",
    "Claim",
    "Clock",
    "Disposition",
    "Job",
    "JobInfo",
    "JobResult",
    "ManualClock",
    "MaxRetries",
    "MemoryStorage",
    "NewJob",
    "Outcome",
    "Policy",
    "PostgresStorage",
    "QueueStats",
    "SqliteStorage",
    "Status",
    "Storage",
    "SystemClock",
]
