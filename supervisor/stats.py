"""What ``Manager.stats()`` answers: frozen figures of queues and arbiters.

A queue's stored counts come from the storage (every host's jobs, on a shared
storage); its workers, pause and counts since start are this host's.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from actors.ops import Figures
from actors.tally import ENDINGS, Histogram, Recent
from storage.model import NO_LEVELS

__all__ = [
    "ENDINGS",
    "ArbiterState",
    "ArbiterStats",
    "Histogram",
    "InFlight",
    "ManagerStats",
    "QueueFigures",
    "Recent",
    "ScheduleInfo",
    "ScheduleKind",
]

_NO_ENDINGS: Mapping[str, int] = MappingProxyType(dict.fromkeys(ENDINGS, 0))
_NO_SLOTS: Mapping[str, int] = MappingProxyType({})


class ArbiterState(enum.StrEnum):
    """Where an arbiter is in its life. A str, so ``state == "running"`` works."""

    STARTING = "starting"  # spawned; its workers are building their state
    RUNNING = "running"  # every worker ready
    RESTARTING = "restarting"  # died; restarts after a backoff
    CRASH_LOOP = "crash loop"  # died at start-up 3 times in a row, and not ready since
    STOPPING = "stopping"  # told to stop; finishing its jobs
    STOPPED = "stopped"

    def __repr__(self) -> str:
        return repr(self.value)  # stats() prints state='running'


@dataclass(frozen=True, slots=True)
class InFlight:
    """A job an arbiter has started and not finished: ``seconds`` it has run."""

    id: uuid.UUID
    name: str
    queue: str
    seconds: float


@dataclass(frozen=True, slots=True)
class ArbiterStats:
    index: int
    pid: int | None
    alive: bool
    restarts: int  # after a death
    recycles: int  # planned replacements (memory or job-count limit)
    rss: int | None  # bytes
    jobs_done: int
    state: ArbiterState
    last_exit: str | None
    last_error: str | None
    loop_blocks: int = 0  # times its event loop stalled (async jobs), all its lives
    # Worker slots per queue, as the arbiter last reported (empty when not alive).
    slots: Mapping[str, int] = field(default_factory=lambda: _NO_SLOTS)
    # Percent of one core used since the snapshot before (None: the first
    # snapshot of this process, or not alive); above 100 with several threads.
    cpu: float | None = None
    in_flight: tuple[InFlight, ...] = ()  # longest-running first


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """One queue. ``pending``, ``running``, ``dead``, ``scheduled`` and
    ``waiting`` count stored jobs (``scheduled`` is the part of ``pending``
    not due yet that never failed; ``waiting``, the jobs waiting for their
    parents, are apart from ``pending``); ``oldest_pending_age`` is how long, in seconds, the
    longest-waiting due job has waited past its ``run_at`` (None: none due).

    ``paused``: this host hands out none of its jobs; ``paused_everywhere``:
    the pause is stored, so every host sharing the storage holds it and it
    outlives a restart. ``workers`` is the slots each arbiter should have,
    ``slots`` the slots this host's live arbiters have now (a slot being
    retired counts until its job ends).

    ``ended`` counts this host's attempts since start by how they ended (the
    keys of ``ENDINGS``, exclusive: an attempt that left its job out of
    retries is "dead", not "failed"); ``retries`` the failed attempts that
    were retried. ``run_seconds`` (each attempt's run time) and
    ``wait_seconds`` (enqueue, or due time, to start; the enqueue time is
    the job id's, to the millisecond) are histograms of this host's jobs.
    ``recent`` is this host's attempts ended in each of the last minutes'
    buckets (None when there is no host: a storage opened directly).

    ``estimated`` names the stored counts that are estimates (see
    ``storage.QueueStats``: only a count above the backend's cap may be);
    empty when all are exact.

    ``pending_by_priority`` splits ``pending`` by priority level, highest
    first (``storage.QueueStats.pending_by_priority``; read-only, and left
    out of ``==`` as there).
    """

    pending: int = 0
    running: int = 0
    dead: int = 0
    scheduled: int = 0
    oldest_pending_age: float | None = None
    waiting: int = 0
    paused: bool = False
    paused_everywhere: bool = False
    workers: int = 0
    slots: int = 0
    ended: Mapping[str, int] = field(default_factory=lambda: _NO_ENDINGS)
    retries: int = 0
    run_seconds: Histogram = field(default_factory=Histogram.empty, repr=False)
    wait_seconds: Histogram = field(default_factory=Histogram.empty, repr=False)
    recent: Recent | None = field(default=None, repr=False)
    estimated: frozenset[str] = frozenset()
    pending_by_priority: Mapping[int, int] = field(default_factory=lambda: NO_LEVELS, compare=False)

    @property
    def succeeded(self) -> int:
        """Attempts that succeeded since start, on this host."""
        return self.ended["succeeded"]

    @property
    def failed(self) -> int:
        """Attempts that failed since start, on this host: retried, timed out or dead."""
        return self.ended["failed"] + self.ended["timed_out"] + self.ended["dead"]


class ScheduleKind(enum.StrEnum):
    EVERY = "every"  # a fixed interval
    CRON = "cron"  # a cron expression


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """One recurring schedule of this host. ``spec`` is how it was given
    (the interval in seconds, or the cron expression); ``next_run`` is when
    it next queues its job (aware UTC), None once the manager stops.
    ``shared``: on a shared storage, one job is queued per tick whichever
    host runs the schedule; otherwise each host queues its own."""

    name: str
    job: str  # the job's NAME
    queue: str
    kind: ScheduleKind
    spec: str
    next_run: dt.datetime | None
    tz: str = "UTC"
    shared: bool = False


@dataclass(frozen=True, slots=True)
class ManagerStats:
    queues: dict[str, QueueFigures]
    arbiters: tuple[ArbiterStats, ...]
    # This host's recurring schedules, by name (empty for a storage opened directly).
    schedules: tuple[ScheduleInfo, ...] = ()


def queue_figures(
    figures: Figures, arbiters: Sequence[ArbiterStats], workers: Mapping[str, int]
) -> dict[str, QueueFigures]:
    """Each queue that holds a job, is paused, has workers or has ended a
    job here, by name: the storage's counts joined with this host's."""
    stored, tally = figures.stored, figures.tally
    held = figures.paused_stored | figures.paused_here
    names = stored.keys() | held | tally.keys() | {q for q, n in workers.items() if n}
    queues = {}
    for queue in sorted(names):
        counts = stored.get(queue)
        ended = tally.get(queue)
        due = None if counts is None else counts.oldest_due_at
        extra: dict[str, Any] = {}
        if ended is not None:
            extra = {
                "ended": ended.ended,
                "retries": ended.retries,
                "run_seconds": ended.run_seconds,
                "wait_seconds": ended.wait_seconds,
                "recent": ended.recent,
            }
        elif figures.tallied:
            extra = {"recent": Recent.empty()}
        queues[queue] = QueueFigures(
            pending=0 if counts is None else counts.pending,
            running=0 if counts is None else counts.running,
            dead=0 if counts is None else counts.dead,
            scheduled=0 if counts is None else counts.scheduled,
            estimated=frozenset() if counts is None else counts.estimated,
            waiting=0 if counts is None else counts.waiting,
            pending_by_priority=NO_LEVELS if counts is None else counts.pending_by_priority,
            # Hosts' clocks differ a little: a job just due is not -0.01 s old.
            oldest_pending_age=None if due is None else max(0.0, figures.now - due),
            paused=queue in held,
            paused_everywhere=queue in figures.paused_stored,
            workers=workers.get(queue, 0),
            slots=sum(a.slots.get(queue, 0) for a in arbiters if a.alive),
            **extra,
        )
    return queues
