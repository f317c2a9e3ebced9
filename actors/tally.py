"""Tally: the host's counts of how jobs ended, per queue, since start.

The StorageActor keeps one and feeds it from what it settles, on its own
thread, so counting takes no lock; ``snapshot`` copies it into frozen values
for ``stats()`` and the metrics. Run times and enqueue-to-start waits go into
fixed-bucket histograms (a bisect and two additions per observation).

Each queue also keeps its recent endings in a ring of RECENT_BUCKETS buckets
of RECENT_STEP seconds (the last ten minutes), filled whether or not anyone
looks, so a chart of jobs/s has its history the moment a page opens.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping
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


RECENT_STEP = 10.0  # seconds per bucket of recent endings
RECENT_BUCKETS = 60  # ten minutes of them


@dataclass(frozen=True, slots=True)
class Recent:
    """Attempts ended in each of the last ``len(counts)`` buckets of ``step``
    seconds, oldest first; the last bucket is the current one, ``elapsed``
    seconds into it (so partly filled)."""

    step: float
    counts: tuple[int, ...]
    elapsed: float

    @classmethod
    def empty(cls) -> Recent:
        return cls(RECENT_STEP, (0,) * RECENT_BUCKETS, 0.0)

    def rate(self, seconds: float = 60.0) -> float:
        """Jobs/s over about the last ``seconds``: the whole buckets that
        cover them, and the current one."""
        whole = min(max(round(seconds / self.step), 0), len(self.counts) - 1)
        span = whole * self.step + self.elapsed
        if span <= 0:
            return 0.0
        return sum(self.counts[len(self.counts) - 1 - whole :]) / span

    def per_second(self) -> tuple[float, ...]:
        """Each whole bucket's jobs/s, oldest first (the current one left out)."""
        return tuple(n / self.step for n in self.counts[:-1])


@dataclass(frozen=True, slots=True)
class QueueTally:
    ended: Mapping[str, int]  # ENDINGS -> attempts
    retries: int
    run_seconds: Histogram  # start to end of each attempt that ran
    wait_seconds: Histogram  # enqueue (or due time) to start
    recent: Recent  # endings of the last minutes


class _Buckets:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)
        self.total = 0.0

    def freeze(self) -> Histogram:
        return Histogram(BOUNDS, tuple(self.counts), self.total)


class _Ring:
    """Endings per RECENT_STEP bucket; ``counts[b % RECENT_BUCKETS]`` is bucket
    ``b`` (a bucket number is the clock's time // RECENT_STEP) for the last
    RECENT_BUCKETS buckets up to ``last``, the newest written."""

    __slots__ = ("counts", "last")

    def __init__(self, bucket: int) -> None:
        self.counts = [0] * RECENT_BUCKETS
        self.last = bucket

    def advance(self, bucket: int) -> None:
        """Empty the buckets after ``last`` up to ``bucket``: nothing ended in them."""
        for skipped in range(self.last + 1, min(bucket, self.last + RECENT_BUCKETS) + 1):
            self.counts[skipped % RECENT_BUCKETS] = 0
        self.last = bucket

    def freeze(self, now: float) -> Recent:
        bucket = int(now // RECENT_STEP)
        if bucket > self.last:
            self.advance(bucket)
        counts = self.counts
        start = bucket + 1  # the oldest bucket shown, RECENT_BUCKETS - 1 before this one
        return Recent(
            RECENT_STEP,
            tuple(counts[(start + i) % RECENT_BUCKETS] for i in range(RECENT_BUCKETS)),
            now - bucket * RECENT_STEP,
        )


class _Queue:
    __slots__ = ("ended", "recent", "retries", "run", "wait")

    def __init__(self, bucket: int) -> None:
        self.ended = dict.fromkeys(ENDINGS, 0)
        self.retries = 0
        self.run = _Buckets()
        self.wait = _Buckets()
        self.recent = _Ring(bucket)


class Tally:
    """Counts per queue; called from one thread (the StorageActor's).

    Endings go into the recent bucket of the time last given to ``at``
    (monotonic seconds), which the StorageActor calls once per message: the
    clock is read once for many endings, not for each. ``clock`` is what
    ``snapshot`` reads to place the buckets it shows."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._queues: dict[str, _Queue] = {}
        self._clock = clock
        self._bucket = 0
        self._slot = 0
        self.at(clock())

    def at(self, now: float) -> None:
        """The time the endings that follow happened at."""
        bucket = int(now // RECENT_STEP)
        if bucket > self._bucket:
            self._bucket = bucket
            self._slot = bucket % RECENT_BUCKETS

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
            counts = self._queues[queue] = _Queue(self._bucket)
        counts.ended[ending] += 1
        recent = counts.recent
        if recent.last != self._bucket:
            recent.advance(self._bucket)
        recent.counts[self._slot] += 1
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
        now = self._clock()
        self.at(now)
        return {
            queue: QueueTally(
                MappingProxyType(dict(counts.ended)),
                counts.retries,
                counts.run.freeze(),
                counts.wait.freeze(),
                counts.recent.freeze(now),
            )
            for queue, counts in self._queues.items()
        }
