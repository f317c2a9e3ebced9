"""Recurring schedules on a running Manager: ``cron`` and ``every`` queue one
job per tick, due at the tick; missed ticks are skipped or the latest
queued; schedules are listed in stats() and removed by handle or name.

The Managers here run no arbiter (a producer only): what is checked is what
was queued, read back with ``jobs()``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from pathlib import Path

import pytest

from supervisor import (
    CatchUp,
    Manager,
    ManagerStopped,
    ScheduleKind,
    SqliteStorage,
    Storage,
    WorkerConfig,
)

from .jobs import ExplodingStorage, Record
from .support import start, wait_until


def ticks(manager: Manager, tag: str | None = None) -> list[float]:
    """The due times (epoch seconds) of the jobs queued, in order; only those
    of Record(tag) when given."""
    found = [
        info.run_at.timestamp()
        for info in manager.jobs(limit=1000)
        if tag is None or info.arguments() == {"tag": tag}
    ]
    return sorted(found)


def producer(managers: list[Manager], storage: Storage | None = None) -> Manager:
    config = WorkerConfig() if storage is None else WorkerConfig(storage=storage)
    return start(managers, config.register(Record), processes=0)


def test_a_seconds_field_cron_fires_once_a_second(managers: list[Manager]) -> None:
    manager = producer(managers)
    began = time.time()
    schedule = manager.cron("* * * * * *", Record(tag="s"))
    time.sleep(3.3)
    schedule.remove()
    ended = time.time()
    queued = ticks(manager)
    assert abs(len(queued) - (int(ended) - int(began))) <= 1, queued
    assert all(t == int(t) for t in queued)  # on the second
    # Whole seconds apart, each second once (a host held up a whole second skips one).
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(queued))
    assert all(began < t <= ended for t in queued)


def test_every_ticks_on_multiples_of_its_interval(managers: list[Manager]) -> None:
    manager = producer(managers)
    manager.every(dt.timedelta(milliseconds=500), Record(tag="e"))
    wait_until(lambda: len(ticks(manager)) >= 3, what="three ticks")
    queued = ticks(manager)
    assert all(round(t * 1000) % 500 == 0 for t in queued)
    assert len(set(queued)) == len(queued)


def test_remove_stops_a_schedule(managers: list[Manager]) -> None:
    manager = producer(managers)
    schedule = manager.every(0.2, Record(tag="r"))
    wait_until(lambda: len(ticks(manager)) >= 2, what="two ticks")
    assert schedule.remove() is True
    after_remove = len(ticks(manager))
    time.sleep(0.8)  # four ticks' time
    assert len(ticks(manager)) == after_remove
    assert schedule.remove() is False
    assert manager.remove_schedule(schedule.name) is False
    assert manager.stats().schedules == ()


def test_remove_by_name_and_a_name_is_unique(managers: list[Manager]) -> None:
    manager = producer(managers)
    manager.every(60, Record(tag="a"), name="beat")
    with pytest.raises(ValueError, match="'beat' runs on this manager already"):
        manager.cron("* * * * *", Record(tag="b"), name="beat")
    first = manager.every(60, Record(tag="a"))
    with pytest.raises(ValueError, match="another name="):
        manager.every(60, Record(tag="other args, same default name"))
    assert manager.remove_schedule("beat") is True
    assert [s.name for s in manager.stats().schedules] == [first.name]
    again = manager.every(60, Record(tag="b"), name="beat")  # the name is free again
    assert again.name == "beat"


def test_stats_list_each_schedule_with_its_next_run(managers: list[Manager]) -> None:
    manager = producer(managers)
    nightly = manager.cron("0 3 * * *", Record(tag="n"), tz="Europe/Paris")
    manager.every(dt.timedelta(minutes=5), Record(tag="e"), name="five")
    now = dt.datetime.now(dt.UTC)
    listed = {s.name: s for s in manager.stats().schedules}
    assert sorted(listed) == sorted(["five", nightly.name])
    assert nightly.name == f"{Record.NAME} cron 0 3 * * * Europe/Paris"

    cron = listed[nightly.name]
    assert (cron.kind, cron.spec, cron.tz) == (ScheduleKind.CRON, "0 3 * * *", "Europe/Paris")
    assert (cron.job, cron.queue, cron.shared) == (Record.NAME, "default", False)
    assert cron.next_run is not None and now < cron.next_run <= now + dt.timedelta(days=1)
    assert cron.next_run.astimezone(dt.timezone(dt.timedelta(hours=1))).hour == 3  # CET

    every = listed["five"]
    assert (every.kind, every.spec, every.tz) == (ScheduleKind.EVERY, "300", "UTC")
    assert every.next_run is not None and now < every.next_run <= now + dt.timedelta(minutes=5)
    assert every.next_run.timestamp() % 300 == 0


def test_bad_schedules_are_refused_by_name(managers: list[Manager]) -> None:
    manager = producer(managers)
    with pytest.raises(ValueError, match=r"cron\(\) expression '\* \* \*' is not valid"):
        manager.cron("* * *", Record(tag="x"))
    with pytest.raises(ValueError, match="not a known time zone"):
        manager.cron("* * * * *", Record(tag="x"), tz="Nowhere/Else")
    with pytest.raises(ValueError, match="catch_up= must be one of 'skip', 'latest'"):
        manager.every(1, Record(tag="x"), catch_up="all")
    with pytest.raises(ValueError, match="positive"):
        manager.every(0, Record(tag="x"))
    with pytest.raises(ValueError, match="name= must be a non-empty str"):
        manager.every(1, Record(tag="x"), name="")
    with pytest.raises(TypeError, match="got the class Record"):
        manager.cron("* * * * *", Record)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'tag'"):
        manager.every(1, Record(tag={1}))  # type: ignore[arg-type]
    assert manager.stats().schedules == ()
    manager.stop()
    with pytest.raises(ManagerStopped):
        manager.cron("* * * * *", Record(tag="x"))


def test_a_failing_queue_call_is_logged_and_the_schedules_go_on(
    managers: list[Manager], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="jobarbiter.schedules")
    manager = producer(managers, ExplodingStorage())
    manager.every(0.2, Record(tag="explode"), name="boom")
    manager.every(0.2, Record(tag="fine"), name="fine")

    def failed_twice() -> bool:
        return sum(bool(getattr(r, "schedule", None) == "boom") for r in caplog.records) >= 2

    wait_until(failed_twice, what="two failed ticks logged")
    before = len(ticks(manager, "fine"))
    wait_until(lambda: len(ticks(manager, "fine")) > before, what="a tick after the failures")
    record = next(r for r in caplog.records if getattr(r, "schedule", None) == "boom")
    assert record.levelno == logging.ERROR and "disk on fire" in record.getMessage()
    assert ticks(manager, "explode") == []


def test_a_host_down_for_three_ticks_skips_them(tmp_path: Path, managers: list[Manager]) -> None:
    path = tmp_path / "jobs.db"
    first = producer(managers, SqliteStorage(path))
    first.every(1, Record(tag="beat"), name="beat")
    wait_until(lambda: ticks(first), what="a first tick")
    first.stop()
    time.sleep(3.5)

    second = producer(managers, SqliteStorage(path))
    restarted = time.time()
    second.every(1, Record(tag="beat"), name="beat")
    wait_until(lambda: any(t > restarted for t in ticks(second)), what="a tick after restart")
    second.remove_schedule("beat")
    queued = ticks(second)
    last_before = max(t for t in queued if t < restarted - 3)
    assert [t for t in queued if last_before < t <= restarted] == []
    assert min(t for t in queued if t > restarted) - last_before >= 4


def test_a_host_down_for_three_ticks_runs_the_latest_with_catch_up(
    tmp_path: Path, managers: list[Manager]
) -> None:
    path = tmp_path / "jobs.db"
    first = producer(managers, SqliteStorage(path))
    first.every(1, Record(tag="beat"), name="beat", catch_up=CatchUp.LATEST)
    wait_until(lambda: ticks(first), what="a first tick")
    first.stop()
    time.sleep(3.5)

    second = producer(managers, SqliteStorage(path))
    restarted = time.time()
    second.every(1, Record(tag="beat"), name="beat", catch_up="latest")
    added = time.time()
    wait_until(lambda: any(t > added for t in ticks(second)), what="a tick after restart")
    second.remove_schedule("beat")
    queued = ticks(second)
    last_before = max(t for t in queued if t < restarted - 3)
    # One of the missed ticks, the latest: the second before the restart.
    caught_up = [t for t in queued if last_before < t <= added]
    assert len(caught_up) == 1 and caught_up[0] in (int(restarted), int(added)), caught_up


def test_a_schedule_never_run_before_catches_up_nothing(
    tmp_path: Path, managers: list[Manager]
) -> None:
    manager = producer(managers, SqliteStorage(tmp_path / "jobs.db"))
    added = time.time()
    manager.every(1, Record(tag="new"), catch_up="latest")
    wait_until(lambda: ticks(manager), what="a first tick")
    assert min(ticks(manager)) > added
