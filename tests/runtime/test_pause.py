"""Pausing a queue: nothing of it starts while it is paused, running jobs
finish, queueing goes on; resume releases it. Stored unless local_only."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from supervisor import Manager, WorkerConfig

from .jobs import Record, Sleepy, lines
from .support import start, wait_until

HELD_FOR = 1.0  # how long a test watches a paused queue start nothing


def config() -> WorkerConfig:
    return WorkerConfig().register(Record).register(Sleepy).set_worker_count("default", 2)


def test_a_paused_queue_starts_nothing_until_resumed(
    workdir: Path, managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    manager = start(managers, config(), processes=2)
    with caplog.at_level(logging.INFO, logger="jobarbiter"):
        manager.pause("default")
    assert "queue paused" in caplog.text
    manager.queue_many(Record(tag=f"r{i}") for i in range(5))  # accepted
    time.sleep(HELD_FOR)
    assert lines(workdir, "runs.log") == []
    figures = manager.stats().queues["default"]
    assert (figures.pending, figures.running) == (5, 0)
    assert figures.paused and figures.paused_everywhere
    with caplog.at_level(logging.INFO, logger="jobarbiter"):
        manager.resume("default")
    assert "queue resumed" in caplog.text
    manager.join(timeout=30)
    assert sorted(f[0] for f in lines(workdir, "runs.log")) == [f"r{i}" for i in range(5)]
    assert not manager.stats().queues["default"].paused


def test_a_job_running_when_its_queue_is_paused_finishes(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, config(), processes=1)
    manager.queue(Sleepy(tag="running", seconds=0.5))
    wait_until(lambda: len(lines(workdir, "sleepy.log")) == 1, what="it to start")
    manager.pause("default")
    manager.queue(Sleepy(tag="held", seconds=0))
    wait_until(lambda: len(lines(workdir, "sleepy.log")) == 2, what="it to end")
    time.sleep(HELD_FOR)
    assert [f[:2] for f in lines(workdir, "sleepy.log")] == [
        ["start", "running"],
        ["end", "running"],
    ]
    manager.resume("default")
    manager.join(timeout=30)
    assert [f[1] for f in lines(workdir, "sleepy.log")][2:] == ["held", "held"]


def test_a_local_pause_is_this_hosts_alone(workdir: Path, managers: list[Manager]) -> None:
    manager = start(managers, config(), processes=1)
    manager.pause("default", local_only=True)
    manager.queue(Record(tag="held"))
    time.sleep(HELD_FOR)
    assert lines(workdir, "runs.log") == []
    figures = manager.stats().queues["default"]
    assert figures.paused and not figures.paused_everywhere
    manager.resume("default", local_only=True)
    manager.join(timeout=30)
    assert [f[0] for f in lines(workdir, "runs.log")] == ["held"]


def test_a_local_resume_leaves_a_stored_pause_standing(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, config(), processes=1)
    manager.pause("default")
    manager.resume("default", local_only=True)
    manager.queue(Record(tag="held"))
    time.sleep(HELD_FOR)
    assert lines(workdir, "runs.log") == []
    assert manager.stats().queues["default"].paused_everywhere
    manager.resume("default")
    manager.join(timeout=30)
    assert [f[0] for f in lines(workdir, "runs.log")] == ["held"]


def test_pausing_one_queue_leaves_the_others_running(
    workdir: Path, managers: list[Manager]
) -> None:
    built = config().set_worker_count("other", 1)
    manager = start(managers, built, processes=1)
    manager.pause("other")
    manager.queue(Record(tag="other"), queue="other")
    manager.queue(Record(tag="default"))
    wait_until(lambda: len(lines(workdir, "runs.log")) == 1, what="the default job")
    time.sleep(HELD_FOR)
    assert [f[0] for f in lines(workdir, "runs.log")] == ["default"]
    assert manager.stats().queues["other"].pending == 1
