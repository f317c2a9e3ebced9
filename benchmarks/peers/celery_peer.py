"""Celery on Redis: ``acks_late`` with ``reject_on_worker_lost``, no result backend.

No-op and crash: one worker with the prefork pool (its default), one child
per worker process. Sleep: one worker per process with the threads pool.
"""

from __future__ import annotations

from typing import Any

import celery

from benchmarks.peers import marks
from benchmarks.peers.harness import Peer, Spec, flush_redis, python_module, task_for

DB = 11

app = celery.Celery("jobarbiter_peers", broker=marks.redis_url(DB))
app.conf.update(
    task_acks_late=True,  # acknowledge after the task ran, not when it was received
    task_reject_on_worker_lost=True,  # a killed child requeues its task
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)


@app.task(name="peers.noop")
def noop_task() -> None:
    marks.noop()


@app.task(name="peers.nap")
def nap_task(ms: float) -> None:
    marks.nap(ms)


@app.task(name="peers.crash")
def crash_task(hold: float) -> None:
    marks.crash_probe(hold)


TASKS: dict[str, Any] = {"noop": noop_task, "sleep": nap_task, "crash": crash_task}


class CeleryPeer(Peer):
    name = "celery"
    distributions = ("celery", "kombu", "redis")
    broker = f"Redis db {DB}"
    reliability = (
        "task_acks_late=True, task_reject_on_worker_lost=True "
        "(Redis visibility_timeout left at its default)"
    )

    def reset(self) -> None:
        flush_redis(DB)

    def worker_commands(self, spec: Spec) -> list[list[str]]:
        base = python_module("celery", "-A", f"{__name__}:app", "worker", "--loglevel", "WARNING")
        if spec.workload != "sleep":
            return [[*base, "--pool", "prefork", "--concurrency", str(spec.processes)]]
        threads = str(spec.concurrency or 1)
        return [
            [*base, "--pool", "threads", "--concurrency", threads, "--hostname", f"peers{i}@%h"]
            for i in range(spec.processes)
        ]

    def enqueue(self, workload: str, count: int, spec: Spec) -> None:
        task, args = task_for(workload, spec, TASKS)
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                task.apply_async(args, producer=producer)

    def close(self) -> None:
        app.close()
