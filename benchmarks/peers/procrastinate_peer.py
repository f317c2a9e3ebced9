"""procrastinate on PostgreSQL: async tasks, and its documented stalled-job retry.

A worker killed mid-job leaves the job in ``doing``; the periodic task from
procrastinate's "Retry stalled jobs" how-to puts it back once its worker has
missed its heartbeats. The how-to runs it every 10 minutes with 30 s of
silence; here it runs every second with 3 s (heartbeat every second), so the
crash case fits its time limit.
"""

from __future__ import annotations

from typing import Any

import procrastinate

from benchmarks.peers import marks
from benchmarks.peers.harness import (
    Peer,
    Spec,
    python_module,
    recreate_pg_database,
    task_for,
)

QUEUE = "peers"
CHUNK = 1000  # jobs per batch_defer
STALLED_AFTER = 3.0  # seconds without a heartbeat

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=marks.pg_dsn()),
    worker_defaults={"update_heartbeat_interval": 1.0, "stalled_worker_timeout": STALLED_AFTER},
)


@app.task(name="peers.noop", queue=QUEUE)
async def noop_task() -> None:
    marks.noop()


@app.task(name="peers.nap", queue=QUEUE)
async def nap_task(ms: float) -> None:
    await marks.nap_async(ms)


@app.task(name="peers.crash", queue=QUEUE)
async def crash_task(hold: float) -> None:
    await marks.crash_probe_async(hold)


@app.periodic(cron="* * * * * *")  # six fields: every second
@app.task(queueing_lock="retry_stalled_jobs", pass_context=True)
async def retry_stalled_jobs(context: Any, timestamp: int) -> None:
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER):
        await app.job_manager.retry_job(job)


TASKS: dict[str, Any] = {"noop": noop_task, "sleep": nap_task, "crash": crash_task}
ARGUMENT = {"noop": None, "sleep": "ms", "crash": "hold"}


class ProcrastinatePeer(Peer):
    name = "procrastinate"
    distributions = ("procrastinate", "psycopg", "psycopg-pool")
    broker = f"PostgreSQL database {marks.PG_DATABASE}"
    reliability = (
        "the how-to's periodic retry_stalled_jobs task (every 1 s, stalled after 3 s "
        "without a heartbeat; worker heartbeat every 1 s)"
    )

    def __init__(self) -> None:
        self._open = False

    def reset(self) -> None:
        recreate_pg_database()
        app.open()
        self._open = True
        app.schema_manager.apply_schema()

    def worker_commands(self, spec: Spec) -> list[list[str]]:
        command = python_module("procrastinate", "--app", f"{__name__}.app", "worker")
        if spec.concurrency is not None:
            command += ["--concurrency", str(spec.concurrency)]
        return [command] * spec.processes

    def enqueue(self, workload: str, count: int, spec: Spec) -> None:
        task, args = task_for(workload, spec, TASKS)
        name = ARGUMENT[workload]
        kwargs = {} if name is None else {name: args[0]}
        for start in range(0, count, CHUNK):
            task.batch_defer(*[kwargs] * min(CHUNK, count - start))

    def close(self) -> None:
        if self._open:
            app.close()
