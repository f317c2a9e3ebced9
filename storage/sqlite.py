"""SqliteStorage: jobs in one SQLite file that outlives the host process.

Schema (see MIGRATIONS): one ``jobs`` row per stored job, with the policy
copied into every row, so that a row alone says how to retry it. Times are
integer microseconds, as in MemoryStorage, so boundaries compare exactly.
The id is the UUIDv7 as 16 big-endian bytes: BLOBs compare bytewise, which
for equal lengths is numeric order, and a 128-bit int does not fit INTEGER.
Partial indexes mirror MemoryStorage's sorted lists, one per status:

* ``jobs_pending (queue, priority, run_at, id)``: the pop order within
  each priority level (see Priorities);
* ``jobs_held (queue, expires, id)``: the earliest stale claim first;
* ``jobs_dead (queue, died_at, id)``: purge by age;
* ``jobs_kept (expires_at)``: the succeeded and cancelled records, which
  alone have an ``expires_at``: ``expire()`` deletes a range of it and never
  reads a live job;
* ``jobs_dead_ids (queue, id)`` and ``jobs_cancelled (queue, id)``: the
  dead and the cancelled jobs in id order, for ``list``; such rows are few,
  and no job passes through them on its way from push to success.

Listing is by keyset (``id > after ORDER BY id LIMIT n``), never by OFFSET.
Pending and running pages read the queue's entries of their partial index
(all of them: it is in due or expiry order) and keep the least ids, which
costs O(pending or running jobs of the queue) per page (each row is read too:
SQLite does not see that the index's predicate settles the status test) but
never touches a kept record; dead and cancelled pages of one queue are a
range of their own index; succeeded pages, and pages with no status filter,
walk the primary key from ``after``, where most rows of a busy file (kept
records) match. An
index in id order over pending or running rows would cost every job a write
on its hot path, so there is none; nor is there one on the job name: a
``name`` filter is tested on each row the page reads, so a page of a rare
name reads on until it has found ``limit`` of them or met the end.

Priorities: a pop takes the due jobs of the highest priority level first,
then the next level down, each level a range of ``jobs_pending`` (queue =,
priority =, run_at <=) read in (run_at, id) order. The levels are found
from the index itself, one probe each (``max(priority) ... priority < the
last``), so a claim reads the levels from the highest down to the first
that fills it: 2 + L probes at most, for L levels present among the
queue's pending jobs, never a job not due. Few levels in practice (one at
the default priority); a thousand distinct priorities in one queue would
cost a claim a thousand probes. The earliest run_at (``stats``'
oldest_due_at, ``next_due``) is the least of the levels' heads: an index
with priority before run_at has no single head in run_at order.

``queues`` holds the stored pauses: a row per queue ever paused, whose
``paused_at`` (µs) is NULL once it is resumed.

Ended records: a job that succeeds or is cancelled stays a row, with its
status, ``result`` (the msgpack value), ``finished_at`` and ``expires_at`` =
finished + its ``result_ttl_us`` (copied from the policy like the rest), its
runner cleared and its unique key given up, until ``expire()`` deletes it;
``info`` and ``list`` skip a row whose ``expires_at`` has passed, so a record
is gone on time whenever ``expire()`` runs. With a ttl of 0 the row is
deleted as the job ends. A dead job's finish time is its ``died_at``.
``started_at`` is set by every claim (pop), and cleared by a cancel of a job
that was waiting.

release() finds a runner's jobs through ``jobs_held``: few jobs are running at
once, and an index on runner would cost a page write on most commits.

``schedule_ticks`` holds the newest tick queued per schedule (µs), one row
each: ``push_tick`` moves it forward in the savepoint that stores the tick's
job, and refuses a tick at or before it.

``unique_keys`` maps a key to the one live job that holds it: a requeued dead
job may share its key with another live job without holding it, which a
unique index on ``jobs`` could not express.

Transactions: the StorageActor calls ``commit()`` once per message, so every
operation runs inside one long transaction that ``commit()`` ends; each
operation is also wrapped in a savepoint, so one that fails leaves nothing
half-done for the commit to make durable. synchronous=NORMAL in WAL mode: a
commit survives the process being killed (the case we recover from), not a
power cut. The file is opened with an exclusive lock, so one host owns it;
that is what makes it safe to treat every running job found on open as held
by a host that died.

Dependencies (storage/dependencies.py): a child's ``parents`` column holds
its parent ids packed, and while it is ``waiting``, ``waiting_on`` counts the
parents not yet succeeded; ``children (parent, child)`` holds an edge per
parent a waiting child still waits for, so that a parent that ends finds its
children through its primary key, and its edges go with that look-up (a
DELETE ... RETURNING). The edges are counted in Python: while there are
none, which is most of the time, a success costs no look-up at all. A death
or a cancel walks the subtree in a loop, one look-up per child, never
recursing; ``jobs_waiting (queue, id)`` lists and counts the waiting.

Pending/running/dead/waiting counts per queue are kept in Python (kept records are
not counted): the actor asks for
stats() after every settled message while someone waits in join(), and a
COUNT over the table each time would make draining quadratic. So are the
scheduled jobs' due times (``_later``: a SortedList of run_at per queue, of
the pending jobs that never failed and were not due when they became
pending): such a job stays pending until it falls due, or is cancelled, so
``scheduled`` is the entries past now, exact and read in O(log n) however
big the file (entries fall out once due), for about 44 bytes of memory per
scheduled job. Every count is exact; none is an estimate. (Should the
system clock step back, jobs that were due and are not again are not counted
as scheduled until the file is next opened.)
``pending_by_priority`` is kept in Python too, per queue and level, beside
the pending count it splits (and rebuilt with it on open and after a
rollback), so it is exact and costs stats() no read however many levels.
"""

from __future__ import annotations

import builtins
import functools
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from sortedcontainers import SortedList

from storage import dependencies
from storage.clock import Clock, SystemClock
from storage.contract import (
    STALE_HEARTBEATS,
    Completion,
    NotOpen,
    PopRequest,
    not_open,
    page_is_empty,
    walked_status,
)
from storage.dependencies import CancelledChild, Dependents, UnknownParent
from storage.events import EventLog
from storage.ids import IdGenerator, to_uuid
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
from storage.policy import Backoff, MaxRetries, Policy
from storage.settle import settle

log = EventLog("storage.sqlite")

_US = 1_000_000
RECOVERED_ERROR = "host died (recovered on open)"

# Each entry is one schema version: the statements that take a file from the
# version before it. Append only; never edit an entry once released.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """
        CREATE TABLE jobs (
            id BLOB PRIMARY KEY,
            name TEXT NOT NULL,
            queue TEXT NOT NULL,
            args BLOB NOT NULL,
            status TEXT NOT NULL,
            run_at INTEGER NOT NULL,
            expires INTEGER,
            died_at INTEGER,
            runner TEXT,
            retry_count INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            unique_key TEXT,
            max_retries INTEGER,
            backoff_kind TEXT NOT NULL,
            backoff_value REAL NOT NULL,
            heartbeat_interval REAL NOT NULL,
            lease INTEGER NOT NULL,
            timeout REAL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX jobs_pending ON jobs (queue, run_at, id) WHERE status = 'pending'",
        "CREATE INDEX jobs_held ON jobs (queue, expires, id) WHERE status = 'running'",
        "CREATE INDEX jobs_dead ON jobs (queue, died_at, id) WHERE status = 'dead'",
        "CREATE TABLE unique_keys (key TEXT PRIMARY KEY, job_id BLOB NOT NULL) WITHOUT ROWID",
    ),
    # Backoff.max: jobs stored before it get the default cap, a day.
    ("ALTER TABLE jobs ADD COLUMN backoff_max REAL NOT NULL DEFAULT 86400.0",),
    # Kept records (succeeded, cancelled): jobs stored before get the default
    # result_ttl, 600 s.
    (
        "ALTER TABLE jobs ADD COLUMN result_ttl_us INTEGER NOT NULL DEFAULT 600000000",
        "ALTER TABLE jobs ADD COLUMN result BLOB",
        "ALTER TABLE jobs ADD COLUMN started_at INTEGER",
        "ALTER TABLE jobs ADD COLUMN finished_at INTEGER",
        "ALTER TABLE jobs ADD COLUMN expires_at INTEGER",
        "CREATE INDEX jobs_kept ON jobs (expires_at) WHERE expires_at IS NOT NULL",
    ),
    # Stored pauses, and keyset listing of the dead and cancelled jobs in id
    # order (few rows, so these partial indexes cost the hot path nothing).
    (
        "CREATE TABLE queues (queue TEXT PRIMARY KEY, paused_at INTEGER) WITHOUT ROWID",
        "CREATE INDEX jobs_dead_ids ON jobs (queue, id) WHERE status = 'dead'",
        "CREATE INDEX jobs_cancelled ON jobs (queue, id) WHERE status = 'cancelled'",
    ),
    # Priorities: jobs stored before have the default, 0. The pending index
    # orders by priority within a queue (see Priorities).
    (
        "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
        "DROP INDEX jobs_pending",
        "CREATE INDEX jobs_pending ON jobs (queue, priority, run_at, id) WHERE status = 'pending'",
    ),
    # Dependencies: a child's parents (packed ids), how many it still waits
    # for, and an edge per parent it waits for.
    (
        "ALTER TABLE jobs ADD COLUMN parents BLOB",
        "ALTER TABLE jobs ADD COLUMN waiting_on INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX jobs_waiting ON jobs (queue, id) WHERE status = 'waiting'",
        "CREATE TABLE children (parent BLOB NOT NULL, child BLOB NOT NULL,"
        " PRIMARY KEY (parent, child)) WITHOUT ROWID",
    ),
    # Recurring schedules: the newest tick queued per schedule (push_tick).
    ("CREATE TABLE schedule_ticks (name TEXT PRIMARY KEY, tick INTEGER NOT NULL) WITHOUT ROWID",),
]

# What JobInfo is built from, in this order (see _job).
_COLUMNS = (
    "id, name, queue, args, status, run_at, retry_count, last_error, runner, unique_key,"
    " max_retries, backoff_kind, backoff_value, heartbeat_interval, timeout, backoff_max,"
    " result, started_at, coalesce(finished_at, died_at), expires_at, priority, parents"
)
# A row that info and list may show: not a record past its expiry.
_SHOWN = "(expires_at IS NULL OR expires_at > ?)"
# What a Claim is built from, in this order (see pop).
_CLAIM = "id, name, queue, args, retry_count, timeout, parents"
# What settling a held job needs, in this order (see _settle).
_HELD = (
    "id, queue, retry_count, unique_key, max_retries, backoff_kind, backoff_value, backoff_max,"
    " result_ttl_us"
)

_INSERT = (
    "INSERT INTO jobs (id, name, queue, args, status, run_at, unique_key, max_retries,"
    " backoff_kind, backoff_value, backoff_max, heartbeat_interval, lease, timeout,"
    " result_ttl_us, parents, waiting_on, last_error, finished_at, expires_at, priority)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_STATUS = {status.value: status for status in Status}
_KEPT = (Status.SUCCEEDED, Status.CANCELLED)
# The partial index a page of one status is read from (see list); the others
# walk the primary key.
_LISTED_BY = {
    Status.PENDING: "jobs_pending",
    Status.RUNNING: "jobs_held",
    Status.DEAD: "jobs_dead_ids",
    Status.CANCELLED: "jobs_cancelled",
    Status.WAITING: "jobs_waiting",
}
_PENDING, _RUNNING, _DEAD, _WAITING = 0, 1, 2, 3  # positions in a queue's counts
_COUNTED = {"pending": _PENDING, "running": _RUNNING, "dead": _DEAD, "waiting": _WAITING}

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _atomic(
    method: Callable[Concatenate[SqliteStorage, _P], _R],
) -> Callable[Concatenate[SqliteStorage, _P], _R]:
    """Run a writing operation inside the open transaction, all or nothing."""

    @functools.wraps(method)
    def run(self: SqliteStorage, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        conn = self._conn
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        conn.execute("SAVEPOINT op")
        try:
            result = method(self, *args, **kwargs)
        except BaseException as exc:
            self._undo(exc)
            raise
        conn.execute("RELEASE op")
        return result

    return run


# Ids per DELETE ... IN (...): well under SQLite's limit on bound parameters.
_IN_CHUNK = 500


def _run_at(job: NewJob, now: int) -> int:
    """When ``job`` is due, in µs: its run_at, or ``now``."""
    return now if job.run_at is None else round(job.run_at * _US)


def _blob(job_id: int) -> bytes:
    return job_id.to_bytes(16, "big")


class SqliteStorage:
    """A Storage in one SQLite file, owned by one host at a time.

    Building one opens nothing; ``open()`` (the StorageActor calls it) opens
    the file, migrates it to the current schema and settles the jobs that a
    dead host left running as failed attempts.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        unregistered_delay: float = 60.0,
        timeout: float = 5.0,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._path = os.fspath(path)
        self._unregistered_delay_us = round(unregistered_delay * _US)
        self._ids = IdGenerator()
        self._policies: dict[tuple[Any, ...], Policy] = {}
        self._counts: dict[str, list[int]] = {}
        # Pending jobs per queue and priority level, kept with _counts (and
        # rebuilt with it), so stats() reads no index for levels.
        self._by_level: dict[str, dict[int, int]] = {}
        self._later: dict[str, SortedList] = {}  # see the module docstring
        self._edges = 0  # rows in children: none, and a success looks up nothing
        # What the ends of parents did, until dependents() is asked.
        self._told = dependencies.Told()
        # Set when SQLite rolled back the whole open transaction on an error:
        # the next commit() must fail, for the operations it took with it.
        self._lost: BaseException | None = None
        self._closed = False
        self._timeout = timeout
        self._conn: sqlite3.Connection = not_open(self)
        self.recovered = 0  # jobs found running on open, settled as failed attempts

    def __repr__(self) -> str:
        return f"SqliteStorage({self._path!r})"

    def open(self) -> SqliteStorage:
        """Open the file, take its lock, migrate it and recover what an earlier
        host left running."""
        # Opened on the StorageActor's thread, which alone uses it after.
        self._closed = False
        try:
            self._conn = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            self._open()
        except BaseException as exc:
            if not isinstance(self._conn, NotOpen):
                self._conn.close()
                self._conn = not_open(self)
            if not isinstance(exc, sqlite3.OperationalError):
                raise
            if "locked" in str(exc):
                raise sqlite3.OperationalError(
                    f"{self._path} is open in another host (one host per file): {exc}"
                ) from exc
            raise sqlite3.OperationalError(f"cannot open {self._path}: {exc}") from exc
        return self

    def _open(self) -> None:
        conn = self._conn
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -16384")  # KiB
        # Take the lock now: it is held until close, so no other host can
        # open the file while we own its running jobs.
        conn.execute("BEGIN IMMEDIATE")
        self._migrate()
        newest = conn.execute("SELECT max(id) FROM jobs").fetchone()[0]
        self._last_id = 0 if newest is None else int.from_bytes(newest, "big")
        self._recount()
        dead = self._recover()
        self.commit()
        if self.recovered:
            log.warning(
                "jobs an earlier host was running counted as failed attempts",
                path=self._path,
                jobs=self.recovered,
                now_dead=dead,
            )

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"this file has schema version {version}; this jobarbiter knows up to "
                f"{len(MIGRATIONS)}: open it with a newer jobarbiter"
            )
        for number, steps in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in steps:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (number, self._now_us()))

    def schema_version(self) -> int:
        return int(self._conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    def _recover(self) -> int:
        # The lock we hold means whoever ran these is gone: count the attempt
        # as failed, so a job that kills its host still ends dead.
        rows = self._conn.execute(
            f"SELECT {_HELD} FROM jobs INDEXED BY jobs_held WHERE status = 'running' ORDER BY id"
        ).fetchall()
        result = JobResult.failure(RECOVERED_ERROR)
        now = self._now_us()
        settled = [self._settle(row, result, now) for row in rows]
        self.recovered = len(rows)
        return settled.count(Disposition.DEAD)

    # -- time and transactions ---------------------------------------------------------

    def now(self) -> float:
        return self._clock.now()

    def _now_us(self) -> int:
        return round(self._clock.now() * _US)

    def commit(self) -> None:
        conn = self._conn
        # The runtime reads dependents() after each operation, before this:
        # what is left was never asked for (an operator's own storage).
        self._told.clear()
        if self._lost is not None:
            lost, self._lost = self._lost, None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._recount()
            raise sqlite3.OperationalError(
                f"the transaction was rolled back by an earlier error: {lost}"
            ) from lost
        if not conn.in_transaction:
            return
        try:
            conn.execute("COMMIT")
        except BaseException:
            # Start the next message from what is durable, not from a
            # transaction that may be half gone.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._recount()
            raise

    def _undo(self, exc: BaseException) -> None:
        # What the failed operation did to children is undone with it; the
        # runtime read what the operations before it did as each returned.
        self._told.clear()
        conn = self._conn
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            else:
                self._lost = exc  # SQLite rolled everything back itself
            self._recount()
        except sqlite3.Error:
            self._lost = exc

    @property
    def poll_interval(self) -> float | None:
        return None

    def subscribe(
        self,
        wake: Callable[[], None],
        *,
        ended: Callable[[builtins.list[uuid.UUID]], None] | None = None,
        cancelled: Callable[[uuid.UUID, str, str], None] | None = None,
    ) -> None:
        pass  # one host per file: every change comes through our actor

    def close(self) -> None:
        if self._closed or isinstance(self._conn, NotOpen):
            return
        try:
            self.commit()
        finally:
            self._closed = True
            self._conn.close()

    # -- writing ------------------------------------------------------------------------

    def _next_id(self) -> int:
        job_id = self._ids.next_int()
        if job_id <= self._last_id:
            # The wall clock is behind an id already in the file (a clock
            # step since the last host): stay increasing, so order holds.
            job_id = self._last_id + 1
        self._last_id = job_id
        return job_id

    def _holder(self, key: str) -> int | None:
        row = self._conn.execute("SELECT job_id FROM unique_keys WHERE key = ?", (key,)).fetchone()
        return None if row is None else int.from_bytes(row[0], "big")

    def push(self, job: NewJob) -> uuid.UUID:
        return self.push_many((job,))[0]

    @_atomic
    def push_many(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        now = self._now_us()
        if dependencies.any_after(jobs):
            return self._push_children(jobs, now)
        ids: list[uuid.UUID] = []
        rows = []
        keys: dict[str, int] = {}  # taken in this batch
        for job in jobs:
            key = job.unique_key
            if key is not None:
                live = keys.get(key)
                if live is None:
                    live = self._holder(key)
                if live is not None:
                    ids.append(to_uuid(live))
                    continue
            job_id = self._next_id()
            if key is not None:
                keys[key] = job_id
            run_at = _run_at(job, now)
            if run_at > now:
                self._scheduled_for(job.queue, run_at)
            rows.append(self._row(job, job_id, now))
            self._count(job.queue)[_PENDING] += 1
            self._pend(job.queue, job.priority, 1)
            ids.append(to_uuid(job_id))
        conn = self._conn
        conn.executemany(_INSERT, rows)
        if keys:
            conn.executemany(
                "INSERT INTO unique_keys VALUES (?, ?)",
                [(key, _blob(job_id)) for key, job_id in keys.items()],
            )
        return ids

    def _count(self, queue: str) -> list[int]:
        count = self._counts.get(queue)
        if count is None:
            count = self._counts[queue] = [0, 0, 0, 0]
        return count

    def _pend(self, queue: str, priority: int, change: int) -> None:
        """``change`` more (or fewer) pending jobs of ``queue`` at ``priority``."""
        levels = self._by_level.setdefault(queue, {})
        left = levels.get(priority, 0) + change
        if left:
            levels[priority] = left
        else:
            del levels[priority]

    def _row(
        self,
        job: NewJob,
        job_id: int,
        now: int,
        *,
        status: str = "pending",
        parents: bytes | None = None,
        waiting_on: int = 0,
        error: str | None = None,
    ) -> tuple[Any, ...]:
        """The values of ``_INSERT`` for ``job``, stored as ``job_id``."""
        policy = job.policy
        backoff = policy.backoff
        heartbeat = policy.heartbeat_interval
        ttl = round(policy.result_ttl * _US)
        ended = status == "cancelled"
        return (
            _blob(job_id),
            job.name,
            job.queue,
            job.args,
            status,
            _run_at(job, now),
            job.unique_key,
            policy.max_retries.limit,
            backoff.kind,
            backoff.value,
            backoff.max,
            heartbeat,
            round(STALE_HEARTBEATS * heartbeat * _US),
            policy.timeout,
            ttl,
            parents,
            waiting_on,
            error,
            now if ended else None,
            now + ttl if ended else None,
            job.priority,
        )

    def _push_children(self, jobs: Sequence[NewJob], now: int) -> list[uuid.UUID]:
        """``push_many`` of a batch in which some jobs have parents: one job
        at a time, since a child reads what its parents are (which may be
        jobs of this batch)."""
        conn = self._conn
        for position, job in enumerate(jobs):
            dependencies.check_after(job.after, position)
            for parent in job.after:
                known = not isinstance(parent, uuid.UUID) or self._status_of(_blob(parent.int), now)
                if not known:
                    raise UnknownParent(parent)  # type: ignore[arg-type]
        ids: list[uuid.UUID] = []
        for job in jobs:
            key = job.unique_key
            live = None if key is None else self._holder(key)
            if live is not None:
                ids.append(to_uuid(live))
                continue
            job_id = self._next_id()
            ids.append(to_uuid(job_id))
            parents = dependencies.resolve(job.after, ids[:-1])
            stands = dependencies.standing(
                parents, lambda parent: self._status_of(_blob(parent.int), now)
            )
            waiting_on = [_blob(parent.int) for parent in stands.waiting_for]
            packed = dependencies.pack(parents) if parents else None
            if stands.cancelled is not None:
                why = stands.cancelled
                self._told.cancelled.append(CancelledChild(to_uuid(job_id), job.queue, why))
                if job.policy.result_ttl > 0:
                    row = self._row(job, job_id, now, status="cancelled", parents=packed, error=why)
                    conn.execute(_INSERT, row)
                continue
            status_text = "waiting" if waiting_on else "pending"
            row = self._row(
                job, job_id, now, status=status_text, parents=packed, waiting_on=len(waiting_on)
            )
            conn.execute(_INSERT, row)
            if key is not None:
                conn.execute("INSERT INTO unique_keys VALUES (?, ?)", (key, _blob(job_id)))
            self._count(job.queue)[_WAITING if waiting_on else _PENDING] += 1
            if not waiting_on:
                self._pend(job.queue, job.priority, 1)
            run_at = _run_at(job, now)
            if not waiting_on and run_at > now:
                self._scheduled_for(job.queue, run_at)
            if waiting_on:
                conn.executemany(
                    "INSERT INTO children VALUES (?, ?)",
                    [(parent, _blob(job_id)) for parent in waiting_on],
                )
                self._edges += len(waiting_on)
        return ids

    def _status_of(self, blob: bytes, now: int) -> Status | None:
        row = self._conn.execute(
            f"SELECT status FROM jobs WHERE id = ? AND {_SHOWN}", (blob, now)
        ).fetchone()
        return None if row is None else _STATUS[row[0]]

    def dependents(self) -> Dependents:
        return self._told.take()

    def _parents_succeeded(self, blobs: Sequence[bytes], now: int) -> None:
        """Count down the waiting children of parents that succeeded; those
        with none left to wait for become pending."""
        conn = self._conn
        waits: dict[bytes, int] = {}
        for start in range(0, len(blobs), _IN_CHUNK):
            chunk = blobs[start : start + _IN_CHUNK]
            rows = conn.execute(
                f"DELETE FROM children WHERE parent IN ({','.join('?' * len(chunk))})"
                " RETURNING child",
                chunk,
            ).fetchall()
            self._edges -= len(rows)
            for (child,) in rows:
                waits[child] = waits.get(child, 0) + 1
        for child, done in waits.items():
            row = conn.execute(
                "UPDATE jobs SET waiting_on = waiting_on - ?1, status = CASE"
                " WHEN waiting_on - ?1 <= 0 THEN 'pending' ELSE status END"
                " WHERE id = ?2 AND status = 'waiting' RETURNING status, queue, run_at, priority",
                (done, child),
            ).fetchone()
            if row is not None and row[0] == "pending":
                _, queue, run_at, priority = row
                count = self._count(queue)
                count[_WAITING] -= 1
                count[_PENDING] += 1
                self._pend(queue, priority, 1)
                self._told.released.add(queue)
                if run_at > now:  # a child never ran: scheduled for later
                    self._scheduled_for(queue, run_at)

    def _parent_failed(self, root: bytes, status: Status, now: int) -> None:
        """Cancel the waiting subtree of ``root``, which ended ``status``
        (DEAD or CANCELLED): a loop over a stack, never recursion."""
        conn = self._conn
        root_id = to_uuid(int.from_bytes(root, "big"))
        stack = [(root, child) for child in reversed(self._take_children(root))]
        while stack:
            parent, child = stack.pop()
            row = conn.execute(
                "SELECT queue, unique_key, result_ttl_us FROM jobs"
                " WHERE id = ? AND status = 'waiting'",
                (child,),
            ).fetchone()
            if row is None:
                continue  # cancelled already, for another parent
            queue, key, ttl = row
            parent_id = to_uuid(int.from_bytes(parent, "big"))
            why = dependencies.reason(parent_id, root_id, status)
            self._cancel_row(child, queue, key, ttl, reason=why, now=now, was=_WAITING)
            child_id = to_uuid(int.from_bytes(child, "big"))
            self._told.cancelled.append(CancelledChild(child_id, queue, why))
            stack.extend((child, grand) for grand in reversed(self._take_children(child)))

    def _take_children(self, parent: bytes) -> list[bytes]:
        """The children of ``parent`` that waited for it, its edges gone."""
        rows = self._conn.execute(
            "DELETE FROM children WHERE parent = ? RETURNING child", (parent,)
        ).fetchall()
        self._edges -= len(rows)
        return sorted(row[0] for row in rows)

    @_atomic
    def push_tick(self, schedule: str, tick_us: int, job: NewJob) -> uuid.UUID | None:
        advanced = self._conn.execute(
            "INSERT INTO schedule_ticks VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
            " SET tick = excluded.tick WHERE tick < excluded.tick RETURNING 1",
            (schedule, tick_us),
        ).fetchall()
        return self.push_many((job,))[0] if advanced else None

    def last_tick(self, schedule: str) -> int | None:
        row = self._conn.execute(
            "SELECT tick FROM schedule_ticks WHERE name = ?", (schedule,)
        ).fetchone()
        return None if row is None else int(row[0])

    @_atomic
    def pop(self, queue: str, runner: str, limit: int = 1) -> list[Claim]:
        count = self._counts.get(queue)
        if limit <= 0 or count is None:
            return []
        now = self._now_us()
        if queue in self._later:
            self._scheduled(queue, now)  # what fell due leaves its notes
        conn = self._conn
        rows: list[Any] = []
        if count[_RUNNING]:
            # A claim whose heartbeat is older than 5 intervals is taken over.
            rows = conn.execute(
                f"SELECT {_CLAIM} FROM jobs WHERE queue = ? AND status = 'running'"
                " AND expires < ? ORDER BY expires, id LIMIT ?",
                (queue, now, limit),
            ).fetchall()
        stale = len(rows)
        if stale < limit and count[_PENDING]:
            for level in self._levels(queue):  # highest first
                found = conn.execute(
                    f"SELECT {_CLAIM} FROM jobs WHERE queue = ? AND status = 'pending'"
                    " AND priority = ? AND run_at <= ? ORDER BY run_at, id LIMIT ?",
                    (queue, level, now, limit - len(rows)),
                ).fetchall()
                if found:
                    rows += found
                    self._pend(queue, level, -len(found))
                if len(rows) >= limit:
                    break
        if not rows:
            return []
        conn.executemany(
            "UPDATE jobs SET status = 'running', runner = ?2, expires = ?1 + lease,"
            " started_at = ?1 WHERE id = ?3",
            [(now, runner, row[0]) for row in rows],
        )
        taken = len(rows) - stale
        count[_PENDING] -= taken
        count[_RUNNING] += taken
        return [
            Claim(
                to_uuid(int.from_bytes(row[0], "big")),
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                dependencies.unpack(row[6]),
            )
            for row in rows
        ]

    @_atomic
    def heartbeat(self, runner: str, job_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        now = self._now_us()
        execute = self._conn.execute
        lost = []
        for job_id in job_ids:
            # runner is set only while a job is held, so it alone proves the claim.
            updated = execute(
                "UPDATE jobs SET expires = ? + lease WHERE id = ? AND runner = ?",
                (now, _blob(job_id.int), runner),
            ).rowcount
            if not updated:
                lost.append(job_id)
        return lost

    @_atomic
    def complete(self, job_id: uuid.UUID, runner: str, result: JobResult) -> Disposition:
        blob = _blob(job_id.int)
        conn = self._conn
        if result.outcome is Outcome.SUCCESS:
            # The hot path: one statement, which keeps the row as its record.
            done = conn.execute(
                "UPDATE jobs SET status = 'succeeded', runner = NULL, expires = NULL,"
                " result = ?1, finished_at = ?2, expires_at = ?2 + result_ttl_us"
                " WHERE id = ?3 AND runner = ?4 RETURNING queue, unique_key, result_ttl_us",
                (result.value, self._now_us(), blob, runner),
            ).fetchone()
            if done is None:
                return Disposition.NOT_HELD
            queue, key, ttl = done
            self._counts[queue][_RUNNING] -= 1
            if key is not None:
                self._forget_key(key, blob)
            if not ttl:
                conn.execute("DELETE FROM jobs WHERE id = ?", (blob,))
            if self._edges:
                self._parents_succeeded([blob], self._now_us())
            return Disposition.FINISHED
        row = conn.execute(
            f"SELECT {_HELD} FROM jobs WHERE id = ? AND runner = ?", (blob, runner)
        ).fetchone()
        if row is None:
            return Disposition.NOT_HELD
        return self._settle(row, result, self._now_us())

    @_atomic
    def complete_and_pop(
        self, completions: Sequence[Completion], pops: Sequence[PopRequest]
    ) -> tuple[list[Disposition], list[list[Claim]]]:
        """As ``complete_then_pop``, but the successes of a round (the hot
        path) are settled in one statement per runner: completions of
        distinct jobs do not depend on each other's order."""
        settled: list[Disposition] = [Disposition.NOT_HELD] * len(completions)
        successes: dict[str, list[int]] = {}  # runner -> places in completions
        distinct = len({job_id for job_id, _, _ in completions}) == len(completions)
        for at, (job_id, runner, result) in enumerate(completions):
            if distinct and result.outcome is Outcome.SUCCESS:
                successes.setdefault(runner, []).append(at)
            else:
                settled[at] = self.complete(job_id, runner, result)
        now = self._now_us()
        for runner, places in successes.items():
            for start in range(0, len(places), _IN_CHUNK):
                self._finish_many(
                    runner, completions, places[start : start + _IN_CHUNK], settled, now
                )
        return settled, [self.pop(queue, runner, limit) for queue, runner, limit in pops]

    def _finish_many(
        self,
        runner: str,
        completions: Sequence[Completion],
        places: list[int],
        settled: list[Disposition],
        now: int,
    ) -> None:
        """Settle the successes at ``places`` (all of ``runner``) at once."""
        blobs = [_blob(completions[at][0].int) for at in places]
        conn = self._conn
        if all(completions[at][2].value is None for at in places):
            # Returned nothing (what most jobs do): a plain IN list.
            rows = conn.execute(
                "UPDATE jobs SET status = 'succeeded', runner = NULL, expires = NULL,"
                " result = NULL, finished_at = ?1, expires_at = ?1 + result_ttl_us"
                f" WHERE runner = ? AND id IN ({','.join('?' * len(blobs))})"
                " RETURNING id, queue, unique_key, result_ttl_us",
                (now, runner, *blobs),
            ).fetchall()
        else:
            # Each its own value: joined to the rows from a VALUES list.
            params: list[Any] = [now]
            for at, blob in zip(places, blobs, strict=True):
                params += (blob, completions[at][2].value)
            params.append(runner)
            rows = conn.execute(
                "UPDATE jobs SET status = 'succeeded', runner = NULL, expires = NULL,"
                " result = done.column2, finished_at = ?1, expires_at = ?1 + result_ttl_us"
                f" FROM (VALUES {','.join(['(?, ?)'] * len(blobs))}) AS done"
                " WHERE id = done.column1 AND runner = ?"
                " RETURNING id, queue, unique_key, result_ttl_us",
                params,
            ).fetchall()
        gone = {row[0]: row for row in rows}
        unkept = []
        for at, blob in zip(places, blobs, strict=True):
            row = gone.get(blob)
            if row is None:
                continue  # not held by that runner: NOT_HELD stays
            self._counts[row[1]][_RUNNING] -= 1
            if row[2] is not None:
                self._forget_key(row[2], blob)
            if not row[3]:
                unkept.append(blob)
            settled[at] = Disposition.FINISHED
        if unkept:
            conn.execute(f"DELETE FROM jobs WHERE id IN ({','.join('?' * len(unkept))})", unkept)
        if self._edges and gone:
            self._parents_succeeded(list(gone), now)

    def release(self, runner: str, result: JobResult) -> list[tuple[uuid.UUID, Disposition]]:
        rows = self._conn.execute(
            # Named: the planner would rather scan the table in id order.
            f"SELECT {_HELD} FROM jobs INDEXED BY jobs_held"
            " WHERE status = 'running' AND runner = ? ORDER BY id",
            (runner,),
        ).fetchall()
        now = self._now_us()
        return [
            (to_uuid(int.from_bytes(row[0], "big")), self._settle(row, result, now)) for row in rows
        ]

    def _settle(self, row: Any, result: JobResult, now: int) -> Disposition:
        """Settle the held job ``row`` (columns _HELD) with ``result``."""
        blob, queue, retry_count, unique_key, limit, kind, value, cap, ttl = row
        count = self._counts[queue]
        count[_RUNNING] -= 1
        verdict = settle(
            result,
            retry_count=retry_count,
            max_retries=MaxRetries(limit),
            backoff=Backoff(kind, value, cap),
            unregistered_delay_us=self._unregistered_delay_us,
        )
        disposition = verdict.disposition
        conn = self._conn
        if disposition is Disposition.FINISHED or disposition is Disposition.CANCELLED:
            if not ttl:
                conn.execute("DELETE FROM jobs WHERE id = ?", (blob,))
            else:
                succeeded = disposition is Disposition.FINISHED
                conn.execute(
                    "UPDATE jobs SET status = ?, runner = NULL, expires = NULL, result = ?,"
                    " last_error = coalesce(?, last_error), retry_count = ?, finished_at = ?,"
                    " expires_at = ? WHERE id = ?",
                    (
                        "succeeded" if succeeded else "cancelled",
                        result.value if succeeded else None,
                        verdict.error,
                        verdict.retry_count,
                        now,
                        now + ttl,
                        blob,
                    ),
                )
            if unique_key is not None:
                self._forget_key(unique_key, blob)
            if self._edges:
                if disposition is Disposition.FINISHED:
                    self._parents_succeeded([blob], now)
                else:
                    self._parent_failed(blob, Status.CANCELLED, now)
            return disposition
        if disposition is Disposition.DEAD:
            conn.execute(
                "UPDATE jobs SET status = 'dead', runner = NULL, expires = NULL, died_at = ?,"
                " last_error = coalesce(?, last_error), retry_count = ? WHERE id = ?",
                (now, verdict.error, verdict.retry_count, blob),
            )
            if unique_key is not None:
                self._forget_key(unique_key, blob)
            count[_DEAD] += 1
            if self._edges:
                self._parent_failed(blob, Status.DEAD, now)
            return disposition
        # Pending again; with no delay it keeps its run_at, so its place in line.
        delay = verdict.delay_us
        if delay and not verdict.retry_count:
            self._scheduled_for(queue, now + delay)  # put back for later, never failed
        (priority,) = conn.execute(
            "UPDATE jobs SET status = 'pending', runner = NULL, expires = NULL,"
            " run_at = coalesce(?, run_at), last_error = coalesce(?, last_error),"
            " retry_count = ? WHERE id = ? RETURNING priority",
            (None if delay is None else now + delay, verdict.error, verdict.retry_count, blob),
        ).fetchone()
        count[_PENDING] += 1
        self._pend(queue, priority, 1)
        return disposition

    def _forget_key(self, key: str, blob: bytes) -> None:
        self._conn.execute("DELETE FROM unique_keys WHERE key = ? AND job_id = ?", (key, blob))

    @_atomic
    def cancel(self, job_id: uuid.UUID, reason: str) -> Status | None:
        blob = _blob(job_id.int)
        now = self._now_us()
        conn = self._conn
        row = conn.execute(
            "SELECT status, queue, unique_key, result_ttl_us, run_at, retry_count FROM jobs"
            f" WHERE id = ? AND {_SHOWN}",
            (blob, now),
        ).fetchone()
        if row is None:
            return None
        status, queue, key, ttl, run_at, retry_count = row
        later = self._later.get(queue)
        if later is not None and status == "pending" and run_at > now and not retry_count:
            later.discard(run_at)  # scheduled no more
        if status not in {"pending", "waiting"}:
            # Running: its runner stops it and completes it CANCELLED (one
            # host per file: our runtime asks it). Ended: left as it is.
            return _STATUS[status]
        self._cancel_row(blob, queue, key, ttl, reason=reason, now=now, was=_COUNTED[status])
        if self._edges:
            self._parent_failed(blob, Status.CANCELLED, now)
        return _STATUS[status]

    def _cancel_row(
        self,
        blob: bytes,
        queue: str,
        key: str | None,
        ttl: int,
        *,
        reason: str,
        now: int,
        was: int,
    ) -> None:
        """Cancel the pending or waiting job ``blob`` (counted at ``was``)."""
        conn = self._conn
        if not ttl:
            (priority,) = conn.execute(
                "DELETE FROM jobs WHERE id = ? RETURNING priority", (blob,)
            ).fetchone()
        else:
            # No attempt of it ended it: started_at is cleared.
            (priority,) = conn.execute(
                "UPDATE jobs SET status = 'cancelled', last_error = ?, started_at = NULL,"
                " finished_at = ?, expires_at = ? WHERE id = ? RETURNING priority",
                (reason, now, now + ttl, blob),
            ).fetchone()
        if key is not None:
            self._forget_key(key, blob)
        self._counts[queue][was] -= 1
        if was == _PENDING:
            self._pend(queue, priority, -1)

    @_atomic
    def expire(self) -> int:
        # Only kept records have an expires_at: a range of jobs_kept.
        return self._conn.execute(
            "DELETE FROM jobs WHERE expires_at <= ?", (self._now_us(),)
        ).rowcount

    @_atomic
    def requeue(self, job_id: uuid.UUID) -> bool:
        blob = _blob(job_id.int)
        conn = self._conn
        row = conn.execute(
            "SELECT queue, unique_key, priority FROM jobs WHERE id = ? AND status = 'dead'",
            (blob,),
        ).fetchone()
        if row is None:
            return False
        queue, key, priority = row
        conn.execute(
            "UPDATE jobs SET status = 'pending', died_at = NULL, retry_count = 0, run_at = ?"
            " WHERE id = ?",
            (self._now_us(), blob),
        )
        if key is not None:
            # Live again: it holds its key once more, unless another job took it.
            conn.execute("INSERT OR IGNORE INTO unique_keys VALUES (?, ?)", (key, blob))
        count = self._counts[queue]
        count[_DEAD] -= 1
        count[_PENDING] += 1
        self._pend(queue, priority, 1)
        return True

    @_atomic
    def purge_dead(self, older_than: float | None = None) -> int:
        if older_than is None:
            cursor = self._conn.execute("DELETE FROM jobs WHERE status = 'dead' RETURNING queue")
        else:
            cutoff = self._now_us() - round(older_than * _US)
            cursor = self._conn.execute(
                "DELETE FROM jobs WHERE status = 'dead' AND died_at < ? RETURNING queue",
                (cutoff,),
            )
        queues = [row[0] for row in cursor.fetchall()]
        for queue in queues:
            self._counts[queue][_DEAD] -= 1
        return len(queues)

    # -- reading ------------------------------------------------------------------------

    def _levels(self, queue: str) -> Iterator[int]:
        """The priorities of the queue's pending jobs, highest first, one
        probe of ``jobs_pending`` each, made only as the caller asks."""
        execute = self._conn.execute
        level = execute(
            "SELECT max(priority) FROM jobs WHERE queue = ? AND status = 'pending'", (queue,)
        ).fetchone()[0]
        while level is not None:
            yield level
            level = execute(
                "SELECT max(priority) FROM jobs WHERE queue = ? AND status = 'pending'"
                " AND priority < ?",
                (queue, level),
            ).fetchone()[0]

    def _recount(self) -> None:
        counts: dict[str, list[int]] = {}
        for index, status in (
            ("jobs_pending", "pending"),
            ("jobs_held", "running"),
            ("jobs_dead", "dead"),
            ("jobs_waiting", "waiting"),
        ):
            # One partial index each: the kept records, however many, are not read.
            for queue, number in self._conn.execute(
                f"SELECT queue, count(*) FROM jobs INDEXED BY {index}"
                f" WHERE status = '{status}' GROUP BY queue"
            ):
                counts.setdefault(queue, [0, 0, 0, 0])[_COUNTED[status]] = number
        self._counts = counts
        by_level: dict[str, dict[int, int]] = {}
        for queue, priority, number in self._conn.execute(
            "SELECT queue, priority, count(*) FROM jobs INDEXED BY jobs_pending"
            " WHERE status = 'pending' GROUP BY queue, priority"
        ):
            by_level.setdefault(queue, {})[priority] = number
        self._by_level = by_level
        later: dict[str, SortedList] = {}
        for queue, run_at in self._conn.execute(
            "SELECT queue, run_at FROM jobs INDEXED BY jobs_pending WHERE status = 'pending'"
            " AND run_at > ? AND retry_count = 0",
            (self._now_us(),),
        ):
            later.setdefault(queue, SortedList()).add(run_at)
        self._later = later
        self._edges = self._conn.execute("SELECT count(*) FROM children").fetchone()[0]

    def _scheduled_for(self, queue: str, run_at: int) -> None:
        """Note a job that became pending, never failed, not due until ``run_at``."""
        later = self._later.get(queue)
        if later is None:
            later = self._later[queue] = SortedList()
        later.add(run_at)

    def _scheduled(self, queue: str, now: int) -> int:
        """The queue's scheduled jobs: its entries of ``_later`` past ``now``
        (the others fell due, and are dropped: stats and pop both look)."""
        later = self._later.get(queue)
        if not later:
            return 0
        if later[0] <= now:
            del later[: later.bisect_right(now)]
        return len(later)

    def _policy(self, row: Any) -> Policy:
        key = row[10:16]
        policy = self._policies.get(key)
        if policy is None:
            limit, kind, value, heartbeat, timeout, cap = key
            policy = Policy(MaxRetries(limit), Backoff(kind, value, cap), heartbeat, timeout)
            if len(self._policies) > 1024:
                self._policies.clear()  # bounded: policies may come from anywhere
            self._policies[key] = policy
        return policy

    def _job(self, row: Any, status: Status, runner: str | None) -> JobInfo:
        """A JobInfo from ``row`` (columns _COLUMNS)."""
        return JobInfo.stored(
            id=to_uuid(int.from_bytes(row[0], "big")),
            name=row[1],
            queue=row[2],
            args=row[3],
            policy=self._policy(row),
            retry_count=row[6],
            run_at_us=row[5],
            status=status,
            last_error=row[7],
            runner=runner,
            unique_key=row[9],
            result=row[16],
            started_us=row[17],
            finished_us=row[18],
            expires_us=row[19],
            priority=row[20],
            parents=dependencies.unpack(row[21]),
        )

    def _row_job(self, row: Any) -> JobInfo:
        return self._job(row, _STATUS[row[4]], row[8])

    def info(self, job_id: uuid.UUID) -> JobInfo | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND {_SHOWN}",
            (_blob(job_id.int), self._now_us()),
        ).fetchone()
        return None if row is None else self._row_job(row)

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
        """As the contract says; see the module docstring for each page's plan."""
        if page_is_empty(status, scheduled, limit):
            return []
        status = walked_status(status, scheduled)
        sql, params = self._page(
            queue=queue, status=status, scheduled=scheduled, name=name, after=after, limit=limit
        )
        return [self._row_job(row) for row in self._conn.execute(sql, params)]

    def _page(
        self,
        *,
        queue: str | None,
        status: Status | None,
        scheduled: bool | None,
        name: str | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> tuple[str, builtins.list[Any]]:
        """The statement of one page of ``list``, and its parameters."""
        now = self._now_us()
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if status is not None:
            # A literal, not a parameter: only then can SQLite use the partial index.
            where.append(f"status = '{status.value}'")
        if queue is not None:
            where.append("queue = ?")
            params.append(queue)
        if name is not None:
            where.append("name = ?")
            params.append(name)
        if after is not None:
            where.append("id > ?")
            params.append(_blob(after.int))
        if status is None or status in _KEPT:
            where.append(_SHOWN)
            params.append(now)
        if scheduled is not None:
            where.append(
                "run_at > ? AND retry_count = 0"
                if scheduled
                else "NOT (run_at > ? AND retry_count = 0)"
            )
            params.append(now)
        condition = " AND ".join(where) if where else "1"
        index = None if status is None else _LISTED_BY.get(status)
        if index is None:
            # The primary key from ``after`` on, in order: no sort, and it
            # stops at the limit.
            sql = f"SELECT {_COLUMNS} FROM jobs WHERE {condition} ORDER BY id LIMIT ?"
        else:
            # The ids from the status's partial index, then only their rows.
            sql = (
                f"SELECT {_COLUMNS} FROM jobs WHERE id IN (SELECT id FROM jobs INDEXED BY {index}"
                f" WHERE {condition} ORDER BY id LIMIT ?) ORDER BY id"
            )
        params.append(limit)
        return sql, params

    def stats(self, *, levels: bool = True) -> dict[str, QueueStats]:
        """As the contract says, every count exact, from memory (see the
        module docstring), the split by priority too (so ``levels`` changes
        nothing); the earliest run_at is the least of the levels' first
        entries in the pending index, one probe each."""
        stats = {}
        now = self._now_us()
        for queue, count in sorted(self._counts.items()):
            if not any(count):
                continue
            kept = self._by_level.get(queue, {})
            present = sorted(kept, reverse=True) if count[_PENDING] else []
            oldest = self._first_run_at(queue, present)
            by_level = by_priority([(level, kept[level]) for level in present])
            stats[queue] = QueueStats(
                pending=count[_PENDING],
                running=count[_RUNNING],
                dead=count[_DEAD],
                scheduled=self._scheduled(queue, now),
                oldest_due_at=oldest / _US if oldest is not None and oldest <= now else None,
                waiting=count[_WAITING],
                pending_by_priority=by_level,
            )
        return stats

    def _first_run_at(self, queue: str, levels: Iterable[int] | None = None) -> int | None:
        """The queue's earliest run_at: the least of its levels' first
        entries in the pending index, one probe each (``levels``: found
        already)."""
        execute = self._conn.execute
        heads = [
            execute(
                "SELECT min(run_at) FROM jobs INDEXED BY jobs_pending WHERE status = 'pending'"
                " AND queue = ? AND priority = ?",
                (queue, level),
            ).fetchone()[0]
            for level in (self._levels(queue) if levels is None else levels)
        ]
        return min(heads, default=None)

    # -- pauses ------------------------------------------------------------------------

    @_atomic
    def set_paused(self, queue: str, paused: bool) -> None:
        if paused:
            # Paused again: it keeps the time it was first paused.
            self._conn.execute(
                "INSERT INTO queues (queue, paused_at) VALUES (?, ?) ON CONFLICT (queue)"
                " DO UPDATE SET paused_at = coalesce(paused_at, excluded.paused_at)",
                (queue, self._now_us()),
            )
        else:
            self._conn.execute("UPDATE queues SET paused_at = NULL WHERE queue = ?", (queue,))

    def paused(self) -> frozenset[str]:
        rows = self._conn.execute("SELECT queue FROM queues WHERE paused_at IS NOT NULL")
        return frozenset(row[0] for row in rows)

    def next_due(self, queue: str) -> float | None:
        count = self._counts.get(queue)
        if count is None:
            return None
        times: list[int] = []
        conn = self._conn
        first = self._first_run_at(queue) if count[_PENDING] else None
        if first is not None:
            times.append(first)
        if count[_RUNNING]:
            expires = conn.execute(
                "SELECT expires FROM jobs WHERE queue = ? AND status = 'running'"
                " ORDER BY expires LIMIT 1",
                (queue,),
            ).fetchone()[0]
            # A claim may be taken once its expiry is strictly in the past.
            times.append(expires + 1)
        return min(times) / _US if times else None
