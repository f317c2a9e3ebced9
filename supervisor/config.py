"""WorkerConfig: which jobs to run, on which queues, with how many workers."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self

from storage import Job, MemoryStorage, Storage
from supervisor.manager import Manager

if TYPE_CHECKING:
    from supervisor.handle import QueueHandle

DEFAULT_WORKER_COUNT = 4


def no_state(handle: QueueHandle) -> None:
    """The default state factory: jobs get ``None`` as their state."""
    return None


def _importable(thing: object, what: str) -> None:
    # Arbiters are spawned, not forked: what they need must travel by name.
    try:
        pickle.dumps(thing)
    except Exception as exc:
        raise TypeError(
            f"{what} {thing!r} must be importable by name (defined at module top level): {exc}"
        ) from exc


class WorkerConfig:
    """Build with ``register`` and ``set_worker_count``, then ``start``.

    ``state`` is called once per worker actor, inside the arbiter process, with
    a QueueHandle (so jobs can queue jobs); its return value is passed to
    every ``Job.run`` that worker calls. It must be importable by name.

    An arbiter whose resident memory passes ``max_rss`` bytes, or that has
    finished ``max_jobs_per_arbiter`` jobs, stops pulling, lets its running
    jobs finish and is replaced: nothing is lost or counted as failed.
    """

    def __init__(
        self,
        *,
        storage: Storage | None = None,
        state: Callable[[QueueHandle], Any] = no_state,
        max_rss: int | None = None,
        max_jobs_per_arbiter: int | None = None,
    ) -> None:
        if max_rss is not None and max_rss <= 0:
            raise ValueError(f"max_rss must be a positive number of bytes, got {max_rss}")
        if max_jobs_per_arbiter is not None and max_jobs_per_arbiter <= 0:
            raise ValueError(f"max_jobs_per_arbiter must be positive, got {max_jobs_per_arbiter}")
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self.state = state
        self.max_rss = max_rss
        self.max_jobs_per_arbiter = max_jobs_per_arbiter
        self.jobs: dict[str, type[Job]] = {}
        self.queues: dict[str, int] = {}

    def register(self, job: type[Job]) -> Self:
        """Run jobs of this class. Its queue gets the default count unless one was set."""
        if not (isinstance(job, type) and issubclass(job, Job)):
            raise TypeError(f"register() takes a Job subclass, got {job!r}")
        known = self.jobs.get(job.NAME)
        if known is not None and known is not job:
            raise ValueError(f"two job classes share the NAME {job.NAME!r}: {known} and {job}")
        job.field_names()  # refuses a class that is not a dataclass, now
        _importable(job, "job class")
        self.jobs[job.NAME] = job
        self.queues.setdefault(job.QUEUE, DEFAULT_WORKER_COUNT)
        return self

    def set_worker_count(self, queue: str, count: int) -> Self:
        """Worker actors for ``queue`` in each arbiter process."""
        if count < 0:
            raise ValueError(f"worker count for {queue!r} must be >= 0, got {count}")
        self.queues[queue] = count
        return self

    def start(self, processes: int = 1) -> Manager:
        """Start the StorageActor, the Manager and ``processes`` arbiters."""
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        if not self.jobs:
            raise ValueError("register at least one job before start()")
        _importable(self.state, "state factory")
        return Manager(self, processes)
