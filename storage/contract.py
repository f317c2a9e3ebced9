"""The Storage contract: what the runtime asks of every backend.

A Storage is owned by exactly one StorageActor and is called from that
actor's thread only, so backends need no locking of their own. Every backend
runs the one contract suite in tests/contract/.

Claims: ``pop`` hands due jobs to a *runner* (one per arbiter process). The
runner must ``heartbeat`` them; a held job whose last heartbeat is older than
5 x its heartbeat interval may be popped by another runner. ``complete`` and
``release`` settle held jobs; a runner that does not hold a job cannot settle
it (Disposition.NOT_HELD), so a claim taken over by another runner is not
settled twice.

Records: a job that ends keeps its record (``info``, ``list``) for its
policy's ``result_ttl`` seconds: status SUCCEEDED with the value ``run``
returned, or CANCELLED with the reason as its last error; a ``result_ttl`` of
0 keeps none (the job is gone once it ends). Dead jobs are kept until
requeued or purged, as before. ``info`` never returns a record past its
``expires_at``, whether or not ``expire`` has removed it yet; ``expire``
removes them without a scan of live jobs (an index on the expiry time).
``stats`` counts live and dead jobs only, so kept records never make a
queue look busy; ``list`` gives them with the rest, in id order.

Dependencies: a job pushed with ``NewJob.after`` waits (Status.WAITING) for
its parents, as storage/dependencies.py says; every backend keeps those rules
and reports what the ends of parents did through ``dependents()``.

Pauses: ``set_paused`` stores that a queue is paused, for every host sharing
the storage and past a restart of a durable one. The storage only keeps the
flag: a paused queue's jobs are pushed, popped, listed and counted as any
other's. The runtime (the StorageActor) reads ``paused()`` and does not claim
them.

Schedule ticks: ``push_tick`` queues the job of one tick of a recurring
schedule together with a durable record of that tick, in one transaction,
so that however many hosts run the same schedule on a shared storage each
tick is queued once: a tick at or before the newest one recorded for its
schedule is refused (None). Only the newest tick per schedule is kept, which
bounds the record and is all the rule needs; ``last_tick`` reads it (what a
host restarted after downtime missed). A job's ``unique_key`` would not
do: it is given up once the job ends, so a host that comes to the tick after
its job ran (a second later, its clock a little behind) would queue it again.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from storage.dependencies import Dependents
from storage.model import Claim, Disposition, JobInfo, JobResult, NewJob, QueueStats, Status

STALE_HEARTBEATS = 5  # a claim goes stale after this many missed heartbeat intervals

Completion = tuple[uuid.UUID, str, JobResult]  # (job id, runner, result)
PopRequest = tuple[str, str, int]  # (queue, runner, limit)


class Storage(Protocol):
    def open(self) -> Storage:
        """Open files and connections, migrate, recover; returns the storage.

        Building a storage opens nothing (a module that builds a config at
        import time must be safe to import); the StorageActor calls ``open``
        once, on its own thread, before anything else. Raises, naming the
        file or the database, when it cannot.
        """
        ...

    def push(self, job: NewJob) -> uuid.UUID:
        """Store one job; returns its id.

        A job with a ``unique_key`` that a pending or running job already has
        is not stored: the id of that job is returned instead.
        """
        ...

    def push_many(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        """Store many jobs, in order; returns their ids in the same order.

        A job's ``after`` may name earlier jobs of the same call by position.
        A parent id the storage does not know raises UnknownParent, and a
        position that is not an earlier one ValueError: nothing is stored.
        """
        ...

    def dependents(self) -> Dependents:
        """What the ends of parents did to their waiting children since the
        last call (queues where children became pending, children
        cancelled), and forget it: the runtime asks after each operation that
        may end a job, and serves those queues and tells those waiters.
        Cheap when nothing happened (``dependencies.NONE``)."""
        ...

    def push_tick(self, schedule: str, tick_us: int, job: NewJob) -> uuid.UUID | None:
        """Store ``job`` as the tick ``tick_us`` (µs since the epoch) of
        ``schedule``, and record that tick, in one transaction; returns the
        job's id (as ``push``), or None, storing nothing, when a tick of
        ``schedule`` at or after ``tick_us`` is recorded already: another
        host, or this one before a restart, queued it. Two hosts pushing one
        tick at once store one job: the second waits for the first's commit
        and gets None.
        """
        ...

    def last_tick(self, schedule: str) -> int | None:
        """The newest tick (µs) recorded for ``schedule`` (None: none yet)."""
        ...

    def pop(self, queue: str, runner: str, limit: int = 1) -> list[Claim]:
        """Claim up to ``limit`` due jobs of ``queue`` for ``runner``.

        Stale claims come first, oldest expiry first; then due pending jobs
        in (priority descending, run_at, id) order. A job not due yet never
        holds back due jobs of a lower priority, and a claim reads no job
        that is not due: the cost of the priority levels present in the
        queue is the backend's to document. Returns [] when nothing is due.
        """
        ...

    def heartbeat(self, runner: str, job_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        """Refresh the claims of ``runner``; returns the ids it no longer holds."""
        ...

    def complete(self, job_id: uuid.UUID, runner: str, result: JobResult) -> Disposition:
        """Settle one held job with the result of its attempt."""
        ...

    def complete_and_pop(
        self, completions: Sequence[Completion], pops: Sequence[PopRequest]
    ) -> tuple[list[Disposition], list[list[Claim]]]:
        """``complete`` each (job id, runner, result), then ``pop`` each
        (queue, runner, limit), in order: what one round of runners' messages
        asks. Returns the dispositions and each pop's jobs. A database backend
        does it in as few round trips as it can, and may commit it at once
        when nothing else is uncommitted; see ``complete_then_pop``.
        """
        ...

    def release(self, runner: str, result: JobResult) -> list[tuple[uuid.UUID, Disposition]]:
        """Settle every job ``runner`` holds with the same result (a dead runner)."""
        ...

    def info(self, job_id: uuid.UUID) -> JobInfo | None:
        """The job's record, or None: never queued, or its record expired."""
        ...

    def cancel(self, job_id: uuid.UUID, reason: str) -> Status | None:
        """Cancel a job; returns the status it had (None: no such record).

        PENDING (due, scheduled or waiting out a backoff) or WAITING (for
        its parents; its own waiting children are cancelled with it): it is CANCELLED now
        and never runs; ``reason`` is its last error, ``started_at`` None, and
        its record is kept for its result_ttl (0: removed), its unique key
        free again. RUNNING: nothing changes here; the runtime asks its runner
        (``info().runner``) to stop it, and the runner completes it with a
        CANCELLED result. A storage shared by hosts also tells the others
        (see ``subscribe``). Anything else has ended and is left as it is.
        """
        ...

    def expire(self) -> int:
        """Remove succeeded and cancelled records past their expiry; returns
        how many. The StorageActor calls it about once a second."""
        ...

    def list(
        self,
        *,
        queue: str | None = None,
        status: Status | None = None,
        scheduled: bool | None = None,
        name: str | None = None,
        after: uuid.UUID | None = None,
        limit: int = 100,
    ) -> builtins.list[JobInfo]:
        """Records in id order, which is the order they were queued (ids are
        UUIDv7): at most ``limit`` of them, of ids strictly greater than
        ``after`` (any UUID; None: from the first). A page is read by keyset,
        never by skipping an offset: a listing walked page by page (each
        ``after`` the last id of the page before) meets no record twice, and
        every record that matches the filters throughout exactly once, however
        other jobs come, change status or go between pages.

        ``queue``, ``status`` and ``name`` keep only the records of that
        queue, status and job name (``NewJob.name``, matched exactly).
        ``scheduled`` keeps only pending jobs: True, those not due yet that
        never failed (what ``QueueStats.scheduled`` counts:
        retry_count 0 and run_at in the future); False, the other pending
        ones (due, or a retry waiting out its backoff); with a ``status``
        other than PENDING nothing is both, so the page is empty. A kept
        record past its ``expires_at`` is never listed, removed or not.

        The cost of a page depends on the backend, and is documented there.
        """
        ...

    def requeue(self, job_id: uuid.UUID) -> bool:
        """Make a dead job pending again, due now, with a fresh retry count."""
        ...

    def purge_dead(self, older_than: float | None = None) -> int:
        """Forget dead jobs that died more than ``older_than`` seconds ago (all if None)."""
        ...

    def stats(self, *, levels: bool = True) -> dict[str, QueueStats]:
        """Counts per queue, for every queue that holds a live or dead job
        (``QueueStats``: ``oldest_due_at`` is read off the pending index, so
        it costs no scan on any backend). A count above the backend's
        ``count_cap`` may be an estimate, named in ``estimated``; one at or
        below it never is, and ``pending == scheduled`` holds exactly when
        none of the queue's pending jobs is due or waiting out a backoff
        (storage.counts). With ``levels=False`` a backend may leave
        ``pending_by_priority`` empty where counting levels costs reads: the
        runtime's idle check, asked after every settled message while
        someone waits in join(), needs only the counts."""
        ...

    def set_paused(self, queue: str, paused: bool) -> None:
        """Store that ``queue`` is paused (True) or no longer (False); again
        is no change. Like any write it takes effect at the next ``commit``;
        a durable storage keeps it across restarts. A storage shared by
        hosts also tells the others once it is committed: their ``wake()``
        callback (see ``subscribe``) runs, and their runtime reads
        ``paused()`` again. Nothing else changes: the queue's jobs can still
        be pushed, popped and listed here; the runtime decides not to claim
        them while the queue is paused.
        """
        ...

    def paused(self) -> frozenset[str]:
        """The queues whose pause is stored (one cheap read on a database)."""
        ...

    def next_due(self, queue: str) -> float | None:
        """Epoch seconds at which ``queue`` next has something to pop, if ever."""
        ...

    def now(self) -> float:
        """The storage's clock."""
        ...

    def commit(self) -> None:
        """Make every change since the last commit durable.

        The StorageActor calls it once per message, before it answers anyone,
        so many operations share one transaction and nothing is acknowledged
        before it is durable. A memory store has nothing to do.
        """
        ...

    @property
    def poll_interval(self) -> float | None:
        """For a storage shared by several hosts: how often parked pops look
        again when no wake-up came (None: every change comes through us)."""
        ...

    def subscribe(
        self,
        wake: Callable[[], None],
        *,
        ended: Callable[[builtins.list[uuid.UUID]], None] | None = None,
        cancelled: Callable[[uuid.UUID, str, str], None] | None = None,
    ) -> None:
        """For a storage shared by several hosts: call, from any thread,
        ``wake()`` whenever another host may have made a job due (a push
        elsewhere); ``ended(ids)`` once jobs another host settled have ended
        (succeeded, dead or cancelled: a waiter here can read them now); and
        ``cancelled(job_id, runner, reason)`` when another host cancelled a
        job that is running, so that the host whose runner holds it stops it.
        Storages owned by one host ignore all three."""
        ...

    def close(self) -> None:
        """Release connections and files; the storage is not used after."""
        ...


class NotOpen:
    """Stands in for a backend's connection until ``open()``, so that a call
    made too early says so instead of failing on None."""

    def __init__(self, storage: object) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(
            f"{self._storage!r} is not open: the StorageActor opens it when the "
            "Manager starts (call open() to use it alone)"
        )


def not_open(storage: object) -> Any:
    """A NotOpen, typed to stand in for any connection."""
    return NotOpen(storage)


def complete_then_pop(
    storage: Storage, completions: Sequence[Completion], pops: Sequence[PopRequest]
) -> tuple[list[Disposition], list[list[Claim]]]:
    """``complete_and_pop`` one call at a time: for backends with no round
    trips to save, and the meaning every backend must match."""
    settled = [storage.complete(job_id, runner, result) for job_id, runner, result in completions]
    return settled, [storage.pop(queue, runner, limit) for queue, runner, limit in pops]


def page_is_empty(status: Status | None, scheduled: bool | None, limit: int) -> bool:
    """Whether a ``list`` page is empty for sure: no room, or a ``scheduled``
    filter on a status other than pending (only pending jobs are scheduled
    or not)."""
    return limit <= 0 or (scheduled is not None and status not in (None, Status.PENDING))


def walked_status(status: Status | None, scheduled: bool | None) -> Status | None:
    """The status a ``list`` page walks: pending whenever ``scheduled`` is asked."""
    return Status.PENDING if scheduled is not None else status
