"""Deadlines: the TIMEOUT of each job a StorageActor hands out.

Contract: a job delivered with a TIMEOUT (``delivered``) gets its deadline
when its runner reports it Started (``start``), counted from then on the
storage's clock, and loses it when it ends (``ended``). ``expire`` reports
every deadline passed of a job its runner still holds: it logs "job timed
out" and tells the TimeoutHandler, which stops the job for real (in its own
thread first, by killing the runner's process if it does not end). A
deadline of a job since completed, or started again, is ignored.

It also knows what each runner has reported started (a Start op) and not
ended: when a runner is retired, those jobs fail an attempt, while its other
held jobs were only buffered (``retire``). The links send a Start only for
jobs with a TIMEOUT; the Retire after a death names the others. Only the
actor's thread calls it.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable, Sequence

from actors.ops import Complete
from storage import Claim, Storage
from storage.events import EventLog

log = EventLog("storage")

# Told (runner, job id, timeout) when a job outlives its TIMEOUT: the Manager
# stops it for real.
TimeoutHandler = Callable[[str, uuid.UUID, float], None]


class Deadlines:
    """Job timeouts counted from Start, and the jobs each runner started."""

    def __init__(self, storage: Storage, on_timeout: TimeoutHandler | None) -> None:
        self._storage = storage
        self._on_timeout = on_timeout
        # A heap of (deadline, delivery, runner, id, timeout), and the live
        # delivery of each (runner, id), so that a deadline of a job since
        # completed or started again is ignored.
        self._heap: list[tuple[float, int, str, uuid.UUID, float]] = []
        self._timed: dict[tuple[str, uuid.UUID], int] = {}
        self._timeouts: dict[tuple[str, uuid.UUID], float] = {}  # delivered, not ended
        # What each runner reported Started and has not ended: its other held
        # jobs are buffered, and go back unexecuted if it dies.
        self._started: dict[str, set[uuid.UUID]] = {}
        self._deliveries = itertools.count()

    def earliest(self) -> float | None:
        """The earliest deadline still counted, if any."""
        return self._heap[0][0] if self._heap else None

    def delivered(self, runner: str, jobs: list[Claim]) -> None:
        for job in jobs:
            if job.timeout is not None:
                # Its TIMEOUT counts from its start, which the runner reports.
                self._timeouts[(runner, job.id)] = job.timeout

    def start(self, runner: str, job_id: uuid.UUID) -> None:
        started = self._started.get(runner)
        if started is None:
            started = self._started[runner] = set()
        started.add(job_id)
        if not self._timeouts:
            return  # no job with a TIMEOUT is out: the common case
        timeout = self._timeouts.get((runner, job_id))
        if timeout is not None:
            delivery = next(self._deliveries)
            self._timed[(runner, job_id)] = delivery
            deadline = self._storage.now() + timeout
            heapq.heappush(self._heap, (deadline, delivery, runner, job_id, timeout))

    def ended(self, completes: Sequence[Complete]) -> None:
        if not self._timeouts and not any(self._started.values()):
            return  # nothing started is watched: the common case
        for done in completes:
            started = self._started.get(done.runner)
            if started:
                started.discard(done.job_id)
            if self._timeouts:
                self._timeouts.pop((done.runner, done.job_id), None)
                self._timed.pop((done.runner, done.job_id), None)

    def retire(self, runner: str) -> list[uuid.UUID]:
        """Forget ``runner`` (it is gone); returns what it had started and not
        ended, in order."""
        for key in [k for k in self._timeouts if k[0] == runner]:
            del self._timeouts[key]
            self._timed.pop(key, None)  # its heap entry is ignored from now on
        return sorted(self._started.pop(runner, ()))

    def expire(self) -> None:
        if not self._heap:
            return
        now = self._storage.now()
        while self._heap and self._heap[0][0] <= now:
            _, delivery, runner, job_id, timeout = heapq.heappop(self._heap)
            if self._timed.get((runner, job_id)) != delivery:
                continue
            del self._timed[(runner, job_id)]
            info = self._storage.info(job_id)
            if info is None or info.runner != runner:
                continue
            log.error(
                "job timed out", job_id=job_id, job_name=info.name, runner=runner, timeout=timeout
            )
            if self._on_timeout is not None:
                self._on_timeout(runner, job_id, timeout)
