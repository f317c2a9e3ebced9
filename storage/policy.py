"""Retry policy values: how many times a job may retry, and how long it waits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

DAY = 24 * 3600.0
# No delay may pass this (a century): a job's next run time, in µs since the
# epoch, then still fits the 64-bit integers that SQLite and PostgreSQL keep.
LONGEST = 100 * 365 * DAY


@dataclass(frozen=True, slots=True)
class MaxRetries:
    """How many retries a failing job gets; ``limit=None`` means forever.

    ``count(n)`` allows n retries, so a job that always fails runs n + 1 times.
    """

    limit: int | None

    @classmethod
    def count(cls, n: int) -> MaxRetries:
        if n < 0:
            raise ValueError(f"MaxRetries.count needs n >= 0, got {n}")
        return cls(n)

    @classmethod
    def infinite(cls) -> MaxRetries:
        return cls(None)

    def allows(self, retry_count: int) -> bool:
        """True when a job that has failed ``retry_count`` times may run again."""
        return self.limit is None or retry_count <= self.limit


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before a retry, measured from the failed attempt's completion.

    Exponential: ``value ** retry_count`` seconds, at most ``max`` (a day
    unless told), computed so that no retry count overflows. Linear: ``value``
    seconds every time. Every delay is finite and at most LONGEST.
    """

    kind: Literal["linear", "exponential"]
    value: float
    max: float = DAY

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "exponential"):
            raise ValueError(f"a Backoff is linear or exponential, got {self.kind!r}")
        _check_seconds(f"Backoff.{self.kind} max", self.max)
        if self.kind == "linear":
            _check_seconds("Backoff.linear seconds", self.value)
        elif not (math.isfinite(self.value) and self.value >= 1):
            raise ValueError(f"Backoff.exponential needs a finite base >= 1, got {self.value}")

    @classmethod
    def linear(cls, seconds: float) -> Backoff:
        return cls("linear", float(seconds))

    @classmethod
    def exponential(cls, base: float, *, max: float = DAY) -> Backoff:
        return cls("exponential", float(base), float(max))

    def delay(self, retry_count: int) -> float:
        """Seconds to wait before the run that follows failure number ``retry_count``."""
        if self.kind == "linear":
            return self.value
        # Compared as logarithms: base ** retry_count itself overflows a float
        # past about a thousand retries.
        if self.value == 1 or retry_count * math.log(self.value) < math.log(self.max or 1):
            return min(float(self.value**retry_count), self.max)
        return self.max


def _check_seconds(what: str, seconds: float) -> None:
    if not (math.isfinite(seconds) and 0 <= seconds <= LONGEST):
        raise ValueError(f"{what} must be between 0 and {LONGEST:.0f} seconds, got {seconds}")


@dataclass(frozen=True, slots=True)
class Policy:
    """The per-job settings that travel with every stored job.

    Jobs of one class share one Policy object, which keeps a stored job small.
    """

    max_retries: MaxRetries
    backoff: Backoff
    heartbeat_interval: float
    timeout: float | None
    # Seconds an ended job's record (status, value, error, times) is kept.
    result_ttl: float = 600.0
