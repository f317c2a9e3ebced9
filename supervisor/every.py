"""Recurring jobs, owned by the host so they outlive any arbiter."""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import threading
import time
from collections.abc import Callable

from storage import Job
from storage.events import EventLog
from supervisor.stats import ScheduleInfo, ScheduleKind

log = EventLog("every")


class Recurring:
    """One thread that queues each recurring job at its interval.

    Fixed rate: ticks that were missed (a host paused under load) are skipped,
    not queued in a burst.
    """

    def __init__(self, queue: Callable[[Job], object]) -> None:
        self._queue = queue
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, float, Job]] = []
        self._order = itertools.count()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def add(self, interval: float, job: Job) -> None:
        if interval <= 0:
            raise ValueError(f"every() needs a positive interval, got {interval}")
        job.encode_args()  # refuse an unencodable job now, not at its first tick
        with self._cond:
            if self._stopped:
                raise RuntimeError("the manager is stopped")
            first = time.monotonic() + interval
            heapq.heappush(self._heap, (first, next(self._order), interval, job))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jobarbiter-every", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def schedules(self) -> tuple[ScheduleInfo, ...]:
        """Each entry, in the order added: named for its job's NAME, with
        " #2", " #3"... for the same NAME added again; next_run None once stopped."""
        with self._cond:
            entries = sorted((entry[1], entry) for entry in self._heap)
            stopped = self._stopped
        now, wall = time.monotonic(), dt.datetime.now(dt.UTC)
        seen: dict[str, int] = {}
        found = []
        for _, (due, _, interval, job) in entries:
            seen[job.NAME] = count = seen.get(job.NAME, 0) + 1
            found.append(
                ScheduleInfo(
                    name=job.NAME if count == 1 else f"{job.NAME} #{count}",
                    job=job.NAME,
                    queue=job.QUEUE,
                    kind=ScheduleKind.EVERY,
                    spec=f"{interval:g}",
                    next_run=None if stopped else wall + dt.timedelta(seconds=due - now),
                )
            )
        return tuple(found)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._stopped:
                    return
                due, order, interval, job = heapq.heappop(self._heap)
                now = time.monotonic()
                following = due + interval
                if following <= now:
                    following = now + interval - (now - due) % interval
                heapq.heappush(self._heap, (following, order, interval, job))
            try:
                self._queue(job)
            except Exception as exc:
                log.error("recurring job could not be queued", job_name=job.NAME, error=str(exc))
