"""MemoryStorage: jobs in sorted indexes, lost when the process ends.

Each queue has two sorted indexes of plain ints, so that ordering is done by
C comparisons and no Python ``__lt__`` runs on the hot path:

* pending: ``run_at_us << 128 | id``: run_at order, and among equal run_at
  the id order, which is enqueue order (ids are time-ordered and strictly
  increasing per storage). A job put back keeps its id, so it keeps its place.
* held: ``expires_us << 128 | id``: the earliest stale claim is first.

The low 128 bits of either key are the job's id, the key of ``_jobs``.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence

from sortedcontainers import SortedList

from storage.clock import Clock, SystemClock
from storage.contract import STALE_HEARTBEATS, Completion, PopRequest, complete_then_pop
from storage.ids import IdGenerator, id_time, to_uuid
from storage.model import (
    Claim,
    Disposition,
    JobInfo,
    JobResult,
    NewJob,
    Outcome,
    QueueStats,
    Status,
)
from storage.policy import Policy

_ID_MASK = (1 << 128) - 1
_US = 1_000_000


class _Entry:
    """One stored job. ``mark`` is the claim's expiry (µs) while running and
    the time of death (µs) while dead."""

    __slots__ = (
        "args",
        "id",
        "key",
        "last_error",
        "mark",
        "name",
        "policy",
        "queue",
        "retry_count",
        "runner",
        "status",
        "unique_key",
    )

    def __init__(self, job_id: int, job: NewJob, key: int) -> None:
        self.id = job_id
        self.name = job.name
        self.queue = job.queue
        self.args = job.args
        self.policy: Policy = job.policy
        self.retry_count = 0
        self.key = key
        self.status = Status.PENDING
        self.last_error: str | None = None
        self.runner: str | None = None
        self.mark = 0
        self.unique_key = job.unique_key


@functools.lru_cache(maxsize=64)
def _lease_us(heartbeat_interval: float) -> int:
    """How long a claim holds without a heartbeat, in µs."""
    return round(STALE_HEARTBEATS * heartbeat_interval * _US)


def _utc(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / _US, dt.UTC)


class MemoryStorage:
    """The default storage. Not thread-safe: a StorageActor owns it."""

    def __init__(self, *, clock: Clock | None = None, unregistered_delay: float = 60.0) -> None:
        self._clock: Clock = clock or SystemClock()
        self._unregistered_delay_us = round(unregistered_delay * _US)
        self._ids = IdGenerator()
        self._jobs: dict[int, _Entry] = {}
        self._pending: dict[str, SortedList] = {}
        self._held: dict[str, SortedList] = {}
        # The pending keys of jobs that failed before: told apart from jobs
        # scheduled for later, which join() does not wait for.
        self._retrying: dict[str, SortedList] = {}
        self._dead: dict[str, dict[int, _Entry]] = {}
        self._by_runner: dict[str, set[int]] = {}
        self._unique: dict[str, int] = {}  # unique key -> id of the live job holding it

    # -- time ---------------------------------------------------------------

    def now(self) -> float:
        return self._clock.now()

    def open(self) -> MemoryStorage:
        return self  # nothing to open

    def commit(self) -> None:
        pass  # nothing outlives the process anyway

    @property
    def poll_interval(self) -> float | None:
        return None

    def subscribe(self, wake: Callable[[], None]) -> None:
        pass  # only the owning StorageActor changes it

    def close(self) -> None:
        pass

    def _now_us(self) -> int:
        return round(self._clock.now() * _US)

    # -- writing ------------------------------------------------------------

    def push(self, job: NewJob) -> uuid.UUID:
        return to_uuid(self._insert(job, self._now_us()))

    def push_many(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        now = self._now_us()
        keys: dict[str, list[int]] = {}
        ids = [to_uuid(self._insert(job, now, keys)) for job in jobs]
        for queue, added in keys.items():
            # One sort for a batch, not a search per job.
            self._pending_of(queue).update(added)
        return ids

    def _pending_of(self, queue: str) -> SortedList:
        pending = self._pending.get(queue)
        if pending is None:
            pending = self._pending[queue] = SortedList()
        return pending

    def _insert(self, job: NewJob, now: int, batch: dict[str, list[int]] | None = None) -> int:
        """Store ``job``; its pending key goes into ``batch`` (per queue) if
        given, for the caller to add, or straight into its queue."""
        if job.unique_key is not None:
            live = self._unique.get(job.unique_key)
            if live is not None:
                return live
        job_id = self._ids.next_int()
        if job.unique_key is not None:
            self._unique[job.unique_key] = job_id
        run_at = now if job.run_at is None else round(job.run_at * _US)
        key = (run_at << 128) | job_id
        self._jobs[job_id] = _Entry(job_id, job, key)
        if batch is None:
            self._pending_of(job.queue).add(key)
        else:
            added = batch.get(job.queue)
            if added is None:
                added = batch[job.queue] = []
            added.append(key)
        return job_id

    def pop(self, queue: str, runner: str, limit: int = 1) -> list[Claim]:
        now = self._now_us()
        claimed: list[Claim] = []
        held = self._held.get(queue)
        # A claim whose heartbeat is older than 5 intervals is taken over.
        while held and len(claimed) < limit and (held[0] >> 128) < now:
            entry = self._jobs[held.pop(0) & _ID_MASK]
            self._by_runner[entry.runner].discard(entry.id)  # type: ignore[index]
            claimed.append(self._claim(entry, runner, now))
        pending = self._pending.get(queue)
        while pending and len(claimed) < limit and (pending[0] >> 128) <= now:
            entry = self._jobs[pending.pop(0) & _ID_MASK]
            if entry.retry_count:
                self._retrying[queue].remove(entry.key)
            entry.status = Status.RUNNING
            claimed.append(self._claim(entry, runner, now))
        return claimed

    def _claim(self, entry: _Entry, runner: str, now: int) -> Claim:
        entry.runner = runner
        self._hold(entry, now)
        owned = self._by_runner.get(runner)
        if owned is None:
            owned = self._by_runner[runner] = set()
        owned.add(entry.id)
        return Claim(
            to_uuid(entry.id),
            entry.name,
            entry.queue,
            entry.args,
            entry.retry_count,
            entry.policy.timeout,
        )

    def _hold(self, entry: _Entry, now: int) -> None:
        lease = _lease_us(entry.policy.heartbeat_interval)
        entry.mark = ((now + lease) << 128) | entry.id
        held = self._held.get(entry.queue)
        if held is None:
            held = self._held[entry.queue] = SortedList()
        held.add(entry.mark)

    def heartbeat(self, runner: str, job_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        now = self._now_us()
        lost: list[uuid.UUID] = []
        for job_id in job_ids:
            entry = self._jobs.get(job_id.int)
            if entry is None or entry.runner != runner:
                lost.append(job_id)
                continue
            self._held[entry.queue].remove(entry.mark)
            self._hold(entry, now)
        return lost

    def complete(self, job_id: uuid.UUID, runner: str, result: JobResult) -> Disposition:
        entry = self._jobs.get(job_id.int)
        if entry is None or entry.runner != runner:
            return Disposition.NOT_HELD
        self._unhold(entry)
        self._by_runner[runner].discard(entry.id)
        if result.outcome is Outcome.SUCCESS:
            del self._jobs[entry.id]
            self._forget_key(entry)
            return Disposition.FINISHED  # the hot path, without the clock
        return self._settle(entry, result, self._now_us())

    def complete_and_pop(
        self, completions: Sequence[Completion], pops: Sequence[PopRequest]
    ) -> tuple[list[Disposition], list[list[Claim]]]:
        return complete_then_pop(self, completions, pops)

    def release(self, runner: str, result: JobResult) -> list[tuple[uuid.UUID, Disposition]]:
        now = self._now_us()
        settled = []
        for job_id in sorted(self._by_runner.pop(runner, ())):
            entry = self._jobs[job_id]
            self._unhold(entry)
            settled.append((to_uuid(job_id), self._settle(entry, result, now)))
        return settled

    def _unhold(self, entry: _Entry) -> None:
        self._held[entry.queue].remove(entry.mark)
        entry.runner = None
        entry.mark = 0

    def _settle(self, entry: _Entry, result: JobResult, now: int) -> Disposition:
        outcome = result.outcome
        if outcome is Outcome.SUCCESS:
            del self._jobs[entry.id]
            self._forget_key(entry)
            return Disposition.FINISHED
        if outcome is Outcome.UNEXECUTED:
            self._make_pending(entry, entry.key >> 128)
            return Disposition.REQUEUED
        entry.last_error = result.error
        if outcome is Outcome.UNREGISTERED:
            self._make_pending(entry, now + self._unregistered_delay_us)
            return Disposition.REQUEUED
        entry.retry_count += 1
        policy = entry.policy
        if policy.max_retries.allows(entry.retry_count):
            delay = policy.backoff.delay(entry.retry_count)
            self._make_pending(entry, now + round(delay * _US))
            return Disposition.RETRYING
        entry.status = Status.DEAD
        entry.mark = now
        self._forget_key(entry)
        dead = self._dead.get(entry.queue)
        if dead is None:
            dead = self._dead[entry.queue] = {}
        dead[entry.id] = entry
        return Disposition.DEAD

    def _forget_key(self, entry: _Entry) -> None:
        if entry.unique_key is not None and self._unique.get(entry.unique_key) == entry.id:
            del self._unique[entry.unique_key]

    def _make_pending(self, entry: _Entry, run_at: int) -> None:
        entry.status = Status.PENDING
        entry.key = (run_at << 128) | entry.id
        self._pending[entry.queue].add(entry.key)
        if entry.retry_count:
            retrying = self._retrying.get(entry.queue)
            if retrying is None:
                retrying = self._retrying[entry.queue] = SortedList()
            retrying.add(entry.key)

    def requeue(self, job_id: uuid.UUID) -> bool:
        entry = self._jobs.get(job_id.int)
        if entry is None or entry.status is not Status.DEAD:
            return False
        del self._dead[entry.queue][entry.id]
        if entry.unique_key is not None:
            # Live again: it holds its key once more, unless another job took it.
            self._unique.setdefault(entry.unique_key, entry.id)
        entry.retry_count = 0
        entry.mark = 0
        self._make_pending(entry, self._now_us())
        return True

    def purge_dead(self, older_than: float | None = None) -> int:
        cutoff = None if older_than is None else self._now_us() - round(older_than * _US)
        purged = 0
        for dead in self._dead.values():
            doomed = [i for i, e in dead.items() if cutoff is None or e.mark < cutoff]
            for job_id in doomed:
                del dead[job_id]
                del self._jobs[job_id]
            purged += len(doomed)
        return purged

    # -- reading ------------------------------------------------------------

    def info(self, job_id: uuid.UUID) -> JobInfo | None:
        entry = self._jobs.get(job_id.int)
        return None if entry is None else _info(entry)

    def list(
        self,
        *,
        queue: str | None = None,
        status: Status | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[JobInfo]:
        queues = [queue] if queue is not None else sorted(self._queues())
        found = itertools.chain.from_iterable(self._walk(q, status) for q in queues)
        return [_info(e) for e in itertools.islice(found, offset, offset + limit)]

    def _walk(self, queue: str, status: Status | None) -> Iterator[_Entry]:
        if status in (None, Status.PENDING):
            for key in self._pending.get(queue, ()):
                yield self._jobs[key & _ID_MASK]
        if status in (None, Status.RUNNING):
            for key in self._held.get(queue, ()):
                yield self._jobs[key & _ID_MASK]
        if status in (None, Status.DEAD):
            yield from self._dead.get(queue, {}).values()

    def _queues(self) -> set[str]:
        return set(self._pending) | set(self._held) | set(self._dead)

    def stats(self) -> dict[str, QueueStats]:
        stats = {}
        due = (self._now_us() << 128) | _ID_MASK  # every key of a job due now is <= it
        for queue in sorted(self._queues()):
            pending = self._pending.get(queue, ())
            later = len(pending) - pending.bisect_right(due) if pending else 0
            if later:
                retrying = self._retrying.get(queue, ())
                later -= len(retrying) - retrying.bisect_right(due) if retrying else 0
            counts = QueueStats(
                pending=len(pending),
                running=len(self._held.get(queue, ())),
                dead=len(self._dead.get(queue, ())),
                scheduled=later,
            )
            if counts.pending or counts.running or counts.dead:
                stats[queue] = counts
        return stats

    def next_due(self, queue: str) -> float | None:
        times = []
        pending = self._pending.get(queue)
        if pending:
            times.append(pending[0] >> 128)
        held = self._held.get(queue)
        if held:
            # A claim may be taken once its expiry is strictly in the past.
            times.append((held[0] >> 128) + 1)
        return min(times) / _US if times else None


def _info(entry: _Entry) -> JobInfo:
    policy = entry.policy
    return JobInfo(
        id=to_uuid(entry.id),
        name=entry.name,
        queue=entry.queue,
        args=entry.args,
        retry_count=entry.retry_count,
        max_retries=policy.max_retries,
        backoff=policy.backoff,
        run_at=_utc(entry.key >> 128),
        heartbeat_interval=policy.heartbeat_interval,
        timeout=policy.timeout,
        status=entry.status,
        last_error=entry.last_error,
        runner=entry.runner,
        enqueued_at=dt.datetime.fromtimestamp(id_time(entry.id), dt.UTC),
        unique_key=entry.unique_key,
    )
