"""The Manager keeps arbiters alive and stops them gracefully."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from supervisor import Manager, MemoryStorage, Status, WorkerConfig

from .jobs import Sleepy, lines
from .support import all_running, succeeded, wait_until

KILL_REPEATS = int(os.environ.get("JOBARBITER_KILL_REPEATS", "1"))


def started(workdir: Path, tag: str) -> list[list[str]]:
    return [f for f in lines(workdir, "sleepy.log") if f[0] == "start" and f[1] == tag]


@pytest.mark.parametrize("attempt", range(KILL_REPEATS))
def test_kill_9_of_an_arbiter_running_a_job(
    attempt: int, workdir: Path, managers: list[Manager]
) -> None:
    manager = WorkerConfig().register(Sleepy).start(processes=2)
    managers.append(manager)
    wait_until(lambda: all_running(manager, 2), what="arbiters running")
    job_id = manager.queue(Sleepy(tag="victim", seconds=1.0))
    wait_until(lambda: started(workdir, "victim"), what="the job to start")
    pid = int(started(workdir, "victim")[0][2])

    psutil.Process(pid).kill()
    manager.join(timeout=30)

    runs = started(workdir, "victim")
    assert len(runs) == 2
    assert int(runs[1][2]) != pid
    ends = [f for f in lines(workdir, "sleepy.log") if f[0] == "end"]
    assert len(ends) == 1
    assert succeeded(manager, job_id)  # finished on its second attempt
    wait_until(lambda: all_running(manager, 2), what="the arbiter back")
    arbiters = manager.stats().arbiters
    killed = next(a for a in arbiters if a.restarts == 1)
    assert killed.alive
    assert killed.pid != pid
    assert killed.last_exit == "signal SIGKILL"
    assert sum(a.restarts for a in arbiters) == 1


def test_an_arbiter_killed_while_running_comes_back_at_once_every_time(
    workdir: Path, managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    manager = WorkerConfig().register(Sleepy).start(processes=1)
    managers.append(manager)
    with caplog.at_level(logging.WARNING, logger="jobarbiter"):
        for kill in range(1, 4):
            wait_until(lambda: all_running(manager, 1), what="the arbiter running")
            pid = manager.stats().arbiters[0].pid
            assert pid is not None
            psutil.Process(pid).kill()
            wait_until(lambda k=kill: manager.stats().arbiters[0].restarts == k, what="a restart")
    deaths = [vars(r) for r in caplog.records if vars(r)["event"] == "arbiter died"]
    assert [d["restart_in"] for d in deaths] == [0.0, 0.0, 0.0]  # no backoff: it was up
    wait_until(lambda: all_running(manager, 1), what="the arbiter running")
    assert manager.stats().arbiters[0].state == "running"  # never a crash loop


def test_graceful_stop_lets_a_running_job_finish(workdir: Path) -> None:
    manager = WorkerConfig().register(Sleepy).start(processes=1)
    manager.queue(Sleepy(tag="slow", seconds=1.0))
    wait_until(lambda: started(workdir, "slow"), what="the job to start")

    began = time.monotonic()
    manager.stop(timeout=10)
    assert time.monotonic() - began >= 0.5
    assert [f[0] for f in lines(workdir, "sleepy.log")] == ["start", "end"]


def test_stop_past_its_timeout_puts_running_jobs_back_unexecuted(workdir: Path) -> None:
    storage = MemoryStorage()
    manager = WorkerConfig(storage=storage).register(Sleepy).start(processes=1)
    job_id = manager.queue(Sleepy(tag="stuck", seconds=30.0))
    wait_until(lambda: started(workdir, "stuck"), what="the job to start")

    began = time.monotonic()
    manager.stop(timeout=0.5)
    assert time.monotonic() - began < 10
    info = storage.info(job_id)
    assert info is not None
    assert info.status is Status.PENDING
    assert info.retry_count == 0  # unexecuted: no attempt counted
    assert [f[0] for f in lines(workdir, "sleepy.log")] == ["start"]


SERVICE = """
import sys, time
from supervisor import WorkerConfig
from tests.runtime.jobs import Sleepy
if __name__ == "__main__":
    manager = WorkerConfig().register(Sleepy).start(processes=1)
    manager.queue(Sleepy(tag="deploy", seconds=1.0))
    print("ready", flush=True)
    manager.run_forever(grace=10)
    print("stopped", flush=True)
"""


def test_run_forever_stops_gracefully_on_sigterm(workdir: Path) -> None:
    script = workdir / "service.py"
    script.write_text(SERVICE)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env, cwd=root
    ) as service:
        assert service.stdout is not None
        assert service.stdout.readline().strip() == "ready"
        wait_until(lambda: started(workdir, "deploy"), what="the job to start")
        service.send_signal(signal.SIGTERM)
        out, _ = service.communicate(timeout=30)
    assert service.returncode == 0
    assert "stopped" in out
    assert [f[0] for f in lines(workdir, "sleepy.log")] == ["start", "end"]


def test_demo_command_reports_no_loss_and_a_restart() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.cli", "demo", "--jobs", "4000"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lost: 0" in result.stdout
    assert "restarts: 1" in result.stdout
