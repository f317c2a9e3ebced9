"""Results, waiting, cancellation, the job context and middleware, through real arbiters."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from supervisor import (
    JobCancelled,
    JobFailed,
    JobNotFound,
    Manager,
    Status,
    WorkerConfig,
)

from .jobs import (
    AlwaysFails,
    AsyncCooperative,
    AsyncReturns,
    Broken,
    Cooperative,
    IgnoresCancel,
    Introspects,
    Overruns,
    Record,
    Recorder,
    Returns,
    Sleepy,
    Unstorable,
    lines,
)
from .support import holding, start, wait_until


@pytest.fixture(autouse=True)
def _notes(workdir: Path) -> None:
    """Every job here may note what it did."""


def test_wait_returns_the_value_and_info_keeps_the_record(managers: list[Manager]) -> None:
    config = WorkerConfig().register(Returns)
    manager = start(managers, config, processes=1)
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    value = {"n": 1, "items": [1, "two", None], "when": when, "raw": b"\x00\xff"}
    job = manager.queue(Returns(value=value))

    assert manager.wait(job, timeout=20) == value
    info = manager.info(job)
    assert info is not None
    assert info.status is Status.SUCCEEDED
    assert info.value() == value
    assert info.started_at is not None and info.finished_at is not None
    assert info.started_at <= info.finished_at
    # Ended before this wait: answered from the record, at once.
    assert manager.wait(job, timeout=0.5) == value
    assert manager.wait(manager.queue(Returns(value=None)), timeout=20) is None


def test_wait_raises_how_a_job_ended(managers: list[Manager]) -> None:
    config = WorkerConfig().register(AlwaysFails).register(Unstorable).register(Sleepy)
    manager = start(managers, config, processes=1)

    with pytest.raises(JobFailed) as failed:
        manager.wait(manager.queue(AlwaysFails(tag="x")), timeout=20)
    assert failed.value.error_type == "ValueError"
    assert failed.value.message == "always fails: x"
    assert failed.value.traceback is not None and "Traceback" in failed.value.traceback

    with pytest.raises(JobFailed) as unstorable:
        manager.wait(manager.queue(Unstorable()), timeout=20)
    assert "cannot be stored" in str(unstorable.value.error)
    assert "lock" in unstorable.value.error

    with pytest.raises(JobNotFound):
        manager.wait(uuid.uuid4(), timeout=5)  # never queued: no silent wait

    slow = manager.queue(Sleepy(tag="slow", seconds=5))
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        manager.wait(slow, timeout=0.3)
    assert time.monotonic() - began < 3


def test_a_record_expires_after_its_ttl(managers: list[Manager]) -> None:
    config = WorkerConfig().register(Returns)
    manager = start(managers, config, processes=1)
    none_kept = manager.queue(Returns(value=1), result_ttl=0)
    short = manager.queue(Returns(value=2), result_ttl=0.5)
    kept = manager.queue(Returns(value=3))
    manager.join(timeout=20)

    assert manager.info(none_kept) is None
    with pytest.raises(JobNotFound):
        manager.wait(none_kept, timeout=1)
    wait_until(lambda: manager.info(short) is None, timeout=10, what="the record to expire")
    assert manager.wait(kept, timeout=1) == 3


def test_as_completed_yields_each_job_as_it_ends(managers: list[Manager]) -> None:
    config = WorkerConfig().register(Returns).register(AlwaysFails)
    manager = start(managers, config, processes=2)
    slow = manager.queue(Returns(value="slow", seconds=1.0))
    fast = [manager.queue(Returns(value=i)) for i in range(20)]
    dead = manager.queue(AlwaysFails(tag="y"))

    seen = list(manager.as_completed([slow, *fast, dead], timeout=30))
    assert sorted(str(job) for job, _ in seen) == sorted(str(j) for j in [slow, *fast, dead])
    ended = dict(seen)
    assert ended[slow].status is Status.SUCCEEDED and ended[slow].value() == "slow"
    assert [ended[j].value() for j in fast] == list(range(20))
    assert ended[dead].status is Status.DEAD
    assert [job for job, _ in seen].index(slow) > [job for job, _ in seen].index(fast[0])

    with pytest.raises(JobNotFound):
        list(manager.as_completed([uuid.uuid4()], timeout=5))


def test_cancel_a_pending_job_and_an_ended_one(workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig().register(Record)
    manager = start(managers, config, processes=1)
    later = manager.schedule(Record(tag="later"), dt.timedelta(seconds=60))
    done = manager.queue(Record(tag="done"))
    manager.wait(done, timeout=20)

    assert manager.cancel(later) is True
    assert manager.cancel(done) is False  # ended: left as it is
    assert manager.cancel(uuid.uuid4()) is False
    with pytest.raises(JobCancelled):
        manager.wait(later, timeout=5)
    info = manager.info(later)
    assert info is not None and info.status is Status.CANCELLED
    assert manager.info(done) is not None
    assert manager.info(done).status is Status.SUCCEEDED  # type: ignore[union-attr]
    assert holding(manager) == {}  # nothing left pending
    assert [f[0] for f in lines(workdir, "runs.log")] == ["done"]


def test_cancel_a_running_job_that_stops_at_the_exception(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Cooperative).register(Sleepy)
    manager = start(managers, config, processes=1)
    job = manager.queue(Cooperative(tag="c"))
    neighbour = manager.queue(Sleepy(tag="n", seconds=2.0))
    wait_until(lambda: lines(workdir, "coop.log"), what="the job to start")
    wait_until(lambda: lines(workdir, "sleepy.log"), what="its neighbour to start")
    pid = manager.stats().arbiters[0].pid

    assert manager.cancel(job) is True
    with pytest.raises(JobCancelled):
        manager.wait(job, timeout=10)
    assert ["interrupted", "c", "True"] in lines(workdir, "coop.log")
    manager.wait(neighbour, timeout=10)

    arbiter = manager.stats().arbiters[0]
    assert arbiter.pid == pid and arbiter.restarts == 0 and arbiter.recycles == 0
    assert [f[0] for f in lines(workdir, "sleepy.log")].count("start") == 1  # untouched
    info = manager.info(job)
    assert info is not None and info.status is Status.CANCELLED and info.attempts == 1
    time.sleep(0.5)
    assert [f[0] for f in lines(workdir, "coop.log")].count("start") == 1  # never retried


def test_a_job_that_ignores_a_cancel_is_stopped_after_its_grace(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(IgnoresCancel)
    manager = start(managers, config, processes=1)
    job = manager.queue(IgnoresCancel(tag="i"))
    wait_until(lambda: lines(workdir, "ignorer.log"), what="the job to start")

    asked = time.monotonic()
    assert manager.cancel(job, grace=1.0) is True
    with pytest.raises(JobCancelled):
        manager.wait(job, timeout=10)
    assert time.monotonic() - asked < 1.0 + 2.0
    assert any(f[0] == "ignored" for f in lines(workdir, "ignorer.log"))
    wait_until(lambda: manager.stats().arbiters[0].recycles == 1, what="the replacement")
    time.sleep(1.0)
    starts = [f for f in lines(workdir, "ignorer.log") if f[0] == "start"]
    assert len(starts) == 1  # never retried
    info = manager.info(job)
    assert info is not None and info.status is Status.CANCELLED


def test_current_job_describes_the_running_job(workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig().register(Introspects)
    manager = start(managers, config, processes=1)
    queued = time.time()
    job = manager.queue(Introspects(tag="x"), queue="default")
    manager.wait(job, timeout=20)

    [[raw]] = lines(workdir, "context.log")
    ctx = json.loads(raw)
    assert ctx["id"] == str(job)
    assert ctx["name"] == Introspects.NAME
    assert ctx["queue"] == "default"
    assert ctx["attempt"] == 0
    assert ctx["cancelled"] is False
    assert queued - 1 <= ctx["enqueued_at"] <= ctx["now"]
    assert ctx["deadline"] == pytest.approx(ctx["now"] + 30, abs=2)


def test_middleware_sees_every_end(
    workdir: Path, managers: list[Manager], capfd: pytest.CaptureFixture[str]
) -> None:
    config = (
        WorkerConfig(middleware=[Broken(), Recorder()])
        .register(Returns)
        .register(AlwaysFails)
        .register(Cooperative)
        .register(Overruns)
        .register(Sleepy)
    )
    manager = start(managers, config, processes=1)
    ok = manager.queue(Returns(value=1))
    failing = manager.queue(AlwaysFails(tag="m"))
    coop = manager.queue(Cooperative(tag="m"))
    assert manager.wait(ok, timeout=20) == 1  # a hook that raises loses nothing
    with pytest.raises(JobFailed):
        manager.wait(failing, timeout=20)
    wait_until(lambda: lines(workdir, "coop.log"), what="the job to start")
    manager.cancel(coop)
    with pytest.raises(JobCancelled):
        manager.wait(coop, timeout=10)

    hooks = lines(workdir, "hooks.log")
    assert ["before", "Returns", str(ok)] in hooks
    assert ["after", "Returns", str(ok), "SUCCEEDED"] in hooks
    assert [f[3] for f in hooks if f[0] == "after" and f[2] == str(failing)] == ["FAILED"] * 3
    assert ["after", "Cooperative", str(coop), "CANCELLED"] in hooks

    overran = manager.queue(Overruns(tag="m"))
    with pytest.raises(JobFailed):
        manager.wait(overran, timeout=20)
    assert ["after", "Overruns", str(overran), "TIMED_OUT"] in hooks_of(workdir)
    # Logged in the arbiter; unconfigured, its logging prints errors to stderr.
    assert "middleware hook failed" in capfd.readouterr().err

    # The arbiter cannot report its own death: the host's hook does.
    running = manager.queue(Sleepy(tag="killed", seconds=30))
    wait_until(lambda: lines(workdir, "sleepy.log"), what="the job to start")
    pid = manager.stats().arbiters[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: lines(workdir, "died.log"), what="the host-side hook")
    [[arbiter, how, *job_ids]] = lines(workdir, "died.log")
    assert arbiter == "0" and "SIGKILL" in how and job_ids == [str(running)]


def hooks_of(workdir: Path) -> list[list[str]]:
    return lines(workdir, "hooks.log")


def test_async_jobs_return_values_and_are_cancelled(workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig().register(AsyncReturns).register(AsyncCooperative)
    manager = start(managers, config, processes=1)
    assert manager.wait(manager.queue(AsyncReturns(value=[1, 2])), timeout=20) == [1, 2]
    job = manager.queue(AsyncCooperative(tag="a"))
    neighbour = manager.queue(AsyncReturns(value="n"))
    wait_until(lambda: lines(workdir, "acoop.log"), what="the job to start")
    pid = manager.stats().arbiters[0].pid

    assert manager.cancel(job) is True
    with pytest.raises(JobCancelled):
        manager.wait(job, timeout=10)
    assert ["cancelled", "a", "True"] in lines(workdir, "acoop.log")  # its context saw it
    assert manager.wait(neighbour, timeout=10) == "n"
    arbiter = manager.stats().arbiters[0]
    assert (arbiter.pid, arbiter.restarts, arbiter.recycles) == (pid, 0, 0)
