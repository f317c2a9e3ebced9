"""jobarbiter's public face: everything a user imports comes from here.

from supervisor import WorkerConfig, Job, Backoff, MaxRetries, MemoryStorage
"""

from typing import TYPE_CHECKING, Any

from actors.context import JobContext, current_job
from actors.executor import JobInterrupted
from actors.middleware import ArbiterDied, JobOutcome, Middleware, OutcomeStatus
from actors.waiters import Ended
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
from storage.dependencies import UnknownParent
from supervisor.config import DEFAULT_WORKER_COUNT, WorkerConfig
from supervisor.errors import CrashLoopError, JobCancelled, JobFailed, JobNotFound, ManagerStopped
from supervisor.handle import QueueHandle
from supervisor.manager import Manager
from supervisor.schedules import CatchUp, Schedule
from supervisor.stats import (
    ENDINGS,
    ArbiterState,
    ArbiterStats,
    Histogram,
    ManagerStats,
    QueueFigures,
    ScheduleInfo,
    ScheduleKind,
)

if TYPE_CHECKING:
    from storage.postgres import PostgresStorage


def __getattr__(name: str) -> Any:
    if name == "PostgresStorage":
        import storage  # noqa: PLC0415 - PostgresStorage needs the postgres extra

        return storage.PostgresStorage
    raise AttributeError(f"module 'supervisor' has no attribute {name!r}")


__all__ = [
    "DEFAULT_WORKER_COUNT",
    "ENDINGS",
    "ArbiterDied",
    "ArbiterState",
    "ArbiterStats",
    "Backoff",
    "CatchUp",
    "CrashLoopError",
    "Ended",
    "Histogram",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobInfo",
    "JobInterrupted",
    "JobNotFound",
    "JobOutcome",
    "JobResult",
    "Manager",
    "ManagerStats",
    "ManagerStopped",
    "ManualClock",
    "MaxRetries",
    "MemoryStorage",
    "Middleware",
    "OutcomeStatus",
    "PostgresStorage",
    "QueueFigures",
    "QueueHandle",
    "QueueStats",
    "Schedule",
    "ScheduleInfo",
    "ScheduleKind",
    "SqliteStorage",
    "Status",
    "Storage",
    "UnknownParent",
    "WorkerConfig",
    "current_job",
]
