"""Recurring schedules (``every``, ``cron``), owned by the host so they outlive any arbiter.

One thread runs all of a Manager's schedules: a heap of next ticks, each
schedule's timing (supervisor/ticks.py) saying when. At a tick the thread
queues the schedule's job, due at the tick, through the storage's
``push_tick``, which stores it with a record of the tick in one
transaction: on PostgreSQL each tick is queued once however many hosts run
the schedule, with no leader to elect; on SQLite the record outlives a
restart; memory keeps it for the process, so there each host queues its own.

A schedule's name is its identity on the storage: hosts that run "the same
schedule" are hosts that give it the same name. The default name is built
from the job's NAME and the spec alone (never from an id or the time), so
that two hosts running one ``every`` agree on it without being told.

Missed ticks: a tick that passed before the schedule was added here (the
host was down), or while this thread was held up past the tick after it, is
missed. ``CatchUp.SKIP`` (the default) queues none of them;
``CatchUp.LATEST`` queues the most recent, unless it is queued already. At
start the storage's last tick of the schedule says whether any was missed: a
schedule never run before has missed nothing.

A failing queue call is logged at error with the schedule's name, and the
schedule goes on at its next tick: the thread never dies of it. Ticks missed
because this host was held up are a warning; the latest of those missed
while no host ran the schedule, queued at start, an info.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from storage import NewJob
from storage.events import EventLog
from supervisor.stats import ScheduleInfo, ScheduleKind
from supervisor.ticks import Timing, utc

log = EventLog("schedules")

_US = 1_000_000
# Longest wait between two looks at the clock: the wait is measured on the
# monotonic clock and ticks on the wall clock, so a step of the wall clock
# (NTP, a resumed laptop) is noticed within this many seconds.
MAX_WAIT = 5.0

PushTick = Callable[[str, int, NewJob], "uuid.UUID | None"]
LastTick = Callable[[str], "int | None"]


class CatchUp(enum.StrEnum):
    """What a schedule does with the ticks it missed."""

    SKIP = "skip"  # queue none of them
    LATEST = "latest"  # queue the most recent one


def catch_up_of(value: object) -> CatchUp:
    if isinstance(value, str):
        try:
            return CatchUp(value)
        except ValueError:
            pass
    choices = ", ".join(repr(c.value) for c in CatchUp)
    raise ValueError(f"catch_up= must be one of {choices}; got {value!r}")


def default_name(job_name: str, timing: Timing) -> str:
    """The name a schedule gets when none is given: its job and its spec."""
    zone = "" if timing.kind is ScheduleKind.EVERY or timing.tz == "UTC" else f" {timing.tz}"
    return f"{job_name} {timing.kind.value} {timing.spec}{zone}"


def tick_to_queue(timing: Timing, due_us: int, now_us: int, catch_up: CatchUp) -> int | None:
    """Woken at ``now_us`` for the tick ``due_us``: the tick to queue, if any.
    On time while the tick after it has not come; else every tick from
    ``due_us`` to now was missed."""
    latest = timing.latest(now_us)
    if latest <= due_us:
        return due_us
    return latest if catch_up is CatchUp.LATEST else None


def missed_at_start(
    timing: Timing, last_us: int | None, start_us: int, catch_up: CatchUp
) -> int | None:
    """Added at ``start_us``, with ``last_us`` the newest tick the storage
    has queued: the missed tick to queue, if any."""
    if catch_up is CatchUp.SKIP or last_us is None:
        return None
    latest = timing.latest(start_us)
    return latest if latest > last_us else None


class _Entry:
    __slots__ = ("catch_up", "job", "name", "next_us", "order", "since", "timing")

    def __init__(
        self, name: str, timing: Timing, job: NewJob, catch_up: CatchUp, *, order: int, now: int
    ) -> None:
        self.name = name
        self.timing = timing
        self.job = job
        self.catch_up = catch_up
        self.order = order
        self.next_us = timing.after(now)
        # Set until the thread has looked for ticks missed before it was added.
        self.since: int | None = now if catch_up is CatchUp.LATEST else None


@dataclass(frozen=True, slots=True)
class Schedule:
    """What ``every`` and ``cron`` return: the schedule's ``name`` and ``remove()``."""

    name: str
    _remove: Callable[[], bool] = field(repr=False, compare=False)

    def remove(self) -> bool:
        """Stop queueing this schedule's job from this host; False when it was
        removed already. Jobs it queued stay queued."""
        return self._remove()


class Scheduler:
    """The thread that queues every schedule's job at its ticks."""

    def __init__(
        self,
        *,
        push_tick: PushTick,
        last_tick: LastTick,
        now: Callable[[], float],
        shared: bool,
    ) -> None:
        self._push_tick = push_tick
        self._last_tick = last_tick
        self._now = now
        self._shared = shared
        self._cond = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[int, int, _Entry]] = []
        self._order = itertools.count()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._busy: _Entry | None = None  # the schedule the thread is queueing for

    def now_us(self) -> int:
        """The time ticks are measured by: the storage's clock, in µs."""
        return round(self._now() * _US)

    def add(self, name: str, timing: Timing, job: NewJob, catch_up: CatchUp) -> Schedule:
        with self._cond:
            if self._stopped:
                raise RuntimeError("the manager is stopped")
            if name in self._entries:
                raise ValueError(
                    f"a schedule named {name!r} runs on this manager already: remove it "
                    "first, or give this one another name="
                )
            order = next(self._order)
            entry = _Entry(name, timing, job, catch_up, order=order, now=self.now_us())
            self._entries[name] = entry
            first = entry.next_us if entry.since is None else entry.since
            heapq.heappush(self._heap, (first, order, entry))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jobarbiter-schedules", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        log.info("schedule added", schedule=name, kind=timing.kind.value, spec=timing.spec)
        return Schedule(name, lambda: self.remove(name, order))

    def remove(self, name: str, order: int | None = None) -> bool:
        """Remove the schedule ``name`` (only if it is still the one added
        as ``order``, when given); False when there is none. Once it returns
        the schedule queues nothing more: a tick being queued is waited for."""
        with self._cond:
            entry = self._entries.get(name)
            if entry is None or (order is not None and entry.order != order):
                return False
            del self._entries[name]  # its heap item is dropped when it comes up
            self._cond.notify_all()
            while self._busy is entry:
                self._cond.wait()
        log.info("schedule removed", schedule=name)
        return True

    def listing(self) -> tuple[ScheduleInfo, ...]:
        with self._cond:
            entries = sorted(self._entries.values(), key=lambda e: e.name)
            stopped = self._stopped
        return tuple(
            ScheduleInfo(
                name=e.name,
                job=e.job.name,
                queue=e.job.queue,
                kind=e.timing.kind,
                spec=e.timing.spec,
                next_run=None if stopped else utc(e.next_us),
                tz=e.timing.tz,
                shared=self._shared,
            )
            for e in entries
        )

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                item = self._wait_for_due()
                if item is None:
                    return
                due, order, entry = item
                now = self.now_us()
                since, entry.since = entry.since, None
                if since is not None:
                    tick = None  # asked of the storage below, out of the lock
                else:
                    tick = tick_to_queue(entry.timing, due, now, entry.catch_up)
                    entry.next_us = entry.timing.after(now)
                heapq.heappush(self._heap, (entry.next_us, order, entry))
                self._busy = entry
            try:
                if since is not None:
                    tick = self._missed(entry, since)
                elif tick != due:
                    self._held_up(entry, due, now, tick)
                if tick is not None:
                    self._queue(entry, tick)
            finally:
                with self._cond:
                    self._busy = None
                    self._cond.notify_all()

    def _wait_for_due(self) -> tuple[int, int, _Entry] | None:
        """The next due heap item of a schedule still here; None once stopped.
        Called holding the lock."""
        while not self._stopped:
            if not self._heap:
                self._cond.wait()
                continue
            due, _, entry = self._heap[0]
            if self._entries.get(entry.name) is not entry:
                heapq.heappop(self._heap)  # removed
                continue
            wait = (due - self.now_us()) / _US
            if wait <= 0:
                return heapq.heappop(self._heap)
            self._cond.wait(min(wait, MAX_WAIT))
        return None

    def _missed(self, entry: _Entry, since: int) -> int | None:
        try:
            last = self._last_tick(entry.name)
        except Exception as exc:
            self._failed(entry, "schedule could not read its last tick; it goes on", exc)
            return None
        tick = missed_at_start(entry.timing, last, since, entry.catch_up)
        if tick is not None and last is not None:
            log.info(
                "schedule missed ticks while no host ran it; queueing the latest",
                schedule=entry.name,
                last=utc(last).isoformat(),
                tick=utc(tick).isoformat(),
            )
        return tick

    def _held_up(self, entry: _Entry, due: int, now: int, tick: int | None) -> None:
        # Not a fault of the schedule: this host (its process, its machine)
        # was held up past a whole tick, and said so once.
        log.warning(
            "schedule missed ticks: this host was held up",
            schedule=entry.name,
            missed_from=utc(due).isoformat(),
            late=f"{(now - due) / _US:.3f}s",
            queued="none" if tick is None else utc(tick).isoformat(),
        )

    def _queue(self, entry: _Entry, tick: int) -> None:
        try:
            job_id = self._push_tick(entry.name, tick, entry.job._replace(run_at=tick / _US))
        except Exception as exc:
            self._failed(entry, "schedule could not queue a tick; it goes on", exc, tick)
            return
        if job_id is None:
            log.debug("tick queued already", schedule=entry.name, tick=utc(tick).isoformat())
        else:
            log.debug("tick queued", schedule=entry.name, tick=utc(tick).isoformat(), job_id=job_id)

    def _failed(self, entry: _Entry, event: str, exc: Exception, tick: int | None = None) -> None:
        with self._cond:
            if self._stopped:
                return  # the storage stopped with the manager: nothing lost
        log.error(
            event,
            schedule=entry.name,
            tick=None if tick is None else utc(tick).isoformat(),
            error=f"{type(exc).__name__}: {exc}",
        )
