"""Tally: the host's counts of how jobs ended, per queue, since start.

The StorageActor keeps one and feeds it from what it settles, on its own
thread, so counting takes no lock; ``snapshot`` copies it into frozen values
for ``stats()`` and the metrics. Run times and enqueue-to-start waits go into
fixed-bucket histograms (a bisect and two additions per observation).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# How an attempt ended, exclusive: a failed or timed-out attempt that leaves
# its job out of retries counts as dead, one that is retried as failed or
# timed_out.
ENDINGS = ("succeeded", "failed", "timed_out", "dead", "cancelled")

# How a job stopped at its TIMEOUT fails its attempt: the one place that
# writes the reason, and the one that recognises it.
_TIMEOUT = "timeout after "


def timeout_error(seconds: float) -> str:
    return f"{_TIMEOUT}{seconds:g} s"


def is_timeout(error: str | None) -> bool:
    return error is not None and error.startswith(_TIMEOUT)


# Upper bounds in seconds (Prometheus' defaults, with finer steps below 5 ms,
# where an idle queue's enqueue-to-start lies, and longer ones for jobs).
BOUNDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Histogram:
    """Observations in seconds: ``counts[i]`` fell at or under ``bounds[i]``
    and above the bound before; the last count is above every bound."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float  # the sum of the observations

    @property
    def count(self) -> int:
        return sum(self.counts)

    @classmethod
    def empty(cls) -> Histogram:
        return cls(BOUNDS, (0,) * (len(BOUNDS) + 1), 0.0)


@dataclass(frozen=True, slots=True)
class QueueTally:
    ended: Mapping[str, int]  # ENDINGS -> attempts
    retries: int
    run_seconds: Histogram  # start to end of each attempt that ran
    wait_seconds: Histogram  # enqueue (or due time) to start


class _Buckets:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.total = 0.0

    def freeze(self) -> Histogram:
        return Histogram(BOUNDS, tuple(self.counts), self.total)


class _Queue:
    __slots__ = ("ended", "retries", "run", "wait")

    def __init__(self) -> None:
        self.ended = dict.fromkeys(ENDINGS, 0)
        self.retries = 0
        self.run = _Buckets()
        self.wait = _Buckets()


class Tally:
    """Counts per queue; called from one thread (the StorageActor's)."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}

    def ended(
        self,
        queue: str,
        ending: str,
        ran: float | None = None,
        waited: float | None = None,
        *,
        retried: bool = False,
    ) -> None:
        """One attempt ended as ``ending``; ``ran`` and ``waited`` in seconds,
        if known."""
        counts = self._queues.get(queue)
        if counts is None:
            counts = self._queues[queue] = _Queue()
        counts.ended[ending] += 1
        if retried:
            counts.retries += 1
        if ran is not None:
            buckets = counts.run
            buckets.counts[bisect.bisect_left(BOUNDS, ran)] += 1
            buckets.total += ran
        if waited is not None:
            buckets = counts.wait
            buckets.counts[bisect.bisect_left(BOUNDS, waited)] += 1
            buckets.total += waited

    def snapshot(self) -> dict[str, QueueTally]:
        return {
            queue: QueueTally(
                MappingProxyType(dict(counts.ended)),
                counts.retries,
                counts.run.freeze(),
                counts.wait.freeze(),
            )
            for queue, counts in self._queues.items()
        }
