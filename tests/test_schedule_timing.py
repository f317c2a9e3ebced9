"""When schedules tick (supervisor/ticks.py), and which ticks a schedule
queues when it wakes or starts (supervisor/schedules.py): pure functions of
the instants given, no clock and no thread."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from supervisor.schedules import CatchUp, default_name, missed_at_start, tick_to_queue
from supervisor.stats import ScheduleKind
from supervisor.ticks import Cron, Every, utc

S = 1_000_000  # µs in a second
T = 1_700_000_000 * S  # a whole second, UTC


def us(when: dt.datetime) -> int:
    return round(when.timestamp() * S)


# -- every ----------------------------------------------------------------------------


def test_every_ticks_on_multiples_of_its_interval_since_the_epoch() -> None:
    hourly = Every.of(3600)
    start = us(dt.datetime(2026, 12, 4, 18, 41, 7, tzinfo=dt.UTC))
    assert utc(hourly.after(start)) == dt.datetime(2026, 12, 4, 19, tzinfo=dt.UTC)
    assert utc(hourly.latest(start)) == dt.datetime(2026, 12, 4, 18, tzinfo=dt.UTC)
    second = Every.of(1)
    assert second.after(T) == T + S  # strictly after
    assert second.latest(T) == T  # at or before
    assert second.after(T + 1) == T + S
    assert Every.of(0.2).after(T + 1) == T + S // 5


def test_hosts_started_apart_agree_on_the_ticks() -> None:
    every = Every.of(30)
    window = every.latest(T)
    a, b = window + 3 * S + 17, window + 29 * S + 900_001  # two hosts' start times
    assert every.after(a) == every.after(b)


def test_every_refuses_what_is_no_interval() -> None:
    for bad in (0, -1, float("inf"), float("nan"), 1e-9):
        with pytest.raises(ValueError, match="every"):
            Every.of(bad)


def test_every_says_its_spec() -> None:
    assert Every.of(1).spec == "1"
    assert Every.of(0.25).spec == "0.25"
    assert Every.of(3600).kind is ScheduleKind.EVERY


# -- cron -----------------------------------------------------------------------------


def test_a_seconds_field_ticks_each_second() -> None:
    cron = Cron.of("* * * * * *", "UTC", T)
    assert cron.after(T) == T + S
    assert cron.after(T + 1) == T + S
    assert cron.latest(T) == T
    assert cron.latest(T + S - 1) == T
    assert Cron.of("* * * * * */10", "UTC", T).after(T) == T + 10 * S  # T is a multiple of 10 s
    # Seconds come last: this is every second of every tenth minute.
    assert Cron.of("*/10 * * * * *", "UTC", T).after(T) == T + 400 * S


def test_five_fields_tick_on_minutes_in_their_zone() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    cron = Cron.of("30 9 * * 1-5", "Europe/Paris", T)
    friday_evening = us(dt.datetime(2026, 12, 4, 18, tzinfo=paris))
    monday = dt.datetime(2026, 12, 7, 9, 30, tzinfo=paris)
    assert utc(cron.after(friday_evening)) == monday
    assert utc(cron.latest(friday_evening)) == dt.datetime(2026, 12, 4, 9, 30, tzinfo=paris)
    assert cron.tz == "Europe/Paris" and cron.spec == "30 9 * * 1-5"


def test_a_time_the_clocks_skip_runs_at_the_first_instant_after() -> None:
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    cron = Cron.of("30 2 * * *", "Europe/Paris", T)
    before = us(dt.datetime(2026, 3, 29, 1, 0, tzinfo=paris))  # clocks go 2:00 -> 3:00
    assert utc(cron.after(before)) == dt.datetime(2026, 3, 29, 3, 0, tzinfo=paris)


def test_a_bad_expression_or_zone_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'61 \* \* \* \*' is not valid"):
        Cron.of("61 * * * *", "UTC", T)
    with pytest.raises(ValueError, match="'every day' is not valid"):
        Cron.of("every day", "UTC", T)
    with pytest.raises(ValueError, match="'0 0 30 2 \\*' is not valid"):
        Cron.of("0 0 30 2 *", "UTC", T)  # February 30th never comes
    with pytest.raises(ValueError, match="'Mars/Olympus' is not a known time zone"):
        Cron.of("* * * * *", "Mars/Olympus", T)
    with pytest.raises(TypeError, match="expression as a str"):
        Cron.of(5, "UTC", T)


# -- what a schedule queues -----------------------------------------------------------


def test_a_tick_woken_for_before_the_next_one_is_queued() -> None:
    every = Every.of(1)
    for catch_up in CatchUp:
        assert tick_to_queue(every, T, T, catch_up) == T
        assert tick_to_queue(every, T, T + S - 1, catch_up) == T  # late, not missed


def test_ticks_passed_while_held_up_are_skipped_or_the_latest_queued() -> None:
    every = Every.of(1)
    held_up = T + 3 * S + 5  # T, T+1, T+2 and T+3 have passed
    assert tick_to_queue(every, T, held_up, CatchUp.SKIP) is None
    assert tick_to_queue(every, T, held_up, CatchUp.LATEST) == T + 3 * S


def test_at_start_missed_ticks_are_skipped_by_default() -> None:
    every = Every.of(1)
    assert missed_at_start(every, T, T + 4 * S + 5, CatchUp.SKIP) is None


def test_at_start_the_latest_missed_tick_is_queued_when_asked() -> None:
    every = Every.of(1)
    assert missed_at_start(every, T, T + 4 * S + 5, CatchUp.LATEST) == T + 4 * S
    # Nothing missed: the latest tick is the one queued last.
    assert missed_at_start(every, T, T + S - 1, CatchUp.LATEST) is None
    # Never run before: it has missed nothing.
    assert missed_at_start(every, None, T + 4 * S, CatchUp.LATEST) is None


def test_default_names_come_from_the_job_and_the_spec() -> None:
    assert default_name("app.Beat", Every.of(30)) == "app.Beat every 30"
    assert default_name("app.Beat", Cron.of("0 3 * * *", "UTC", T)) == "app.Beat cron 0 3 * * *"
    paris = Cron.of("0 3 * * *", "Europe/Paris", T)
    assert default_name("app.Beat", paris) == "app.Beat cron 0 3 * * * Europe/Paris"
