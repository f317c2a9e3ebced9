"""Credits: an arbiter claims a few jobs beyond its workers (prefetch). A
claimed job that has not started keeps every promise of the README."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import psutil
import pytest

from actors.ops import Pop
from supervisor import Manager, Status, WorkerConfig

from .jobs import Beating, Quick, Record, Sleepy, lines
from .support import start, succeeded, wait_until


def one_worker(prefetch: int = 2) -> WorkerConfig:
    return (
        WorkerConfig(prefetch=prefetch)
        .register(Sleepy)
        .register(Record)
        .register(Quick)
        .register(Beating)
        .set_worker_count("default", 1)
    )


def held(manager: Manager) -> int:
    return manager.stats().queues.get("default", None).running  # type: ignore[union-attr]


def test_one_worker_claims_its_job_and_the_prefetch_margin(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, one_worker(prefetch=2), processes=1)
    manager.queue(Sleepy(tag="long", seconds=30))
    ids = manager.queue_many(Record(tag=f"r{i}") for i in range(5))
    wait_until(lambda: held(manager) == 3, what="1 running + 2 buffered")
    time.sleep(0.2)
    assert held(manager) == 3  # never more than workers + prefetch
    assert [manager.info(i).status for i in ids].count(Status.RUNNING) == 2  # type: ignore[union-attr]


def test_a_buffered_job_of_a_dead_arbiter_goes_back_unexecuted(
    workdir: Path, managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    manager = start(managers, one_worker(prefetch=2), processes=1)
    long = manager.queue(Sleepy(tag="long", seconds=30))
    buffered = manager.queue_many([Record(tag="a"), Record(tag="b")])
    wait_until(lambda: lines(workdir, "sleepy.log"), what="the long job to start")
    wait_until(lambda: held(manager) == 3, what="two jobs in the buffer")
    pid = manager.stats().arbiters[0].pid
    assert pid is not None
    with caplog.at_level(logging.INFO, logger="jobarbiter"):
        psutil.Process(pid).kill()
        wait_until(lambda: all(succeeded(manager, j) for j in buffered), what="the buffer to run")
    # The whole buffer went back at once: one line says so, not one per job.
    events = [vars(r) for r in caplog.records]
    [summary] = [e for e in events if e["event"] == "jobs put back"]
    assert (summary["count"], summary["outcome"]) == (2, "unexecuted")
    assert not [e for e in events if e["event"] == "job put back"]
    # They ran once each, after the restart, and used no attempt meanwhile.
    assert sorted(f[0] for f in lines(workdir, "runs.log")) == ["a", "b"]
    dead_run = manager.info(long)
    assert dead_run is not None and dead_run.retry_count == 1  # it was running: an attempt
    assert "arbiter died (signal SIGKILL)" in (dead_run.last_error or "")


def test_stop_hands_the_buffer_back_at_once_and_lets_the_running_job_finish(
    workdir: Path, managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    manager = start(managers, one_worker(prefetch=2), processes=1)
    manager.queue(Sleepy(tag="long", seconds=1.5))
    buffered = set(manager.queue_many([Record(tag="a"), Record(tag="b")]))
    wait_until(lambda: held(manager) == 3, what="two jobs in the buffer")
    with caplog.at_level(logging.INFO, logger="jobarbiter"):
        stopping = threading.Thread(target=manager.stop, kwargs={"timeout": 10})
        stopping.start()
        stopping.join(timeout=20)
    events = [vars(r) for r in caplog.records]
    back = [e for e in events if e["event"] == "job put back"]
    assert {e["job_id"] for e in back} == {str(i) for i in buffered}
    assert {e["outcome"] for e in back} == {"unexecuted"}
    [end] = [f for f in lines(workdir, "sleepy.log") if f[0] == "end"]
    assert max(e["created"] for e in back) < float(end[3])  # before the running job ended
    assert lines(workdir, "runs.log") == []  # the buffer never ran


def test_a_timeout_counts_from_the_start_not_the_claim(
    workdir: Path, managers: list[Manager]
) -> None:
    # Quick (TIMEOUT 1 s, runs 0.6 s) waits 1.5 s in the buffer behind a
    # long job: timed from its claim it would be killed, from its start not.
    manager = start(managers, one_worker(prefetch=1), processes=1)
    manager.queue(Sleepy(tag="long", seconds=1.5))
    quick = manager.queue(Quick(tag="quick", seconds=0.6))
    manager.join(timeout=30)
    assert succeeded(manager, quick)  # it succeeded
    assert [f[:2] for f in lines(workdir, "sleepy.log")] == [
        ["start", "long"],
        ["end", "long"],
        ["start", "quick"],
        ["end", "quick"],
    ]
    assert manager.stats().arbiters[0].recycles == 0  # no timeout kill


def test_a_buffered_job_is_heartbeated_and_never_taken_over_as_stale(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, one_worker(prefetch=1), processes=1)
    manager.queue(Beating(tag="long", seconds=2.5))
    waiting = manager.queue(Beating(tag="waiting", seconds=0))
    wait_until(lambda: held(manager) == 2, what="one job in the buffer")
    time.sleep(1.5)  # past 5 heartbeat intervals of 0.2 s
    # Another runner asks for the queue's stale claims: there is none.
    assert manager._storage.ask(Pop("default", "intruder", 10)) == []
    info = manager.info(waiting)
    assert info is not None and info.status is Status.RUNNING and info.runner != "intruder"
    manager.join(timeout=30)
    assert [f[1] for f in lines(workdir, "sleepy.log") if f[0] == "end"] == ["long", "waiting"]


def test_an_idle_arbiter_gets_the_job_before_another_arbiters_buffer(
    workdir: Path, managers: list[Manager]
) -> None:
    # Arbiter 0's worker is busy and it has a prefetch credit parked; arbiter 1
    # is idle. A new job must go to arbiter 1, not wait in arbiter 0's buffer.
    manager = start(managers, one_worker(prefetch=1), processes=2)
    manager.queue(Sleepy(tag="long", seconds=30))
    wait_until(lambda: lines(workdir, "sleepy.log"), what="one arbiter busy")
    time.sleep(0.2)  # its prefetch credit is parked by now, maybe ahead of the idle one's
    for tag in ("x", "y"):
        started = time.monotonic()
        job = manager.queue(Record(tag=tag))
        wait_until(lambda t=tag: [f for f in lines(workdir, "runs.log") if f[0] == t], what=tag)
        assert time.monotonic() - started < 5  # not stuck behind a 30 s job
        # Idle again only once its Done (and the credit that leaves with it)
        # reached the host: until then the busy arbiter's credit is the only one.
        wait_until(lambda j=job: succeeded(manager, j), what=f"{tag} settled")


@pytest.mark.parametrize("prefetch", [0, 3])
def test_every_job_runs_once_whatever_the_prefetch(
    workdir: Path, managers: list[Manager], prefetch: int
) -> None:
    config = WorkerConfig(prefetch=prefetch).register(Record).set_worker_count("default", 2)
    manager = start(managers, config, processes=2)
    manager.queue_many(Record(tag=str(i)) for i in range(500))
    manager.join(timeout=60)
    runs = sorted(int(f[0]) for f in lines(workdir, "runs.log"))
    assert runs == list(range(500))
