"""Huey on Redis, ``retries=1`` on every task, no result store.

No-op and crash: one consumer with process workers. Sleep: one consumer per
process with thread workers.
"""

from __future__ import annotations

from typing import Any

from huey import RedisHuey

from benchmarks.peers import marks
from benchmarks.peers.harness import Peer, Spec, flush_redis, python_module, task_for

DB = 14

huey = RedisHuey("jobarbiter-peers", url=marks.redis_url(DB), results=False)


@huey.task(retries=1)
def noop_task() -> None:
    marks.noop()


@huey.task(retries=1)
def nap_task(ms: float) -> None:
    marks.nap(ms)


@huey.task(retries=1)
def crash_task(hold: float) -> None:
    marks.crash_probe(hold)


TASKS: dict[str, Any] = {"noop": noop_task, "sleep": nap_task, "crash": crash_task}


class HueyPeer(Peer):
    name = "huey"
    distributions = ("huey", "redis")
    broker = f"Redis db {DB}"
    reliability = (
        "retries=1; there is no setting for a killed worker: the consumer pops the message "
        "(BRPOP) before running it, with no acknowledgement"
    )

    def reset(self) -> None:
        flush_redis(DB)

    def worker_commands(self, spec: Spec) -> list[list[str]]:
        base = python_module("huey.bin.huey_consumer", f"{__name__}.huey", "--quiet")
        if spec.workload != "sleep":
            return [[*base, "--worker-type", "process", "--workers", str(spec.processes)]]
        threads = str(spec.concurrency or 1)
        return [[*base, "--worker-type", "thread", "--workers", threads]] * spec.processes

    def enqueue(self, workload: str, count: int, spec: Spec) -> None:
        task, args = task_for(workload, spec, TASKS)
        for _ in range(count):
            task(*args)
