"""A newcomer's first hour: what happens with nothing configured."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor import CrashLoopError, Manager, ManagerStopped, Status, WorkerConfig

from .jobs import Exits, Record, failing_state, lines
from .support import start


def test_every_arbiter_in_a_crash_loop_fails_join_fast_and_loud(
    workdir: Path, managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    config = WorkerConfig(state=failing_state).register(Record)
    manager = config.start(processes=2)
    managers.append(manager)
    manager.queue(Record(tag="never"))
    started = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, logger="jobarbiter"),
        pytest.raises(CrashLoopError) as raised,
    ):
        manager.join(timeout=60)
    assert time.monotonic() - started < 15  # a few restart periods, not the timeout
    assert "RuntimeError: cannot reach the database" in str(raised.value)
    assert len(raised.value.errors) == 2
    loops = [vars(r) for r in caplog.records if vars(r)["event"] == "arbiter in a crash loop"]
    assert {r["levelname"] for r in loops} == {"ERROR"}
    assert {r["last_error"] for r in loops} == {"RuntimeError: cannot reach the database"}
    assert {r["arbiter"] for r in loops} == {0, 1}
    # Each death before that was a warning with how it ended.
    deaths = [vars(r) for r in caplog.records if vars(r)["event"] == "arbiter died"]
    assert deaths and {r["levelname"] for r in deaths} == {"WARNING"}
    assert {r["exit"] for r in deaths} == {"exit code 3 (it reported a fatal error)"}
    assert {a.state for a in manager.stats().arbiters} <= {"crash loop"}


def test_join_waits_until_every_queued_job_has_run(workdir: Path, managers: list[Manager]) -> None:
    manager = start(managers, WorkerConfig().register(Record), processes=1)
    manager.queue_many(Record(tag=f"r{i}") for i in range(50))
    manager.join(timeout=30)
    assert len(lines(workdir, "runs.log")) == 50


def test_join_does_not_wait_for_jobs_scheduled_for_later(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, WorkerConfig().register(Record), processes=1)
    later = manager.schedule(Record(tag="later"), at=3600)
    manager.queue(Record(tag="now"))
    manager.join(timeout=30)
    assert [f[0] for f in lines(workdir, "runs.log")] == ["now"]
    info = manager.info(later)
    assert info is not None and info.status is Status.PENDING
    assert manager.stats().queues["default"].scheduled == 1


def test_system_exit_in_a_job_is_a_failed_attempt_and_the_arbiter_goes_on(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Exits).register(Record).set_worker_count("default", 1)
    manager = start(managers, config, processes=1)
    pid = manager.stats().arbiters[0].pid
    job_id = manager.queue(Exits(code=2))
    manager.join(timeout=30)
    dead = manager.info(job_id)
    assert dead is not None and dead.status is Status.DEAD
    assert dead.last_error is not None and dead.last_error.endswith("SystemExit: 2")
    manager.queue(Record(tag="after"))  # the same worker runs the next job
    manager.join(timeout=30)
    assert [f[:2] for f in lines(workdir, "runs.log")] == [["exits", str(pid)], ["after", str(pid)]]
    assert manager.stats().arbiters[0].restarts == 0


def test_a_producer_host_queues_and_stops_at_once(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = WorkerConfig().start(processes=0)
    with caplog.at_level(logging.WARNING, logger="jobarbiter"):
        first = manager.queue(Record(tag="a"))
        manager.queue(Record(tag="b"))
    info = manager.info(str(first))
    assert info is not None and info.status is Status.PENDING
    assert manager.stats().queues["default"].pending == 2
    assert manager.stats().arbiters == ()
    # Memory storage is not shared: nobody will ever run these. Said once.
    warned = [vars(r) for r in caplog.records]
    assert [(w["event"], w["queue"]) for w in warned] == [
        (
            "jobs queued on a queue no worker of this host serves; they wait until a "
            "host that serves it runs",
            "default",
        )
    ]
    started = time.monotonic()
    manager.stop()
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("workers", [4, 0])
def test_a_host_with_nothing_running_stops_at_once(
    workdir: Path, managers: list[Manager], workers: int
) -> None:
    config = WorkerConfig().register(Record).set_worker_count("default", workers)
    manager = start(managers, config, processes=2)
    if workers:
        manager.queue(Record(tag="x"))
        manager.join(timeout=30)
    pids = [a.pid for a in manager.stats().arbiters if a.pid]
    started = time.monotonic()
    manager.stop(timeout=30)
    assert time.monotonic() - started < 3  # not the 30 s grace
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_every_call_after_stop_says_the_manager_is_stopped(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, WorkerConfig().register(Record), processes=1)
    job_id = manager.queue(Record(tag="x"))
    manager.stop()
    calls: dict[str, Any] = {
        "queue": lambda: manager.queue(Record(tag="y")),
        "queue_many": lambda: manager.queue_many([Record(tag="y")]),
        "schedule": lambda: manager.schedule(Record(tag="y"), at=10),
        "every": lambda: manager.every(10, Record(tag="y")),
        "info": lambda: manager.info(job_id),
        "dead_jobs": manager.dead_jobs,
        "requeue": lambda: manager.requeue(job_id),
        "purge_dead": manager.purge_dead,
        "stats": manager.stats,
        "join": manager.join,
        "handle": lambda: manager.handle,
        "run_forever": manager.run_forever,
    }
    for name, call in calls.items():
        with pytest.raises(ManagerStopped, match=rf"^{name}\(\) on a stopped Manager"):
            call()
    manager.stop()  # twice is fine


def test_arbiters_are_named_in_ps(workdir: Path, managers: list[Manager]) -> None:
    manager = start(managers, WorkerConfig().register(Record), processes=2)
    # ps shows the command line, where setproctitle writes the title.
    titles = sorted(
        " ".join(filter(None, psutil.Process(a.pid).cmdline()))
        for a in manager.stats().arbiters
        if a.pid
    )
    assert titles == ["jobarbiter arbiter 0", "jobarbiter arbiter 1"]


class _Exploding(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise BrokenPipeError("stdout is closed")


def test_a_failing_log_handler_never_stops_the_jobs(workdir: Path, managers: list[Manager]) -> None:
    handler = _Exploding(level=logging.DEBUG)
    ours = logging.getLogger("jobarbiter")
    ours.addHandler(handler)
    level = ours.level
    ours.setLevel(logging.DEBUG)  # every job's events go to the broken handler
    try:
        manager = start(managers, WorkerConfig().register(Record), processes=1)
        manager.queue_many(Record(tag=f"r{i}") for i in range(20))
        manager.join(timeout=30)
        assert len(lines(workdir, "runs.log")) == 20
        manager.stop(timeout=5)
    finally:
        ours.removeHandler(handler)
        ours.setLevel(level)
