"""Async jobs: ``async def run`` on the arbiter's event loop, many slots, no thread each."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor import Job, Manager, Status, WorkerConfig

from .jobs import LoopHog, Nap, Record, async_state, lines
from .support import holding, start, succeeded, wait_until


def ended(workdir: Path) -> set[str]:
    return {f[1] for f in lines(workdir, "nap.log") if f[0] == "end"}


def test_a_thousand_async_jobs_share_one_loop_and_few_threads(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Nap).set_worker_count("async", 500)
    manager = start(managers, config, processes=1)
    pid = manager.stats().arbiters[0].pid
    assert pid is not None
    started = time.monotonic()
    manager.queue_many(Nap(tag=str(i), seconds=0.5) for i in range(1000))
    wait_until(lambda: len(lines(workdir, "nap.log")) >= 1000, what="half of them running")
    threads = psutil.Process(pid).num_threads()
    manager.join(timeout=60)
    assert time.monotonic() - started < 4.0  # two rounds of 500 at once, not 1,000 sleeps
    assert ended(workdir) == {str(i) for i in range(1000)}
    assert threads <= 40  # not a thread per job
    assert len({f[3] for f in lines(workdir, "nap.log") if f[0] == "start"}) == 1  # one loop


def test_an_async_job_past_its_timeout_is_cancelled_and_its_arbiter_lives(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Nap).set_worker_count("async", 10)
    manager = start(managers, config, processes=1)
    pid = manager.stats().arbiters[0].pid
    neighbour = manager.queue(Nap(tag="neighbour", seconds=1.5))
    late = manager.queue(Nap(tag="late", seconds=30), timeout=0.5)
    wait_until(lambda: (i := manager.info(late)) is not None and i.retry_count == 1, what="it")
    info = manager.info(late)
    assert info is not None and info.last_error == "timeout after 0.5 s"
    arbiter = manager.stats().arbiters[0]
    assert (arbiter.pid, arbiter.restarts, arbiter.recycles) == (pid, 0, 0)
    wait_until(lambda: succeeded(manager, neighbour), what="the neighbour to finish")
    assert "neighbour" in ended(workdir)  # it ran on, once


def test_an_async_job_that_blocks_its_loop_is_reported_and_stopped_for_real(
    workdir: Path, managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    config = WorkerConfig().register(LoopHog).set_worker_count("async", 2)
    manager = start(managers, config, processes=1)
    with caplog.at_level(logging.WARNING, logger="jobarbiter"):
        hog = manager.queue(LoopHog(seconds=30), timeout=1.5)
        wait_until(lambda: manager.stats().arbiters[0].recycles == 1, what="the recycle")
    info = manager.info(hog)
    assert info is not None and info.status is Status.DEAD
    assert info.last_error == "timeout after 1.5 s"
    # The watchdog saw the loop stall, and named the job on it.
    blocked = [vars(r) for r in caplog.records if vars(r)["event"] == "event loop blocked"]
    assert len(blocked) == 1
    assert blocked[0]["blocked_by"].startswith(f"{LoopHog.NAME} {hog}, for 1")
    assert manager.stats().arbiters[0].loop_blocks == 1


def test_an_async_state_factory_runs_once_per_queue_per_arbiter(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig(state=async_state).register(Nap).set_worker_count("async", 20)
    manager = start(managers, config, processes=2)
    manager.queue_many(Nap(tag=str(i), seconds=0.05) for i in range(100))
    manager.join(timeout=30)
    built = lines(workdir, "state.log")
    assert len(built) == 2  # one per arbiter, not one per slot
    states = {(f[2], f[4]) for f in lines(workdir, "nap.log") if f[0] == "start"}
    assert len(states) == 2  # every job of an arbiter shares its one state


def test_sync_and_async_queues_run_side_by_side(workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig().register(Record).register(Nap).set_worker_count("async", 50)
    manager = start(managers, config, processes=2)
    manager.queue_many(Record(tag=f"r{i}") for i in range(50))
    manager.queue_many(Nap(tag=f"n{i}", seconds=0.1) for i in range(200))
    manager.join(timeout=60)
    assert len(lines(workdir, "runs.log")) == 50
    assert ended(workdir) == {f"n{i}" for i in range(200)}


def test_an_arbiter_running_async_jobs_killed_mid_run_loses_none(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Nap).set_worker_count("async", 50)
    manager = start(managers, config, processes=2)
    manager.queue_many(Nap(tag=str(i), seconds=0.2) for i in range(400))
    wait_until(lambda: len(ended(workdir)) >= 100, what="a quarter done")
    victim = manager.stats().arbiters[0].pid
    assert victim is not None
    psutil.Process(victim).kill()
    manager.join(timeout=60)
    assert ended(workdir) == {str(i) for i in range(400)}
    assert holding(manager) == {}
    assert manager.stats().arbiters[0].restarts == 1


# -- refused at register ----------------------------------------------------------


@dataclass
class SyncOnAsync(Job):
    QUEUE = "async"

    def run(self, state: Any) -> None:
        pass


class NotAFunction:
    def __call__(self, job: Any, state: Any) -> None:
        pass


@dataclass
class Odd(Job):
    run = NotAFunction()  # type: ignore[assignment]


def test_a_queue_of_sync_and_async_jobs_is_refused() -> None:
    with pytest.raises(ValueError, match=r"queue 'async' would run both .*SyncOnAsync \(def run\)"):
        WorkerConfig().register(Nap).register(SyncOnAsync)


def test_a_run_that_is_neither_kind_of_function_is_refused() -> None:
    with pytest.raises(TypeError, match=r"run must be a method"):
        WorkerConfig().register(Odd)


def test_jobs_queued_from_async_code_run(workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig().register(Nap).register(Record).set_worker_count("async", 20)
    manager = start(managers, config, processes=1)

    async def service() -> list[Any]:
        aio = manager.aio
        return await asyncio.gather(
            *(aio.queue(Nap(tag=str(i), seconds=0.01)) for i in range(50)),
            aio.queue(Record(tag="sync")),
        )

    ids = asyncio.run(service())
    manager.join(timeout=30)
    assert len(set(ids)) == 51
    assert ended(workdir) == {str(i) for i in range(50)}
    assert [f[0] for f in lines(workdir, "runs.log")] == ["sync"]
