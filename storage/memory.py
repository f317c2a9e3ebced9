"""MemoryStorage: jobs in sorted indexes, lost when the process ends.

Each queue has sorted indexes of plain ints, so that ordering is done by C
comparisons and no Python ``__lt__`` runs on the hot path:

* pending, one per priority level present in the queue (a dict from
  priority to index, kept in descending priority order): ``run_at_us << 60
  | seq``: run_at order, and among equal run_at the seq order, which is
  enqueue order (seqs are time-ordered and strictly increasing per storage).
  A job put back keeps its seq, so it keeps its place.
* held: ``expires_us << 60 | seq``: the earliest stale claim is first.

Priorities: ``pop`` walks the levels from the highest and takes due jobs
off the head of each, so a high-priority job scheduled for later never hides
the due jobs of a lower level behind it. A claim costs O(L + log n) for L
levels present in the queue: few in practice (a queue at the default
priority alone has one, and pays one dict lookup for it). A level that
empties is dropped, unless it is the queue's only one, so a queue that
drains and fills again at one priority makes no new index each time. stats
and next_due read each level's head: O(L log n); stats counts each
level's pending jobs exactly (``pending_by_priority``), its list's length. A job's priority lives in
its kind (below), so it costs a job no slot.

The low 60 bits of either key are the job's seq, the key of ``_jobs``: the
time and counter of its UUID (``SeqIds``), half the size of the UUID's int.

A queued job costs what its bytes are, plus about 220 bytes: its entry (four
slots, the name, queue and policy shared with every job of its kind), its
seq and pending key, and their slots in ``_jobs`` and the index. What a job
has been through (a claim, a failure, a unique key) lives in a ``_State``
that a fresh job does not have, since a backlog is mostly fresh jobs.

Ended records (succeeded, cancelled) leave ``_jobs`` for ``_kept``: one
flat tuple each (``_Kept``) of ints, strings and bytes, which the garbage
collector stops tracking, so that a million kept records cost no collection
time; their kind is named by its number (``_kinds_kept``, counted). Jobs of
one queue with one ``result_ttl`` share a ``_Records``: a deque per status of
expiry keys ``expires_us << 60 | seq``.
Records reach a deque in the order they end, and with one ttl that is the
order they expire, so ``expire`` pops expired keys off the fronts and never
looks at a live job. (Should the system clock step back, a record may be
removed late by the step, never early: ``info`` and ``list`` compare each
record's own expiry with the time.) A kept record's finish time is its expiry
less its ttl, so it costs no slot of its own.

Dependencies (storage/dependencies.py): a waiting child is in ``_jobs``, in
no pending index, its seq in its queue's ``_waiting`` set; its ``_State``
holds its parents and how many of them have not succeeded yet. ``_children``
maps a parent's seq to its waiting children's, and is looked at only when it
is not empty, so jobs without dependencies pay one truth test when they end.
A parent that ends pops its entry: a success counts each child down (pending
at zero, in the level of its own priority), a death or a cancel walks the
subtree with a stack of its own.
A child already gone from the waiting set when a later parent's entry names
it (another parent cancelled it) is skipped there.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, NamedTuple

from sortedcontainers import SortedList

from storage import dependencies
from storage.clock import Clock, SystemClock
from storage.contract import (
    STALE_HEARTBEATS,
    Completion,
    PopRequest,
    complete_then_pop,
    page_is_empty,
    walked_status,
)
from storage.dependencies import CancelledChild, Dependents, UnknownParent
from storage.ids import SeqIds
from storage.model import (
    Claim,
    Disposition,
    JobInfo,
    JobResult,
    NewJob,
    Outcome,
    QueueStats,
    Status,
    by_priority,
)
from storage.policy import Policy
from storage.settle import settle

_SEQ_BITS = 60
_SEQ_MASK = (1 << _SEQ_BITS) - 1
_US = 1_000_000


class _Records:
    """The ended records of one queue's jobs that share one ``result_ttl``:
    expiry keys (``expires_us << 60 | seq``) in the order they were kept,
    which for one ttl is expiry order."""

    __slots__ = ("cancelled", "queue", "succeeded", "ttl_us")

    def __init__(self, queue: str, ttl_us: int) -> None:
        self.queue = queue
        self.ttl_us = ttl_us
        self.succeeded: deque[int] = deque()
        self.cancelled: deque[int] = deque()


class _Kind(NamedTuple):
    """What the jobs of one class queued one way share."""

    name: str
    queue: str
    policy: Policy
    records: _Records | None  # where their ended records go; None: a ttl of 0 keeps none
    number: int  # names it in a kept record
    priority: int


# A kept record: a plain tuple of atoms, which the garbage collector stops
# tracking (it never untracks an object, nor a NamedTuple), read by these
# indexes: its kind's number, args, run_at (µs), cancelled (else succeeded),
# retry count, last error, started (µs; 0: never), value, expiry key, unique key,
# parents (dependencies.pack; None: none).
_Kept = tuple[
    int, bytes, int, bool, int, str | None, int, bytes | None, int, str | None, bytes | None
]
_KIND: Final = 0
_ARGS: Final = 1
_RUN_AT: Final = 2
_CANCELLED: Final = 3
_RETRIES: Final = 4
_ERROR: Final = 5
_STARTED: Final = 6
_VALUE: Final = 7
_MARK: Final = 8
_KEY: Final = 9
_PARENTS: Final = 10


class _State:
    """What a job has been through: made when it is first claimed, or queued
    with a unique key. ``mark`` is the claim's expiry key while running and
    the time of death (µs) while dead. ``started`` is when its latest claim
    was taken (µs; 0: never, or cancelled before it ran again). A child
    (queued ``after`` others) has its ``parents``, and while WAITING,
    ``waiting``: how many of them have not succeeded yet."""

    __slots__ = (
        "last_error",
        "mark",
        "parents",
        "retry_count",
        "runner",
        "started",
        "status",
        "unique_key",
        "waiting",
    )

    def __init__(self, unique_key: str | None = None) -> None:
        self.status = Status.PENDING
        self.parents: tuple[uuid.UUID, ...] = ()
        self.waiting = 0
        self.retry_count = 0
        self.last_error: str | None = None
        self.runner: str | None = None
        self.mark = 0
        self.unique_key = unique_key
        self.started = 0


class _Entry:
    """One stored job; ``state`` None is a fresh pending job."""

    __slots__ = ("args", "key", "kind", "state")

    def __init__(self, key: int, args: bytes, kind: _Kind, state: _State | None) -> None:
        self.key = key
        self.args = args
        self.kind = kind
        self.state = state

    def grown(self) -> _State:
        state = self.state
        if state is None:
            state = self.state = _State()
        return state


# Kinds kept for sharing; past this many (a timeout given per job makes a
# policy per job) the cache starts over, and jobs keep the kinds they have.
_KINDS_KEPT = 4096


@functools.lru_cache(maxsize=64)
def _lease_us(heartbeat_interval: float) -> int:
    """How long a claim holds without a heartbeat, in µs."""
    return round(STALE_HEARTBEATS * heartbeat_interval * _US)


class MemoryStorage:
    """The default storage. Not thread-safe: a StorageActor owns it."""

    def __init__(self, *, clock: Clock | None = None, unregistered_delay: float = 60.0) -> None:
        self._clock: Clock = clock or SystemClock()
        self._unregistered_delay_us = round(unregistered_delay * _US)
        self._ids = SeqIds()
        self._kinds: dict[tuple[str, str, int, int], _Kind] = {}
        self._jobs: dict[int, _Entry] = {}  # by seq, until the job ends
        self._kept: dict[int, _Kept] = {}  # ended records, by seq
        # The kinds kept records name, by number: [kind, how many records].
        self._kinds_kept: dict[int, list[_Kind | int]] = {}
        self._kind_numbers = itertools.count()
        # Per queue, its pending index of each priority level, highest first.
        self._pending: dict[str, dict[int, SortedList]] = {}
        self._held: dict[str, SortedList] = {}
        # The pending keys of jobs that failed before: told apart from jobs
        # scheduled for later, which join() does not wait for.
        self._retrying: dict[str, SortedList] = {}
        self._dead: dict[str, dict[int, _Entry]] = {}
        self._by_runner: dict[str, set[int]] = {}
        self._unique: dict[str, int] = {}  # unique key -> seq of the live job holding it
        # Ended records' expiry indexes, by (queue, ttl in µs), and the queues
        # that have any (for list; stats leaves them out).
        self._records: dict[tuple[str, int], _Records] = {}
        self._recorded: dict[str, list[_Records]] = {}
        self._paused: set[str] = set()  # stored pauses: the runtime reads them
        self._ticks: dict[str, int] = {}  # schedule -> newest tick queued (µs)
        # Dependencies: waiting children per queue, and per parent seq.
        self._waiting: dict[str, set[int]] = {}
        self._children: dict[int, list[int]] = {}
        # What the ends of parents did, until dependents() is asked.
        self._told = dependencies.Told()

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

    def subscribe(
        self,
        wake: Callable[[], None],
        *,
        ended: Callable[[list[uuid.UUID]], None] | None = None,
        cancelled: Callable[[uuid.UUID, str, str], None] | None = None,
    ) -> None:
        pass  # only the owning StorageActor changes it

    def close(self) -> None:
        pass

    def set_paused(self, queue: str, paused: bool) -> None:
        if paused:
            self._paused.add(queue)
        else:
            self._paused.discard(queue)

    def paused(self) -> frozenset[str]:
        return frozenset(self._paused)

    def _now_us(self) -> int:
        return round(self._clock.now() * _US)

    # -- writing ------------------------------------------------------------

    def push(self, job: NewJob) -> uuid.UUID:
        if job.after:
            return self.push_many((job,))[0]
        return self._ids.as_uuid(self._insert(job, self._now_us()))

    def push_many(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        now = self._now_us()
        keys: dict[int, tuple[SortedList, list[int]]] = {}
        to_uuid = self._ids.as_uuid
        if dependencies.any_after(jobs):
            self._check_parents(jobs, now)  # before anything is stored
            ids: list[uuid.UUID] = []
            for job in jobs:
                if job.after:
                    seq = self._insert_child(job, dependencies.resolve(job.after, ids), now)
                else:
                    seq = self._insert(job, now, keys)
                ids.append(to_uuid(seq))
        else:
            ids = [to_uuid(self._insert(job, now, keys)) for job in jobs]
        for level, added in keys.values():
            # One sort for a batch, not a search per job.
            level.update(added)
        return ids

    def push_tick(self, schedule: str, tick_us: int, job: NewJob) -> uuid.UUID | None:
        last = self._ticks.get(schedule)
        if last is not None and last >= tick_us:
            return None
        job_id = self.push_many((job,))[0]
        self._ticks[schedule] = tick_us  # only once the job is in: nothing rolls back here
        return job_id

    def last_tick(self, schedule: str) -> int | None:
        return self._ticks.get(schedule)

    def _check_parents(self, jobs: Sequence[NewJob], now: int) -> None:
        for position, job in enumerate(jobs):
            dependencies.check_after(job.after, position)
            for parent in job.after:
                if isinstance(parent, uuid.UUID) and self._status(parent, now) is None:
                    raise UnknownParent(parent)

    def _status(self, job_id: uuid.UUID, now: int) -> Status | None:
        """The status of the job or kept record ``job_id``; None: unknown."""
        entry = self._entry(job_id)
        if entry is not None:
            return (entry.state or _FRESH).status
        kept = self._kept_record(job_id, now)
        return None if kept is None else _status(kept)

    def _insert_child(self, job: NewJob, parents: tuple[uuid.UUID, ...], now: int) -> int:
        """Store a job queued after ``parents``: pending if they all succeeded,
        cancelled if one ended badly, else waiting for the rest."""
        if job.unique_key is not None:
            live = self._unique.get(job.unique_key)
            if live is not None:
                return live
        stands = dependencies.standing(parents, lambda parent: self._status(parent, now))
        seq = self._ids.next()
        run_at = now if job.run_at is None else round(job.run_at * _US)
        key = (run_at << _SEQ_BITS) | seq
        state = _State(job.unique_key)
        state.parents = parents
        entry = self._jobs[seq] = _Entry(key, job.args, self._kind(job), state)
        queue = job.queue
        if stands.cancelled is not None:
            why = state.last_error = stands.cancelled
            self._end(seq, entry, state, Status.CANCELLED, now)
            self._told.cancelled.append(CancelledChild(self._ids.as_uuid(seq), queue, why))
            return seq
        if job.unique_key is not None:
            self._unique[job.unique_key] = seq
        if not stands.waiting_for:
            self._level(entry.kind).add(key)
            return seq
        state.status = Status.WAITING
        state.waiting = len(stands.waiting_for)
        self._waiting.setdefault(queue, set()).add(seq)
        for parent in stands.waiting_for:
            self._children.setdefault(self._ids.as_seq(parent), []).append(seq)  # type: ignore[arg-type]
        return seq

    def dependents(self) -> Dependents:
        return self._told.take()

    def _parent_ended(self, seq: int, status: Status, now: int) -> None:
        """``seq`` ended with ``status``: release or cancel its waiting children."""
        children = self._children.pop(seq, None)
        if not children:
            return
        if status is Status.SUCCEEDED:
            for child in children:
                entry = self._jobs.get(child)
                state = None if entry is None else entry.state
                if entry is None or state is None or state.status is not Status.WAITING:
                    continue  # cancelled meanwhile, for another parent
                state.waiting -= 1
                if not state.waiting:
                    queue = entry.kind.queue
                    self._waiting[queue].discard(child)
                    state.status = Status.PENDING
                    self._level(entry.kind).add(entry.key)
                    self._told.released.add(queue)
            return
        root = self._ids.as_uuid(seq)
        # (parent seq, child seq) still to cancel: a stack, not recursion, so
        # that a chain of any length fits.
        stack = [(seq, child) for child in reversed(children)]
        while stack:
            parent, child = stack.pop()
            entry = self._jobs.get(child)
            state = None if entry is None else entry.state
            if entry is None or state is None or state.status is not Status.WAITING:
                continue
            why = dependencies.reason(self._ids.as_uuid(parent), root, status)
            self._waiting[entry.kind.queue].discard(child)
            state.last_error = why
            self._end(child, entry, state, Status.CANCELLED, now)
            cancelled = CancelledChild(self._ids.as_uuid(child), entry.kind.queue, why)
            self._told.cancelled.append(cancelled)
            grandchildren = self._children.pop(child, None)
            if grandchildren:
                stack.extend((child, grand) for grand in reversed(grandchildren))

    def _level(self, kind: _Kind) -> SortedList:
        """The pending index of the kind's queue and priority, made if need be."""
        levels = self._pending.get(kind.queue)
        if levels is None:
            level = SortedList()
            self._pending[kind.queue] = {kind.priority: level}
            return level
        level = levels.get(kind.priority)
        if level is None:
            levels[kind.priority] = level = SortedList()
            if len(levels) > 1:
                # A new level is rare: the order is made once, read by every pop.
                ordered = sorted(levels.items(), key=_priority, reverse=True)
                self._pending[kind.queue] = dict(ordered)
        return level

    def _unpend(self, entry: _Entry) -> None:
        """Take a pending job out of its level (a cancel)."""
        kind = entry.kind
        self._pending[kind.queue][kind.priority].remove(entry.key)
        self._drop_empty(kind.queue)

    def _drop_empty(self, queue: str) -> None:
        levels = self._pending[queue]
        if len(levels) > 1:
            kept = {priority: level for priority, level in levels.items() if level}
            # The last level stays, empty or not: a queue keeps one index.
            self._pending[queue] = kept or dict([next(iter(levels.items()))])

    def _kind(self, job: NewJob) -> _Kind:
        # By the policy's identity: a job class keeps one Policy, and the kind
        # holds it, so its id names no other while cached. Hashing the policy
        # itself would cost more than the rest of the push.
        cache_key = (job.name, job.queue, id(job.policy), job.priority)
        kind = self._kinds.get(cache_key)
        if kind is None:
            if len(self._kinds) >= _KINDS_KEPT:
                self._kinds.clear()
            records = self._records_of(job)
            number = next(self._kind_numbers)
            kind = _Kind(job.name, job.queue, job.policy, records, number, job.priority)
            self._kinds[cache_key] = kind
        return kind

    def _records_of(self, job: NewJob) -> _Records | None:
        ttl_us = round(job.policy.result_ttl * _US)
        if ttl_us <= 0:
            return None
        records = self._records.get((job.queue, ttl_us))
        if records is None:
            # Kept for good, even once empty: kinds hold them, and there are
            # as many as a queue has distinct ttls.
            records = self._records[job.queue, ttl_us] = _Records(job.queue, ttl_us)
            self._recorded.setdefault(job.queue, []).append(records)
        return records

    def _insert(
        self,
        job: NewJob,
        now: int,
        batch: dict[int, tuple[SortedList, list[int]]] | None = None,
    ) -> int:
        """Store ``job``; its pending key goes into ``batch`` (by its level's
        id) if given, for the caller to add, or straight into its level. Its
        seq."""
        state = None
        if job.unique_key is not None:
            live = self._unique.get(job.unique_key)
            if live is not None:
                return live
            state = _State(job.unique_key)
        seq = self._ids.next()
        if state is not None:
            self._unique[job.unique_key] = seq  # type: ignore[index]
        run_at = now if job.run_at is None else round(job.run_at * _US)
        key = (run_at << _SEQ_BITS) | seq
        kind = self._kind(job)
        self._jobs[seq] = _Entry(key, job.args, kind, state)
        level = self._level(kind)
        if batch is None:
            level.add(key)
        else:
            added = batch.get(id(level))
            if added is None:
                added = batch[id(level)] = (level, [])
            added[1].append(key)
        return seq

    def _entry(self, job_id: uuid.UUID) -> _Entry | None:
        seq = self._ids.as_seq(job_id)
        return None if seq is None else self._jobs.get(seq)

    def pop(self, queue: str, runner: str, limit: int = 1) -> list[Claim]:
        now = self._now_us()
        claimed: list[Claim] = []
        held = self._held.get(queue)
        # A claim whose heartbeat is older than 5 intervals is taken over.
        while held and len(claimed) < limit and (held[0] >> _SEQ_BITS) < now:
            seq = held.pop(0) & _SEQ_MASK
            entry = self._jobs[seq]
            state: _State = entry.state  # type: ignore[assignment]
            self._by_runner[state.runner].discard(seq)  # type: ignore[index]
            claimed.append(self._claim(seq, entry, state, runner, now))
        levels = self._pending.get(queue)
        if not levels or len(claimed) >= limit:
            return claimed
        emptied = False
        for pending in levels.values():  # highest priority first
            while pending and (pending[0] >> _SEQ_BITS) <= now:
                seq = pending.pop(0) & _SEQ_MASK
                entry = self._jobs[seq]
                state = entry.grown()
                if state.retry_count:
                    self._retrying[queue].remove(entry.key)
                state.status = Status.RUNNING
                claimed.append(self._claim(seq, entry, state, runner, now))
                if len(claimed) >= limit:
                    break
            emptied = emptied or not pending
            if len(claimed) >= limit:
                break
        if emptied:
            self._drop_empty(queue)
        return claimed

    def _claim(self, seq: int, entry: _Entry, state: _State, runner: str, now: int) -> Claim:
        state.runner = runner
        state.started = now
        self._hold(seq, entry, state, now)
        owned = self._by_runner.get(runner)
        if owned is None:
            owned = self._by_runner[runner] = set()
        owned.add(seq)
        kind = entry.kind
        return Claim(
            self._ids.as_uuid(seq),
            kind.name,
            kind.queue,
            entry.args,
            state.retry_count,
            kind.policy.timeout,
            state.parents,
        )

    def _hold(self, seq: int, entry: _Entry, state: _State, now: int) -> None:
        kind = entry.kind
        lease = _lease_us(kind.policy.heartbeat_interval)
        state.mark = ((now + lease) << _SEQ_BITS) | seq
        held = self._held.get(kind.queue)
        if held is None:
            held = self._held[kind.queue] = SortedList()
        held.add(state.mark)

    def heartbeat(self, runner: str, job_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        now = self._now_us()
        lost: list[uuid.UUID] = []
        for job_id in job_ids:
            entry = self._entry(job_id)
            state = None if entry is None else entry.state
            if entry is None or state is None or state.runner != runner:
                lost.append(job_id)
                continue
            self._held[entry.kind.queue].remove(state.mark)
            self._hold(entry.key & _SEQ_MASK, entry, state, now)
        return lost

    def complete(self, job_id: uuid.UUID, runner: str, result: JobResult) -> Disposition:
        entry = self._entry(job_id)
        state = None if entry is None else entry.state
        if entry is None or state is None or state.runner != runner:
            return Disposition.NOT_HELD
        seq = entry.key & _SEQ_MASK
        self._unhold(entry, state)
        self._by_runner[runner].discard(seq)
        if result.outcome is Outcome.SUCCESS:  # the hot path: settle() would say FINISHED
            self._forget_key(seq, state)
            del self._jobs[seq]
            if entry.kind.records is not None:
                self._keep(
                    seq, entry, state, cancelled=False, now=self._now_us(), value=result.value
                )
            if self._children:
                self._parent_ended(seq, Status.SUCCEEDED, 0)
            return Disposition.FINISHED
        return self._settle(seq, entry, state, result, self._now_us())

    def complete_and_pop(
        self, completions: Sequence[Completion], pops: Sequence[PopRequest]
    ) -> tuple[list[Disposition], list[list[Claim]]]:
        return complete_then_pop(self, completions, pops)

    def release(self, runner: str, result: JobResult) -> list[tuple[uuid.UUID, Disposition]]:
        now = self._now_us()
        settled = []
        for seq in sorted(self._by_runner.pop(runner, ())):
            entry = self._jobs[seq]
            state: _State = entry.state  # type: ignore[assignment]
            self._unhold(entry, state)
            settled.append((self._ids.as_uuid(seq), self._settle(seq, entry, state, result, now)))
        return settled

    def _unhold(self, entry: _Entry, state: _State) -> None:
        self._held[entry.kind.queue].remove(state.mark)
        state.runner = None
        state.mark = 0

    def _settle(
        self, seq: int, entry: _Entry, state: _State, result: JobResult, now: int
    ) -> Disposition:
        policy = entry.kind.policy
        verdict = settle(
            result,
            retry_count=state.retry_count,
            max_retries=policy.max_retries,
            backoff=policy.backoff,
            unregistered_delay_us=self._unregistered_delay_us,
        )
        disposition = verdict.disposition
        state.retry_count = verdict.retry_count
        if verdict.error is not None:
            state.last_error = verdict.error
        if disposition is Disposition.FINISHED:
            self._end(seq, entry, state, Status.SUCCEEDED, now, value=result.value)
            if self._children:
                self._parent_ended(seq, Status.SUCCEEDED, now)
            return disposition
        if disposition is Disposition.CANCELLED:
            self._end(seq, entry, state, Status.CANCELLED, now)
            if self._children:
                self._parent_ended(seq, Status.CANCELLED, now)
            return disposition
        if disposition is Disposition.DEAD:
            state.status = Status.DEAD
            state.mark = now
            self._forget_key(seq, state)
            queue = entry.kind.queue
            dead = self._dead.get(queue)
            if dead is None:
                dead = self._dead[queue] = {}
            dead[seq] = entry
            if self._children:
                self._parent_ended(seq, Status.DEAD, now)
            return disposition
        delay = verdict.delay_us
        run_at = entry.key >> _SEQ_BITS if delay is None else now + delay
        self._make_pending(seq, entry, state, run_at)
        return disposition

    def _end(
        self,
        seq: int,
        entry: _Entry,
        state: _State,
        status: Status,
        now: int,
        *,
        value: bytes | None = None,
    ) -> None:
        """Keep the record of a job that succeeded or was cancelled (it is in
        no index now), or forget it when its ttl is 0."""
        self._forget_key(seq, state)
        del self._jobs[seq]
        if entry.kind.records is not None:
            self._keep(
                seq, entry, state, cancelled=status is Status.CANCELLED, now=now, value=value
            )

    def _keep(
        self,
        seq: int,
        entry: _Entry,
        state: _State,
        *,
        cancelled: bool,
        now: int,
        value: bytes | None,
    ) -> None:
        kind = entry.kind
        records = kind.records
        assert records is not None
        mark = ((now + records.ttl_us) << _SEQ_BITS) | seq
        self._kept[seq] = (
            kind.number,
            entry.args,
            entry.key >> _SEQ_BITS,
            cancelled,
            state.retry_count,
            state.last_error,
            state.started,
            value,
            mark,
            state.unique_key,
            dependencies.pack(state.parents) if state.parents else None,
        )
        held = self._kinds_kept.get(kind.number)
        if held is None:
            self._kinds_kept[kind.number] = [kind, 1]
        else:
            held[1] += 1  # type: ignore[operator]
        (records.cancelled if cancelled else records.succeeded).append(mark)

    def cancel(self, job_id: uuid.UUID, reason: str) -> Status | None:
        entry = self._entry(job_id)
        now = self._now_us()
        if entry is None:
            kept = self._kept_record(job_id, now)
            return None if kept is None else _status(kept)  # ended: left alone
        state = entry.state
        was = Status.PENDING if state is None else state.status
        if was is not Status.PENDING and was is not Status.WAITING:
            return was  # running: its runner is told; dead: left alone
        queue, seq = entry.kind.queue, entry.key & _SEQ_MASK
        state = entry.grown()
        if was is Status.WAITING:
            self._waiting[queue].discard(seq)
        else:
            self._unpend(entry)
            if state.retry_count:
                self._retrying[queue].remove(entry.key)
        state.last_error = reason
        state.started = 0  # no attempt of it ended it
        self._end(seq, entry, state, Status.CANCELLED, now)
        if self._children:
            self._parent_ended(seq, Status.CANCELLED, now)
        return was

    def expire(self) -> int:
        now = self._now_us()
        kept, kinds = self._kept, self._kinds_kept
        removed = 0
        for records in self._records.values():
            for ended in (records.succeeded, records.cancelled):
                while ended and (ended[0] >> _SEQ_BITS) <= now:
                    number = kept.pop(ended.popleft() & _SEQ_MASK)[_KIND]
                    held = kinds[number]
                    held[1] -= 1  # type: ignore[operator]
                    if not held[1]:
                        del kinds[number]
                    removed += 1
        return removed

    def _kept_record(self, job_id: uuid.UUID, now: int) -> _Kept | None:
        """The job's kept record, if it has one that has not expired."""
        seq = self._ids.as_seq(job_id)
        kept = None if seq is None else self._kept.get(seq)
        if kept is None or (kept[_MARK] >> _SEQ_BITS) <= now:
            return None
        return kept

    def _forget_key(self, seq: int, state: _State) -> None:
        key = state.unique_key
        if key is not None and self._unique.get(key) == seq:
            del self._unique[key]

    def _make_pending(self, seq: int, entry: _Entry, state: _State, run_at: int) -> None:
        state.status = Status.PENDING
        entry.key = (run_at << _SEQ_BITS) | seq
        queue = entry.kind.queue
        self._level(entry.kind).add(entry.key)
        if state.retry_count:
            retrying = self._retrying.get(queue)
            if retrying is None:
                retrying = self._retrying[queue] = SortedList()
            retrying.add(entry.key)

    def requeue(self, job_id: uuid.UUID) -> bool:
        entry = self._entry(job_id)
        state = None if entry is None else entry.state
        if entry is None or state is None or state.status is not Status.DEAD:
            return False
        seq = entry.key & _SEQ_MASK
        del self._dead[entry.kind.queue][seq]
        if state.unique_key is not None:
            # Live again: it holds its key once more, unless another job took it.
            self._unique.setdefault(state.unique_key, seq)
        state.retry_count = 0
        state.mark = 0
        self._make_pending(seq, entry, state, self._now_us())
        return True

    def purge_dead(self, older_than: float | None = None) -> int:
        cutoff = None if older_than is None else self._now_us() - round(older_than * _US)
        purged = 0
        for dead in self._dead.values():
            doomed = [i for i, e in dead.items() if cutoff is None or _dead_since(e) < cutoff]
            for job_id in doomed:
                del dead[job_id]
                del self._jobs[job_id]
            purged += len(doomed)
        return purged

    # -- reading ------------------------------------------------------------

    def info(self, job_id: uuid.UUID) -> JobInfo | None:
        entry = self._entry(job_id)
        if entry is not None:
            return self._info(entry)
        kept = self._kept_record(job_id, self._now_us())
        return None if kept is None else self._kept_info(kept)

    def list(
        self,
        *,
        queue: str | None = None,
        status: Status | None = None,
        scheduled: bool | None = None,
        name: str | None = None,
        after: uuid.UUID | None = None,
        limit: int = 100,
    ) -> list[JobInfo]:
        """As the contract says. No index is kept in id order (one would cost
        every job its slots), so a page is one pass over the queue's jobs of
        the statuses asked for (every queue's, without ``queue``), keeping
        the ``limit`` least seqs past ``after`` (of that ``name``):
        O(n log limit) for n such jobs, and nothing kept between pages."""
        if page_is_empty(status, scheduled, limit):
            return []
        status = walked_status(status, scheduled)
        first = 0 if after is None else self._ids.first_seq_after(after)
        now = self._now_us()
        queues = (queue,) if queue is not None else self._queues() | set(self._recorded)
        found: Iterator[int] = itertools.chain.from_iterable(
            self._seqs(q, status, scheduled, now) for q in queues
        )
        if name is not None:
            found = (seq for seq in found if self._name(seq) == name)
        page = heapq.nsmallest(limit, (seq for seq in found if seq >= first))
        jobs, kept = self._jobs, self._kept
        return [
            self._info(jobs[seq]) if seq in jobs else self._kept_info(kept[seq]) for seq in page
        ]

    def _name(self, seq: int) -> str:
        """The job name of a live job's or a kept record's seq."""
        entry = self._jobs.get(seq)
        if entry is not None:
            return entry.kind.name
        kind = self._kinds_kept[self._kept[seq][_KIND]][0]
        assert isinstance(kind, _Kind)
        return kind.name

    def _seqs(
        self, queue: str, status: Status | None, scheduled: bool | None, now: int
    ) -> Iterator[int]:
        """The seqs of the queue's jobs and unexpired records of ``status``
        (any, if None), in no particular order."""
        if status in (None, Status.PENDING):
            yield from self._pending_seqs(queue, scheduled, now)
        if status in (None, Status.RUNNING):
            yield from (key & _SEQ_MASK for key in self._held.get(queue, ()))
        if status in (None, Status.DEAD):
            yield from self._dead.get(queue, {})
        if status in (None, Status.WAITING):
            yield from self._waiting.get(queue, ())
        for ended in (Status.SUCCEEDED, Status.CANCELLED):
            if status in (None, ended):
                for records in self._recorded.get(queue, ()):
                    keys = records.succeeded if ended is Status.SUCCEEDED else records.cancelled
                    yield from (key & _SEQ_MASK for key in keys if (key >> _SEQ_BITS) > now)

    def _pending_seqs(self, queue: str, scheduled: bool | None, now: int) -> Iterator[int]:
        levels = self._pending.get(queue)
        if not levels:
            return
        if scheduled is None:
            for pending in levels.values():
                yield from (key & _SEQ_MASK for key in pending)
            return
        # Keys sort by run_at: those past ``due`` are not due yet; the ones
        # among them that failed before (``_retrying``) are not scheduled.
        due = (now << _SEQ_BITS) | _SEQ_MASK
        retrying = self._retrying.get(queue)
        backoffs = set(retrying.irange(due, None, (False, True))) if retrying else set()
        for pending in levels.values():
            split = pending.bisect_right(due)
            if scheduled:
                yield from (key & _SEQ_MASK for key in pending.islice(split) if key not in backoffs)
            else:
                yield from (key & _SEQ_MASK for key in pending.islice(0, split))
        if not scheduled:
            yield from (key & _SEQ_MASK for key in backoffs)

    def _queues(self) -> set[str]:
        return set(self._pending) | set(self._held) | set(self._dead) | set(self._waiting)

    def stats(self, *, levels: bool = True) -> dict[str, QueueStats]:
        # The levels' sizes are at hand: ``levels`` changes nothing here.
        stats = {}
        now = self._now_us()
        due = (now << _SEQ_BITS) | _SEQ_MASK  # every key of a job due now is <= it
        for queue in sorted(self._queues()):
            count = later = 0
            first = None
            found = []
            for priority, pending in self._pending.get(queue, {}).items():
                if pending:
                    found.append((priority, len(pending)))
                    count += len(pending)
                    later += len(pending) - pending.bisect_right(due)
                    head = pending[0] >> _SEQ_BITS
                    first = head if first is None else min(first, head)
            if later:
                retrying = self._retrying.get(queue, ())
                later -= len(retrying) - retrying.bisect_right(due) if retrying else 0
            counts = QueueStats(
                pending=count,
                running=len(self._held.get(queue, ())),
                dead=len(self._dead.get(queue, ())),
                scheduled=later,
                oldest_due_at=first / _US if first is not None and first <= now else None,
                waiting=len(self._waiting.get(queue, ())),
                pending_by_priority=by_priority(found),
            )
            if counts.pending or counts.running or counts.dead or counts.waiting:
                stats[queue] = counts
        return stats

    def next_due(self, queue: str) -> float | None:
        times = [
            pending[0] >> _SEQ_BITS for pending in self._pending.get(queue, {}).values() if pending
        ]
        held = self._held.get(queue)
        if held:
            # A claim may be taken once its expiry is strictly in the past.
            times.append((held[0] >> _SEQ_BITS) + 1)
        return min(times) / _US if times else None

    def _info(self, entry: _Entry) -> JobInfo:
        kind, state, seq = entry.kind, entry.state or _FRESH, entry.key & _SEQ_MASK
        status = state.status
        finished = state.mark if status is Status.DEAD else None
        return JobInfo.stored(
            id=self._ids.as_uuid(seq),
            name=kind.name,
            queue=kind.queue,
            args=entry.args,
            policy=kind.policy,
            retry_count=state.retry_count,
            run_at_us=entry.key >> _SEQ_BITS,
            status=status,
            last_error=state.last_error,
            runner=state.runner,
            unique_key=state.unique_key,
            started_us=state.started or None,
            finished_us=finished,
            priority=kind.priority,
            parents=state.parents,
        )

    def _kept_info(self, kept: _Kept) -> JobInfo:
        kind = self._kinds_kept[kept[_KIND]][0]
        assert isinstance(kind, _Kind) and kind.records is not None
        mark = kept[_MARK]
        expires = mark >> _SEQ_BITS
        return JobInfo.stored(
            id=self._ids.as_uuid(mark & _SEQ_MASK),
            name=kind.name,
            queue=kind.queue,
            args=kept[_ARGS],
            policy=kind.policy,
            retry_count=kept[_RETRIES],
            run_at_us=kept[_RUN_AT],
            status=_status(kept),
            last_error=kept[_ERROR],
            runner=None,
            unique_key=kept[_KEY],
            result=kept[_VALUE],
            started_us=kept[_STARTED] or None,
            finished_us=expires - kind.records.ttl_us,
            expires_us=expires,
            priority=kind.priority,
            parents=dependencies.unpack(kept[_PARENTS]),
        )


def _priority(item: tuple[int, SortedList]) -> int:
    return item[0]


_FRESH = _State()  # what info() reads for a job without a state; never changed


def _status(kept: _Kept) -> Status:
    return Status.CANCELLED if kept[_CANCELLED] else Status.SUCCEEDED


def _dead_since(entry: _Entry) -> int:
    assert entry.state is not None  # a dead job has been run
    return entry.state.mark
