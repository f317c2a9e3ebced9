"""Retry policy values: how many times a job may retry, and how long it waits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# The longest wait between two attempts: an exponential backoff stops growing
# here (base 2 reaches it at the 20th failure) instead of overflowing a float
# after about a thousand, as a job with infinite retries would.
MAX_DELAY = 7 * 24 * 3600.0


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
    """Delay before a retry, measured from the failed attempt's completion."""

    kind: Literal["linear", "exponential"]
    value: float

    @classmethod
    def linear(cls, seconds: float) -> Backoff:
        if seconds < 0:
            raise ValueError(f"Backoff.linear needs seconds >= 0, got {seconds}")
        return cls("linear", float(seconds))

    @classmethod
    def exponential(cls, base: float) -> Backoff:
        if base < 1:
            raise ValueError(f"Backoff.exponential needs base >= 1, got {base}")
        return cls("exponential", float(base))

    def delay(self, retry_count: int) -> float:
        """Seconds to wait before the run that follows failure number
        ``retry_count``; an exponential delay is at most MAX_DELAY."""
        if self.kind == "linear":
            return self.value
        if self.value > 1 and retry_count * math.log(self.value) >= math.log(MAX_DELAY):
            return MAX_DELAY
        return min(float(self.value**retry_count), MAX_DELAY)


@dataclass(frozen=True, slots=True)
class Policy:
    """The per-job settings that travel with every stored job.

    Jobs of one class share one Policy object, which keeps a stored job small.
    """

    max_retries: MaxRetries
    backoff: Backoff
    heartbeat_interval: float
    timeout: float | None
