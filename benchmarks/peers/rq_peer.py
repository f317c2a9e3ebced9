"""RQ on Redis: its default Worker forks a work horse per job; ``Retry(max=1)``.

A work horse killed mid-job is noticed by its worker, which fails the job,
and a job with retries left is queued again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import Redis
from rq import Queue, Retry

from benchmarks.peers import marks
from benchmarks.peers.harness import Peer, Spec, flush_redis, python_module, task_for

DB = 13
QUEUE = "peers"
CHUNK = 1000  # jobs per enqueue_many pipeline

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "noop": marks.noop,
    "sleep": marks.nap,
    "crash": marks.crash_probe,
}


class RqPeer(Peer):
    name = "rq"
    distributions = ("rq", "redis")
    broker = f"Redis db {DB}"
    reliability = "Retry(max=1) on every job (a killed work horse fails the job, which is retried)"

    def __init__(self) -> None:
        self._redis: Redis | None = None

    def reset(self) -> None:
        flush_redis(DB)

    def worker_commands(self, spec: Spec) -> list[list[str]]:
        return [
            python_module(
                "rq.cli",
                "worker",
                "--url",
                marks.redis_url(DB),
                "--logging_level",
                "WARNING",
                "--name",
                f"peers-{i}",
                QUEUE,
            )
            for i in range(spec.processes)
        ]

    def enqueue(self, workload: str, count: int, spec: Spec) -> None:
        if self._redis is None:
            self._redis = Redis.from_url(marks.redis_url(DB), socket_timeout=30)
        queue = Queue(QUEUE, connection=self._redis)
        function, args = task_for(workload, spec, FUNCTIONS)
        for start in range(0, count, CHUNK):
            queue.enqueue_many(
                [
                    Queue.prepare_data(function, args, retry=Retry(max=1))
                    for _ in range(min(CHUNK, count - start))
                ]
            )

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
