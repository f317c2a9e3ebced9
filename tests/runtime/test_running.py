"""Jobs run across real arbiter processes."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from pathlib import Path

import pytest

from supervisor import Manager, Status, WorkerConfig

from .jobs import AlwaysFails, Flaky, Record, Sleepy, Spawner, Unregistered, counting_state, lines
from .support import holding, start, succeeded, wait_until


def test_jobs_spread_over_two_arbiters(workdir: Path, managers: list[Manager]) -> None:
    manager = start(managers, WorkerConfig().register(Sleepy), processes=2)
    # Each job holds its worker a moment, so one arbiter cannot take them all.
    manager.queue_many(Sleepy(tag=str(i), seconds=0.05) for i in range(40))
    manager.join(timeout=30)

    pids = {f[2] for f in lines(workdir, "sleepy.log")}
    assert len(pids) == 2
    done = [a.jobs_done for a in manager.stats().arbiters]
    assert sum(done) == 40
    assert all(n > 0 for n in done)


def test_jobs_running_at_once_equal_processes_times_count(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Sleepy).set_worker_count("default", 3)
    manager = start(managers, config, processes=2)
    manager.queue_many(Sleepy(tag=str(i), seconds=0.6) for i in range(18))
    manager.join(timeout=30)

    events = sorted(
        (float(f[3]), 1 if f[0] == "start" else -1) for f in lines(workdir, "sleepy.log")
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2 * 3


def test_state_factory_runs_once_per_worker(workdir: Path, managers: list[Manager]) -> None:
    config = (
        WorkerConfig(state=counting_state)
        .register(Record)
        .set_worker_count("default", 3)
        .set_worker_count("other", 2)
    )
    manager = start(managers, config, processes=2)
    manager.queue_many(Record(tag=str(i)) for i in range(100))
    manager.join(timeout=30)
    wait_until(lambda: len(lines(workdir, "state.log")) >= 10, what="states built")

    states = lines(workdir, "state.log")
    assert len(states) == 2 * (3 + 2)
    assert len({(pid, thread) for pid, thread in states}) == 10
    assert len(lines(workdir, "runs.log")) == 100


def test_register_keeps_a_count_set_earlier(workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig().set_worker_count("default", 1).register(Sleepy)
    assert config.queues == {"default": 1}
    manager = start(managers, config, processes=1)
    manager.queue_many(Sleepy(tag=str(i), seconds=0.2) for i in range(3))
    manager.join(timeout=30)
    starts = sorted(float(f[3]) for f in lines(workdir, "sleepy.log") if f[0] == "start")
    ends = sorted(float(f[3]) for f in lines(workdir, "sleepy.log") if f[0] == "end")
    # One worker: every job starts after the previous one ended.
    assert all(s >= e for s, e in zip(starts[1:], ends[:-1], strict=True))


def test_retries_with_backoff_end_to_end(workdir: Path, managers: list[Manager]) -> None:
    manager = start(managers, WorkerConfig().register(Flaky), processes=1)
    job_id = manager.queue(Flaky(tag="f", failures=2))
    manager.join(timeout=30)

    runs = [float(f[1]) for f in lines(workdir, "flaky.log")]
    assert len(runs) == 3
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert all(gap >= 0.3 for gap in gaps), gaps
    assert succeeded(manager, job_id)  # succeeded and removed


def test_out_of_retries_ends_dead_with_the_traceback(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, WorkerConfig().register(AlwaysFails), processes=1)
    job_id = manager.queue(AlwaysFails(tag="x"))
    manager.join(timeout=30)

    assert len(lines(workdir, "fails.log")) == 3  # count(2): 1 run + 2 retries
    info = manager.info(job_id)
    assert info is not None
    assert info.status is Status.DEAD
    assert info.retry_count == 3
    assert info.last_error is not None
    assert "Traceback" in info.last_error
    assert "ValueError: always fails: x" in info.last_error
    assert [j.id for j in manager.dead_jobs()] == [job_id]
    assert manager.stats().queues["default"].dead == 1


def test_unregistered_job_is_delayed_not_looped(
    workdir: Path, managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    manager = start(managers, WorkerConfig().register(Record), processes=1)
    with caplog.at_level(logging.WARNING, logger="jobarbiter"):
        job_id = manager.queue(Unregistered(tag="u"))
        wait_until(
            lambda: (i := manager.info(job_id)) is not None and i.last_error is not None,
            what="the unregistered job to be put back",
        )
    warned = [vars(r) for r in caplog.records if r.levelno == logging.WARNING]
    assert [(w["event"], w["job_name"]) for w in warned] == [
        ("job not registered; put back for later", Unregistered.NAME)
    ]
    assert "no job named" in warned[0]["error"]
    time.sleep(0.3)  # a busy loop would hand it out again and again meanwhile

    info = manager.info(job_id)
    assert info is not None
    assert info.status is Status.PENDING
    assert info.retry_count == 0
    assert "no job named" in (info.last_error or "")
    assert info.run_at > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    assert lines(workdir, "runs.log") == []


def test_unencodable_argument_is_refused_and_nothing_stored(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, WorkerConfig().register(Record), processes=1)
    with pytest.raises(TypeError, match=r"Record.*'tag'"):
        manager.queue(Record(tag={1, 2}))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'tag'"):
        manager.queue_many([Record(tag="fine"), Record(tag=object())])  # type: ignore[arg-type]
    assert holding(manager) == {}


def test_a_job_enqueues_a_job(workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig(state=counting_state).register(Spawner).register(Record)
    manager = start(managers, config, processes=1)
    manager.queue(Spawner(tag="p"))
    wait_until(lambda: lines(workdir, "runs.log"), what="the child job")
    manager.join(timeout=30)
    assert [f[0] for f in lines(workdir, "runs.log")] == ["child-of-p"]


def test_schedule_and_every(workdir: Path, managers: list[Manager]) -> None:
    manager = start(managers, WorkerConfig().register(Record), processes=1)
    queued_at = time.time()
    manager.schedule(Record(tag="later"), at=dt.timedelta(seconds=0.5))
    manager.every(dt.timedelta(seconds=0.2), Record(tag="tick"))
    wait_until(lambda: sum(f[0] == "tick" for f in lines(workdir, "runs.log")) >= 3, what="ticks")
    wait_until(lambda: any(f[0] == "later" for f in lines(workdir, "runs.log")), what="later")
    later = next(float(f[2]) for f in lines(workdir, "runs.log") if f[0] == "later")
    assert later >= queued_at + 0.5
