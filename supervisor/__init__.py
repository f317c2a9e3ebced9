"""jobarbiter's public face: everything a user imports comes from here.

from supervisor import WorkerConfig, Job, Backoff, MaxRetries, MemoryStorage
"""

from storage import (
    Backoff,
    Job,
    JobInfo,
    JobResult,
    ManualClock,
    MaxRetries,
    MemoryStorage,
    QueueStats,
    SqliteStorage,
    Status,
    Storage,
)
from supervisor.config import DEFAULT_WORKER_COUNT, WorkerConfig
from supervisor.handle import QueueHandle
from supervisor.manager import ArbiterStats, Manager, ManagerStats

__all__ = [
    "DEFAULT_WORKER_COUNT",
    "ArbiterStats",
    "Backoff",
    "Job",
    "JobInfo",
    "JobResult",
    "Manager",
    "ManagerStats",
    "ManualClock",
    "MaxRetries",
    "MemoryStorage",
    "QueueHandle",
    "QueueStats",
    "SqliteStorage",
    "Status",
    "Storage",
    "WorkerConfig",
]
