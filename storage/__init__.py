"""The job model and the storage backends. Imports nothing from actors/ or supervisor/."""

from storage.clock import Clock, ManualClock, SystemClock
from storage.contract import Storage
from storage.job import Job
from storage.memory import MemoryStorage
from storage.model import (
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

__all__ = [
    "Backoff",
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
    "QueueStats",
    "SqliteStorage",
    "Status",
    "Storage",
    "SystemClock",
]
