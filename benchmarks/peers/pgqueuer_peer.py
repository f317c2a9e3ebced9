"""PgQueuer on PostgreSQL (asyncpg), one ``PgQueuer.run`` per worker process.

A picked job whose heartbeat is older than ``heartbeat_timeout`` is picked
again by the next worker to dequeue; an idle worker dequeues when notified of
a new job or after ``dequeue_timeout``. Both defaults (30 s) are lowered to
5 s so the crash case fits its time limit.

Each worker runs this module (``python -m benchmarks.peers.pgqueuer_peer``),
which calls ``PgQueuer.run`` as ``pgq run`` does: ``pgq run`` of PgQueuer
1.6.0 exits at start-up, its ``--log-level`` reaching the logger set-up as a
string.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import timedelta

import asyncpg
from pgqueuer import AsyncpgDriver, PgQueuer, Queries
from pgqueuer.models import Job as PgJob

from benchmarks.peers import marks
from benchmarks.peers.harness import Peer, Spec, python_module, recreate_pg_database, task_for

CHUNK = 1000  # jobs per enqueue call
HEARTBEAT_TIMEOUT = timedelta(seconds=5)
DEQUEUE_TIMEOUT = timedelta(seconds=5)
DEFAULT_BATCH = 10  # PgQueuer's own default
ENTRYPOINTS = {"noop": "peers.noop", "sleep": "peers.nap", "crash": "peers.crash"}


def argument(job: PgJob) -> float:
    return float(json.loads(job.payload or b"0"))


async def create_pgqueuer() -> PgQueuer:
    """A PgQueuer with the three entrypoints (also usable as ``pgq run`` factory)."""
    pgq = PgQueuer(AsyncpgDriver(await asyncpg.connect(marks.pg_dsn())))

    @pgq.entrypoint(ENTRYPOINTS["noop"])
    async def noop(job: PgJob) -> None:
        marks.noop()

    @pgq.entrypoint(ENTRYPOINTS["sleep"])
    async def nap(job: PgJob) -> None:
        await marks.nap_async(argument(job))

    @pgq.entrypoint(ENTRYPOINTS["crash"])
    async def crash(job: PgJob) -> None:
        await marks.crash_probe_async(argument(job))

    return pgq


async def serve(batch_size: int, max_concurrent_tasks: int | None) -> None:
    pgq = await create_pgqueuer()
    await pgq.run(
        dequeue_timeout=DEQUEUE_TIMEOUT,
        batch_size=batch_size,
        max_concurrent_tasks=max_concurrent_tasks,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
    )


class PgqueuerPeer(Peer):
    name = "pgqueuer"
    distributions = ("pgqueuer", "asyncpg")
    broker = f"PostgreSQL database {marks.PG_DATABASE}"
    reliability = (
        "PgQueuer.run(heartbeat_timeout=5 s, dequeue_timeout=5 s): a picked job whose "
        "heartbeat is stale is picked again"
    )

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._connection: asyncpg.Connection | None = None

    async def _queries(self) -> Queries:
        if self._connection is None:
            self._connection = await asyncpg.connect(marks.pg_dsn())
        return Queries(AsyncpgDriver(self._connection))

    async def _install(self) -> None:
        await (await self._queries()).install()

    async def _enqueue(self, entrypoint: str, payload: bytes | None, count: int) -> None:
        queries = await self._queries()
        for start in range(0, count, CHUNK):
            n = min(CHUNK, count - start)
            await queries.enqueue([entrypoint] * n, [payload] * n, [0] * n)

    def reset(self) -> None:
        recreate_pg_database()
        self._loop.run_until_complete(self._install())

    def worker_commands(self, spec: Spec) -> list[list[str]]:
        command = python_module(__name__)
        if spec.concurrency is not None:  # at most this many jobs at once per process
            batch = max(1, spec.concurrency // 2)
            command += ["--batch-size", str(batch), "--max-concurrent-tasks", str(2 * batch)]
        return [command] * spec.processes

    def enqueue(self, workload: str, count: int, spec: Spec) -> None:
        entrypoint, args = task_for(workload, spec, ENTRYPOINTS)
        payload = json.dumps(args[0]).encode() if args else None
        self._loop.run_until_complete(self._enqueue(entrypoint, payload, count))

    def close(self) -> None:
        if self._connection is not None:
            self._loop.run_until_complete(self._connection.close())
        self._loop.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one PgQueuer worker process")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--max-concurrent-tasks", type=int)
    options = parser.parse_args()
    asyncio.run(serve(options.batch_size, options.max_concurrent_tasks))
