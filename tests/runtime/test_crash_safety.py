"""Arbiters die, leak, crash-loop and misbehave; no job is lost."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.ops import StorageError
from supervisor import Manager, Status, WorkerConfig
from supervisor.arbiters import STOP_GRACE

from .jobs import (
    ExplodingStorage,
    Garbage,
    Hog,
    Poison,
    Record,
    Sleepy,
    Spinner,
    Stuck,
    failing_state,
    killing_state,
    lines,
)
from .support import all_running, holding, start, succeeded, wait_until


def test_recycled_after_max_jobs_without_loss(workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig(max_jobs_per_arbiter=50).register(Record)
    manager = start(managers, config, processes=1)
    manager.queue_many(Record(tag=str(i)) for i in range(200))
    manager.join(timeout=60)

    runs = lines(workdir, "runs.log")
    assert sorted(int(f[0]) for f in runs) == list(range(200))  # each exactly once
    arbiter = manager.stats().arbiters[0]
    assert arbiter.recycles >= 3
    assert arbiter.restarts == 0
    assert len({f[1] for f in runs}) >= 4
    assert holding(manager) == {}


def test_recycled_past_max_rss_without_loss(workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig(max_rss=150 * 1024 * 1024).register(Hog).register(Record)
    manager = start(managers, config, processes=1)
    hog = manager.queue(Hog(megabytes=200))
    wait_until(lambda: manager.stats().arbiters[0].recycles == 1, what="a recycle")
    manager.queue_many(Record(tag=str(i)) for i in range(20))
    manager.join(timeout=60)

    assert succeeded(manager, hog)  # it succeeded: a recycle is no failure
    assert len(lines(workdir, "hog.log")) == 1
    assert len(lines(workdir, "runs.log")) == 20
    wait_until(lambda: all_running(manager, 1), what="the replacement")
    arbiter = manager.stats().arbiters[0]
    assert arbiter.restarts == 0
    assert arbiter.rss is not None and arbiter.rss < 150 * 1024 * 1024


@pytest.mark.parametrize("how", ["exit", "signal", "segfault"])
def test_poison_pill_ends_dead_while_other_jobs_flow(
    how: str, workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Poison).register(Record).set_worker_count("default", 2)
    manager = start(managers, config, processes=2)
    poison = manager.queue(Poison(how=how))
    manager.queue_many(Record(tag=str(i)) for i in range(300))
    manager.join(timeout=60)

    assert len(lines(workdir, "poison.log")) == 3  # count(2): one death per attempt
    info = manager.info(poison)
    assert info is not None
    assert info.status is Status.DEAD
    assert info.retry_count == 3
    assert "arbiter died" in (info.last_error or "")
    runs = [int(f[0]) for f in lines(workdir, "runs.log")]
    assert set(runs) == set(range(300))  # every one ran
    # At least once: a Record that finished just before its arbiter died, but
    # whose completion had not reached the host, runs again. At most the other
    # worker of each of the 3 dead arbiters (count 2) was running one.
    assert len(runs) - 300 <= 3
    assert [j.id for j in manager.dead_jobs()] == [poison]
    # The last death's restart may still be due (its backoff): each death, one.
    wait_until(lambda: sum(a.restarts for a in manager.stats().arbiters) == 3, what="3 restarts")

    assert manager.requeue(poison)
    assert manager.dead_jobs() == []
    manager.join(timeout=60)
    assert manager.purge_dead() == 1
    assert manager.info(poison) is None  # dead again, and purged


def test_crash_loop_is_capped_and_reported(
    workdir: Path, managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="jobarbiter"):
        manager = WorkerConfig(state=failing_state).register(Record).start(processes=1)
        managers.append(manager)
        wait_until(
            lambda: manager.stats().arbiters[0].state == "crash loop",
            timeout=30,
            what="crash loop",
        )
    arbiter = manager.stats().arbiters[0]
    assert "cannot reach the database" in (arbiter.last_error or "")
    assert arbiter.last_exit is not None and "fatal" in arbiter.last_exit
    restarts = arbiter.restarts
    # It failed by itself: from the crash loop on, each restart waits longer.
    loops = [vars(r) for r in caplog.records if vars(r)["event"] == "arbiter in a crash loop"]
    assert [r["restart_in"] for r in loops] == [0.4]
    time.sleep(1.0)
    # Backoff doubles: at most a couple more restarts in a second, not a loop.
    assert manager.stats().arbiters[0].restarts - restarts <= 2


def test_a_crash_loop_without_an_error_says_how_it_ended(
    workdir: Path, managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="jobarbiter"):
        manager = WorkerConfig(state=killing_state).register(Record).start(processes=1)
        managers.append(manager)
        wait_until(
            lambda: manager.stats().arbiters[0].state == "crash loop", timeout=30, what="crash loop"
        )
    loops = [vars(r) for r in caplog.records if vars(r)["event"] == "arbiter in a crash loop"]
    assert [r["last_error"] for r in loops] == ["none reported: it ended with signal SIGKILL"]
    # Killed from outside (as far as the host can tell), so never held back.
    assert [r["restart_in"] for r in loops] == [0.0]


@pytest.mark.parametrize("how", ["malformed", "oversized"])
def test_bad_frame_recycles_the_arbiter(how: str, workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig().register(Garbage).register(Record)
    manager = start(managers, config, processes=1)
    job_id = manager.queue(Garbage(how=how))
    wait_until(lambda: manager.stats().arbiters[0].restarts == 1, what="a restart")
    arbiter = manager.stats().arbiters[0]
    assert "bad frame" in (arbiter.last_error or "")
    info = manager.info(job_id)
    assert info is not None and info.retry_count >= 1
    wait_until(lambda: all_running(manager, 1), what="the replacement")
    manager.queue(Record(tag="after"))
    wait_until(lambda: lines(workdir, "runs.log"), what="work after the recycle")


def test_a_job_that_stops_at_its_timeout_leaves_its_neighbours_running(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Sleepy).register(Spinner).set_worker_count("default", 2)
    manager = start(managers, config, processes=1)
    bystander = manager.queue(Sleepy(tag="bystander", seconds=2.5))
    wait_until(lambda: sleepy_starts(workdir, "bystander"), what="the bystander to start")
    spinner = manager.queue(Spinner(tag="spin"), timeout=0.5)
    pid = manager.stats().arbiters[0].pid
    manager.join(timeout=30)

    info = manager.info(spinner)
    assert info is not None and info.status is Status.DEAD
    assert info.last_error == "timeout after 0.5 s"
    # Stopped in its own thread: the arbiter lives, the bystander ran once.
    assert succeeded(manager, bystander)
    assert len(sleepy_starts(workdir, "bystander")) == 1
    arbiter = manager.stats().arbiters[0]
    assert (arbiter.pid, arbiter.recycles, arbiter.restarts) == (pid, 0, 0)


def test_a_job_that_ignores_its_timeout_is_killed_after_the_grace(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Sleepy).register(Stuck).set_worker_count("default", 2)
    manager = start(managers, config, processes=1)
    bystander = manager.queue(Sleepy(tag="bystander", seconds=3.0))
    wait_until(lambda: sleepy_starts(workdir, "bystander"), what="the bystander to start")
    # The class says 20 s; this enqueue says 1 s.
    stuck = manager.queue(Stuck(tag="stuck", seconds=30.0), timeout=1.0)
    wait_until(lambda: sleepy_starts(workdir, "stuck"), what="the stuck job to start")
    began = float(sleepy_starts(workdir, "stuck")[0][3])

    wait_until(lambda: manager.stats().arbiters[0].recycles == 1, what="the recycle")
    noticed = time.time()
    # Asleep in C, it never sees the exception: killed once the grace is over.
    assert 1.0 + STOP_GRACE - 0.1 < noticed - began < 1.0 + STOP_GRACE + 0.8

    info = manager.info(stuck)
    assert info is not None
    assert info.last_error == "timeout after 1 s"
    assert info.retry_count == 1
    assert info.status is Status.DEAD
    spared = manager.info(bystander)
    assert spared is not None and spared.retry_count == 0  # back unexecuted
    wait_until(lambda: succeeded(manager, bystander), what="the bystander to rerun")
    assert len(sleepy_starts(workdir, "bystander")) == 2
    assert manager.stats().arbiters[0].restarts == 0


def test_storage_fault_is_an_error_to_the_caller_not_a_hang(
    workdir: Path, managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="jobarbiter"):
        manager = start(
            managers, WorkerConfig(storage=ExplodingStorage()).register(Record), processes=1
        )
        with pytest.raises(StorageError, match="Push failed: OSError: disk on fire"):
            manager.queue(Record(tag="explode"))
        manager.queue(Record(tag="fine"))
        manager.join(timeout=30)
    assert [f[0] for f in lines(workdir, "runs.log")] == ["fine"]
    failures = [vars(r) for r in caplog.records if vars(r)["event"] == "storage operation failed"]
    assert [e["op"] for e in failures] == ["Push"]


def sleepy_starts(workdir: Path, tag: str) -> list[list[str]]:
    return [f for f in lines(workdir, "sleepy.log") if f[0] == "start" and f[1] == tag]


def run_cli_until_sigterm(
    workdir: Path, sleep: float, grace: float, signals: int = 1
) -> tuple[int, str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "JOBARBITER_TEST_SLEEP": str(sleep), "PYTHONPATH": str(root)}
    command = [
        sys.executable,
        "-m",
        "supervisor.cli",
        "--log-json",
        "run",
        "tests.runtime.app:config",
        "--processes",
        "1",
        "--grace",
        str(grace),
    ]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=root) as cli:
        wait_until(lambda: sleepy_starts(workdir, "deploy"), what="the job to start")
        for _ in range(signals):
            cli.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # the second one lands in the grace period
        _, err = cli.communicate(timeout=60)
    return cli.returncode, err


def test_cli_sigterm_lets_the_running_job_finish(workdir: Path) -> None:
    code, _ = run_cli_until_sigterm(workdir, sleep=1.0, grace=10.0)
    assert code == 0
    assert [f[0] for f in lines(workdir, "sleepy.log")] == ["start", "end"]


def test_cli_sigterm_past_grace_puts_the_job_back_before_killing(workdir: Path) -> None:
    code, err = run_cli_until_sigterm(workdir, sleep=30.0, grace=0.5)
    assert code == 0
    assert [f[0] for f in lines(workdir, "sleepy.log")] == ["start"]
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    put_back = names.index("job put back")
    assert events[put_back]["outcome"] == "unexecuted"
    stopped = names.index("arbiter stopped")
    assert put_back < stopped
    assert events[stopped]["exit"] == "signal SIGKILL"


def test_cli_second_sigterm_puts_the_job_back_at_once_and_says_so(workdir: Path) -> None:
    started = time.monotonic()
    code, err = run_cli_until_sigterm(workdir, sleep=30.0, grace=30.0, signals=2)
    assert time.monotonic() - started < 20  # not the 30 s grace, nor the job's 30 s
    assert code == 0
    assert [f[0] for f in lines(workdir, "sleepy.log")] == ["start"]
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    second = names.index("second signal: running jobs go back now")
    assert events[second]["level"] == "warning"
    put_back = names.index("job put back")
    assert events[put_back]["outcome"] == "unexecuted"
    assert second < put_back < names.index("arbiter stopped")
