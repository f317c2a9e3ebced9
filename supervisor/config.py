"""WorkerConfig: which jobs to run, on which queues, with how many workers."""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable, Sequence
from typing import Any, Self, cast

from actors.arbiter import ArbiterSpec
from actors.middleware import Middleware, check_middleware
from actors.refs import portable, reference
from storage import Job, MemoryStorage, Storage
from supervisor.handle import QueueHandle, check_int_at_least, check_queue_name
from supervisor.manager import Manager

DEFAULT_WORKER_COUNT = 4
# Jobs each queue of an arbiter claims beyond its workers, so that a worker
# that finishes finds its next job at hand instead of waiting a round trip.
DEFAULT_PREFETCH = 4


def no_state(handle: QueueHandle) -> None:
    """The default state factory: jobs get ``None`` as their state."""
    return None


class WorkerConfig:
    """Build with ``register`` and ``set_worker_count``, then ``start``.

    ``state`` is called once per worker actor, inside the arbiter process, with
    a QueueHandle (so jobs can queue jobs); its return value is passed to
    every ``Job.run`` that worker calls. It must be importable by name.

    An arbiter whose resident memory passes ``max_rss`` bytes, or that has
    finished ``max_jobs_per_arbiter`` jobs, stops pulling, lets its running
    jobs finish and is replaced: nothing is lost or counted as failed.

    ``prefetch``: jobs each queue of an arbiter claims beyond its workers, so
    that a worker that finishes finds its next job at hand. For a queue
    whose jobs end fast the margin deepens to what its workers run in about
    2 ms (at most 64 jobs; see actors/executor.py). A claimed job that has
    not started is held for that arbiter (heartbeated, never taken over as
    stale) and goes back unexecuted if the arbiter stops or dies. 0 claims
    only for idle workers, and never deepens.

    ``middleware``: Middleware instances whose hooks run in every arbiter
    around every job (see actors/middleware.py); each must be picklable and
    its class importable by name.
    """

    def __init__(
        self,
        *,
        storage: Storage | None = None,
        state: Callable[[QueueHandle], Any] = no_state,
        max_rss: int | None = None,
        max_jobs_per_arbiter: int | None = None,
        prefetch: int = DEFAULT_PREFETCH,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        check_int_at_least(prefetch, 0, "prefetch", "an int >= 0")
        self.middleware = check_middleware(middleware)
        for hook in self.middleware:
            portable(hook, "middleware")  # arbiters unpickle them: refuse now what cannot
        if max_rss is not None:
            check_int_at_least(max_rss, 1, "max_rss", "a positive int (bytes)")
        if max_jobs_per_arbiter is not None:
            check_int_at_least(max_jobs_per_arbiter, 1, "max_jobs_per_arbiter", "a positive int")
        if not callable(state):
            raise TypeError(
                "state must be a callable that takes a QueueHandle and returns one worker's "
                f"state; got {state!r} ({type(state).__qualname__})"
            )
        self.storage: Storage = MemoryStorage() if storage is None else _storage(storage)
        self.state = state
        self.max_rss = max_rss
        self.max_jobs_per_arbiter = max_jobs_per_arbiter
        self.prefetch = prefetch
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
        reference(job, "job class")  # arbiters import it by name: refuse now what cannot
        kind = job.is_async()
        for other in self.jobs.values():
            if other.QUEUE == job.QUEUE and other.is_async() != kind and other is not job:
                sync, async_ = (other, job) if kind else (job, other)
                raise ValueError(
                    f"queue {job.QUEUE!r} would run both {sync.NAME} (def run) and "
                    f"{async_.NAME} (async def run): give async jobs a queue of their own "
                    "(QUEUE = ...), whose slots run on the arbiter's event loop"
                )
        self.jobs[job.NAME] = job
        self.queues.setdefault(job.QUEUE, DEFAULT_WORKER_COUNT)
        return self

    def set_worker_count(self, queue: str, count: int) -> Self:
        """Worker actors for ``queue`` in each arbiter process."""
        check_queue_name(queue, "set_worker_count() queue")
        check_int_at_least(count, 0, f"worker count for queue {queue!r}", "an int >= 0")
        self.queues[queue] = count
        return self

    def start(self, processes: int = 1) -> Manager:
        """Open the storage and start the Manager and ``processes`` arbiters.

        ``processes=0`` starts a producer: it queues and inspects jobs for
        other hosts to run (on a shared storage), and runs none itself.
        """
        check_int_at_least(processes, 0, "processes", "an int >= 0")
        if processes and not self.jobs:
            raise ValueError(
                "register at least one job before start(), or start(processes=0) "
                "for a host that only queues"
            )
        # Frozen now: later changes to this config reach no running Manager.
        return Manager(storage=self.storage, spec=self.arbiter_spec(), processes=processes)

    def arbiter_spec(self) -> ArbiterSpec:
        """What every arbiter of a Manager started from this config runs (index
        and runner are each arbiter's own); refuses what arbiters could not
        import."""
        jobs = self.jobs.values()
        return ArbiterSpec(
            index=-1,
            runner="",
            jobs=tuple(reference(job, "job class") for job in jobs),
            queues=tuple((q, n) for q, n in self.queues.items() if n > 0),
            state_factory=portable(self.state, "state factory"),
            handle_factory=portable(QueueHandle, "handle factory"),
            heartbeat_interval=min((job.HEARTBEAT_INTERVAL for job in jobs), default=5.0),
            sys_path=tuple(sys.path),
            max_rss=self.max_rss,
            max_jobs=self.max_jobs_per_arbiter,
            prefetch=self.prefetch,
            async_queues=tuple(sorted({j.QUEUE for j in jobs if j.is_async()})),
            middleware=pickle.dumps(self.middleware) if self.middleware else b"",
        )


# Backends do not subclass the Protocol, so "is a Storage" means "has its members".
_STORAGE_MEMBERS = tuple(name for name in vars(Storage) if not name.startswith("_"))


def _storage(storage: object) -> Storage:
    # Looking on the class first runs no property of a storage not yet open.
    missing = [
        n for n in _STORAGE_MEMBERS if not (hasattr(type(storage), n) or hasattr(storage, n))
    ]
    if not missing and not isinstance(storage, type):
        return cast(Storage, storage)
    message = (
        "storage must be a Storage such as MemoryStorage(), SqliteStorage(path) or "
        "PostgresStorage(dsn); got "
    )
    if isinstance(storage, type):
        name = storage.__qualname__
        raise TypeError(f"{message}the class {name}: pass an instance, {name}(...)")
    message += f"{storage!r} ({type(storage).__qualname__})"
    if isinstance(storage, str | os.PathLike):
        message += f": for a file, pass SqliteStorage({os.fspath(storage)!r})"
    elif len(missing) < len(_STORAGE_MEMBERS) / 2:
        # Most of the contract is there: a backend of one's own, unfinished.
        message += f"; it lacks {', '.join(missing)}"
    raise TypeError(message)
