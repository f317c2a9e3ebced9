"""jobarbiter: its Manager (and so its StorageActor) runs in the harness process,
which is also the producer; its arbiter processes are the workers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

from benchmarks.peers import marks
from benchmarks.peers.harness import Peer, Spec, recreate_pg_database, task_for
from supervisor import DEFAULT_WORKER_COUNT, Job, Manager, MemoryStorage, Storage, WorkerConfig

STOP_TIMEOUT = 2.0


@dataclass
class PeerNoop(Job):
    def run(self, state: object) -> None:
        marks.noop()


@dataclass
class PeerNap(Job):
    ms: float

    def run(self, state: object) -> None:
        marks.nap(self.ms)


@dataclass
class PeerCrash(Job):
    hold: float

    def run(self, state: object) -> None:
        marks.crash_probe(self.hold)


JOBS: dict[str, type[Job]] = {"noop": PeerNoop, "sleep": PeerNap, "crash": PeerCrash}


class JobarbiterPeer(Peer):
    name = "jobarbiter"
    distributions: ClassVar[tuple[str, ...]] = ("jobarbiter", "pykka", "msgpack")
    broker = "MemoryStorage in the host process"
    reliability = (
        "defaults: a dead arbiter's jobs are released as failed attempts and retried "
        "(MaxRetries.count(5), first retry after Backoff.exponential(2): 2 s)"
    )

    def __init__(self) -> None:
        self._manager: Manager | None = None

    def storage(self) -> Storage:
        return MemoryStorage()

    def workers(self, spec: Spec) -> int:
        return spec.concurrency or DEFAULT_WORKER_COUNT

    def describe(self, spec: Spec) -> list[str]:
        return [
            "WorkerConfig(storage=MemoryStorage())"
            f".set_worker_count('default', {self.workers(spec)})"
            f".start(processes={spec.processes}), in the harness process"
        ]

    @contextlib.contextmanager
    def in_process(self, spec: Spec) -> Iterator[Callable[[], list[int]]]:
        config = (
            WorkerConfig(storage=self.storage())
            .register(PeerNoop)
            .register(PeerNap)
            .register(PeerCrash)
            .set_worker_count("default", self.workers(spec))
        )
        manager = self._manager = config.start(processes=spec.processes)

        def pids() -> list[int]:
            return [a.pid for a in manager.stats().arbiters if a.pid is not None]

        try:
            yield pids
        finally:
            self._manager = None
            manager.stop(timeout=STOP_TIMEOUT)

    def enqueue(self, workload: str, count: int, spec: Spec) -> None:
        assert self._manager is not None, "enqueue outside in_process"
        job_class, args = task_for(workload, spec, JOBS)
        self._manager.queue_many([job_class(*args)] * count)


class JobarbiterPostgresPeer(JobarbiterPeer):
    """The same, on PostgresStorage in the database procrastinate and PgQueuer use."""

    name = "jobarbiter-postgres"
    distributions = ("jobarbiter", "pykka", "msgpack", "psycopg")
    broker = "PostgresStorage (schema jobarbiter) in the peers' database"

    def reset(self) -> None:
        recreate_pg_database()  # an empty database, created if it did not exist

    def storage(self) -> Storage:
        from storage.postgres import PostgresStorage  # noqa: PLC0415 - postgres extra

        return PostgresStorage(marks.pg_dsn(), schema="jobarbiter")

    def describe(self, spec: Spec) -> list[str]:
        return [
            line.replace("MemoryStorage()", "PostgresStorage(dsn)")
            for line in super().describe(spec)
        ]
