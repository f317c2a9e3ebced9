"""The bundled demo: 20,000 jobs over 2 arbiters, one arbiter killed mid-run.

It shows the promise in one run: a SIGKILLed worker process loses no job,
and the Manager brings the process back.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import psutil

from storage import Backoff, Job
from supervisor.config import WorkerConfig

KILL_AT = 0.4  # fraction of jobs done when one arbiter is killed


@dataclass
class DemoJob(Job):
    """A small piece of real work: hash the job's number a few times."""

    QUEUE = "demo"
    # Jobs the killed arbiter held are retried; the default backoff would
    # make the demo wait 2 s for them.
    BACKOFF = Backoff.linear(0.05)

    n: int

    def run(self, state: Any) -> None:
        digest = str(self.n).encode()
        for _ in range(10):
            digest = hashlib.sha256(digest).digest()


@dataclass(frozen=True, slots=True)
class DemoReport:
    queued: int
    done: int
    dead: int
    lost: int
    restarts: int
    killed_pid: int
    killed_after: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.restarts >= 1

    def lines(self) -> list[str]:
        return [
            f"killed arbiter pid {self.killed_pid} with SIGKILL after {self.killed_after:,} jobs",
            f"jobs done: {self.done:,} of {self.queued:,}",
            f"dead: {self.dead}",
            f"lost: {self.lost}",
            f"restarts: {self.restarts}",
            f"jobs/s: {self.done / self.seconds:,.0f}",
        ]


def run_demo(jobs: int = 20_000, processes: int = 2, workers: int = 4) -> DemoReport:
    config = WorkerConfig().register(DemoJob).set_worker_count(DemoJob.QUEUE, workers)
    with config.start(processes=processes) as manager:
        _wait_until_alive(manager, processes)
        started = time.monotonic()
        ids = manager.queue_many(DemoJob(n) for n in range(jobs))
        victim, killed_after = _kill_one_midway(manager, jobs)
        manager.join(timeout=300)
        seconds = time.monotonic() - started
        _wait_until_alive(manager, processes)
        stats = manager.stats()
        done = sum(a.jobs_done for a in stats.arbiters)
        dead = sum(q.dead for q in stats.queues.values())
        left = sum(q.pending + q.running for q in stats.queues.values())
        return DemoReport(
            queued=len(ids),
            done=done,
            dead=dead,
            lost=len(ids) - done - dead - left,
            restarts=sum(a.restarts for a in stats.arbiters),
            killed_pid=victim,
            killed_after=killed_after,
            seconds=seconds,
        )


def _wait_until_alive(manager: Any, processes: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arbiters = manager.stats().arbiters
        if sum(a.alive and a.state == "running" for a in arbiters) == processes:
            return
        time.sleep(0.02)
    raise TimeoutError(f"arbiters not all running after {timeout} s")


def _kill_one_midway(manager: Any, jobs: int) -> tuple[int, int]:
    while True:
        stats = manager.stats()
        done = sum(a.jobs_done for a in stats.arbiters)
        if done >= jobs * KILL_AT:
            victim = stats.arbiters[0].pid
            psutil.Process(victim).kill()
            return victim, done
        time.sleep(0.005)
