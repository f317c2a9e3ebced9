"""When a recurring schedule ticks: wall-clock instants, in µs since the epoch.

A tick is an instant every host computes alike from the schedule alone, so
hosts that run one schedule on one storage agree on its ticks without
talking, and the storage can tell a tick already queued (``push_tick``).

* ``Every``: the multiples of its interval since the epoch (an hourly
  schedule ticks on the hour, UTC, whenever its host started).
* ``Cron``: the instants a cron expression names in its time zone, by
  croniter: five fields, or six with seconds last (``* * * * * */10``: every
  10 s), or seven with a year. croniter handles daylight saving: a time the
  clocks skip runs at the first instant after it, and a time they repeat
  runs in both of its hours.

Both answer in integer µs, so ticks compare exactly across hosts.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from dataclasses import dataclass
from typing import Protocol

from croniter import CroniterError, croniter

from supervisor.stats import ScheduleKind

_US = 1_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)


class Timing(Protocol):
    """A schedule's instants."""

    @property
    def kind(self) -> ScheduleKind: ...

    @property
    def spec(self) -> str:
        """How it was given: the interval in seconds, or the expression."""
        ...

    @property
    def tz(self) -> str: ...

    def after(self, t_us: int) -> int:
        """The first tick strictly after ``t_us``."""
        ...

    def latest(self, t_us: int) -> int:
        """The last tick at or before ``t_us``."""
        ...


@dataclass(frozen=True, slots=True)
class Every:
    interval_us: int

    @classmethod
    def of(cls, seconds: float) -> Every:
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"every() needs a positive, finite interval; got {seconds} s")
        interval_us = round(seconds * _US)
        if interval_us < 1:
            raise ValueError(f"every() needs an interval of 1 µs or more; got {seconds} s")
        return cls(interval_us)

    @property
    def kind(self) -> ScheduleKind:
        return ScheduleKind.EVERY

    @property
    def spec(self) -> str:
        return f"{self.interval_us / _US:g}"

    @property
    def tz(self) -> str:
        return "UTC"

    def after(self, t_us: int) -> int:
        return (t_us // self.interval_us + 1) * self.interval_us

    def latest(self, t_us: int) -> int:
        return t_us // self.interval_us * self.interval_us


@dataclass(frozen=True, slots=True)
class Cron:
    expression: str
    zone: zoneinfo.ZoneInfo

    @classmethod
    def of(cls, expression: object, tz: object, now_us: int) -> Cron:
        """A checked cron timing: the expression parses, the zone exists, and
        a tick comes after ``now_us`` (``0 0 30 2 *`` never does)."""
        if not isinstance(expression, str):
            raise TypeError(f"cron() takes the expression as a str; got {expression!r}")
        if not isinstance(tz, str) or not tz:
            raise TypeError(f"cron() tz= takes a zone name such as 'Europe/Paris'; got {tz!r}")
        try:
            zone = zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"cron() tz={tz!r} is not a known time zone: {exc}") from None
        timing = cls(expression, zone)
        try:
            timing.after(now_us)
        except CroniterError as exc:
            raise ValueError(
                f"cron() expression {expression!r} is not valid: {exc} (five fields, "
                "'minute hour day month weekday', or six with seconds last)"
            ) from None
        return timing

    @property
    def kind(self) -> ScheduleKind:
        return ScheduleKind.CRON

    @property
    def spec(self) -> str:
        return self.expression

    @property
    def tz(self) -> str:
        return self.zone.key

    def _at(self, t_us: int) -> croniter:
        return croniter(self.expression, (_EPOCH + t_us * _ONE_US).astimezone(self.zone))

    def after(self, t_us: int) -> int:
        return _micros(self._at(t_us).get_next(dt.datetime))

    def latest(self, t_us: int) -> int:
        # get_prev is strictly before its start: start one µs later.
        return _micros(self._at(t_us + 1).get_prev(dt.datetime))


def _micros(when: dt.datetime) -> int:
    return (when - _EPOCH) // _ONE_US


def utc(t_us: int) -> dt.datetime:
    """A tick as an aware UTC datetime."""
    return _EPOCH + t_us * _ONE_US
