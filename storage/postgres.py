"""PostgresStorage: jobs in one PostgreSQL table, shared by many hosts.

Every host process owns one StorageActor and so one PostgresStorage; any
number of hosts may point at the same database and schema. Apply the schema
on open (automatic) or beforehand with ``python -m storage.postgres``.

Schema (``<schema>.jobs``, one row per job that is not finished or purged)::

    id          uuid    UUIDv7 made by the pushing host (storage.ids)
    queue       text    COLLATE "C", so queues sort as Python sorts str
    status      int2    0 pending, 1 running, 2 dead (so ORDER BY status is
                        the listing order)
    run_at      int8    µs since the epoch: when the job is due
    mark        int8    running: the claim's expiry (µs); dead: time of death
    runner      text    the holder while running, else NULL
    lease_us    int8    5 x heartbeat interval, in µs, fixed at push
    live_key    text    = unique_key while this job holds the key, else NULL
    ...         the policy (max_retries, backoff, heartbeat, timeout), args,
                retry_count, last_error, unique_key

Times are integer microseconds so that ordering and the "strictly older is
stale" rule are exact, as in MemoryStorage. They come from the database clock
(``statement_timestamp()``) so that hosts with skewed clocks agree, unless a
clock is injected (tests), in which case that clock provides every time.

Partial indexes serve each path: pending ``(queue, run_at, id)``, held
``(queue, mark, id)``, held by runner ``(runner)``, dead ``(mark, id)``, and a
unique index on ``live_key`` that makes "one live job per key" a constraint.

Claim protocol: ``pop`` is one statement that locks candidates with
``FOR UPDATE SKIP LOCKED`` (stale claims first by expiry, then due pending
jobs by (run_at, id)) and updates them to running with a fresh lease, so two
hosts popping at once never take the same row: the second skips rows the
first has locked, and re-checks rows the first has since committed. Heartbeat,
complete and release only touch rows whose ``runner`` is the caller, so a
claim taken over by another runner is not settled twice. A dead host's claims
come back through the same stale-claim path after five heartbeat intervals;
there is no recovery on open, because other hosts may be alive.

Transactions: every operation runs in one open transaction on the actor's
connection, and ``commit()`` (called by the StorageActor once per message,
before it answers) commits it; rows claimed stay locked until then, which
other hosts see as "skip". Reads made outside a transaction run in autocommit
so that no idle transaction holds locks between messages. A failed operation
poisons the transaction: ``commit()`` then rolls back and raises, so nothing
done since the last commit is acknowledged. One exception, the hot path: a
``complete_and_pop`` that is a single statement and finds no transaction open
(the StorageActor calls it first in each round) is a transaction of its own,
durable when it returns: one round trip instead of three.

Wake-ups: a message that pushed or put a job back due sends a NOTIFY with its
commit; ``subscribe`` starts a listener thread on its own connection that
calls ``wake()`` for each notification from another connection. Delays
(retries, schedules) elsewhere are caught by ``poll_interval``.
"""

from __future__ import annotations

import argparse
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, LiteralString, cast

try:
    import psycopg
    import psycopg.errors
    from psycopg.pq import TransactionStatus
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # the optional ``postgres`` extra is not installed
    raise ImportError(
        "PostgresStorage needs psycopg: pip install 'jobarbiter[postgres]'", name=exc.name
    ) from exc

from storage.clock import Clock
from storage.contract import STALE_HEARTBEATS, Completion, NotOpen, PopRequest, not_open
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
)
from storage.policy import Backoff, MaxRetries, Policy
from storage.settle import settle

log = EventLog("storage.postgres")

_US = 1_000_000
_PENDING, _RUNNING, _DEAD = 0, 1, 2
_STATUS = {_PENDING: Status.PENDING, _RUNNING: Status.RUNNING, _DEAD: Status.DEAD}
_STATUS_CODE = {status: code for code, status in _STATUS.items()}
_LOCK_NAMESPACE = 0x6A6F6261  # "joba": first key of the migration advisory lock
_OFFSET_REFRESH = 60.0  # seconds between measurements of the database clock

Row = tuple[Any, ...]
Conn = psycopg.Connection[Row]

# -- migrations ----------------------------------------------------------------------

# Each version is a list of statements, applied once, in order, in one
# transaction. Never edit a released version: append a new one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE {s}.jobs (
    id uuid PRIMARY KEY,
    queue text COLLATE "C" NOT NULL,
    name text NOT NULL,
    args bytea NOT NULL,
    status smallint NOT NULL,
    run_at bigint NOT NULL,
    mark bigint NOT NULL DEFAULT 0,
    runner text,
    retry_count integer NOT NULL DEFAULT 0,
    last_error text,
    max_retries bigint,
    backoff_kind text NOT NULL,
    backoff_value double precision NOT NULL,
    heartbeat_interval double precision NOT NULL,
    lease_us bigint NOT NULL,
    timeout double precision,
    unique_key text,
    live_key text
)""",
        "CREATE INDEX jobs_pending ON {s}.jobs (queue, run_at, id) WHERE status = 0",
        "CREATE INDEX jobs_held ON {s}.jobs (queue, mark, id) WHERE status = 1",
        "CREATE INDEX jobs_runner ON {s}.jobs (runner) WHERE status = 1",
        "CREATE INDEX jobs_dead ON {s}.jobs (mark, id) WHERE status = 2",
        "CREATE UNIQUE INDEX jobs_live_key ON {s}.jobs (live_key) WHERE live_key IS NOT NULL",
    ],
    # Backoff.max: jobs stored before it get the default cap, a day.
    ["ALTER TABLE {s}.jobs ADD COLUMN backoff_max double precision NOT NULL DEFAULT 86400"],
]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def migration_sql(schema: str = "jobarbiter") -> str:
    """Every migration as one idempotent SQL script (psql -f, or any client).

    It takes the same advisory lock as PostgresStorage on open, so it may run
    while hosts start; versions already applied are skipped.
    """
    s = quote_ident(schema)
    lines = [
        f"-- jobarbiter schema {schema!r}, versions 1 to {len(MIGRATIONS)}",
        "BEGIN;",
        f"SELECT pg_advisory_xact_lock({_LOCK_NAMESPACE}, hashtext({_literal(schema)}));",
        f"CREATE SCHEMA IF NOT EXISTS {s};",
        f"CREATE TABLE IF NOT EXISTS {s}.migrations ("
        "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());",
    ]
    for version, statements in enumerate(MIGRATIONS, 1):
        lines += [
            f"-- version {version}",
            "DO $migrate$",
            "BEGIN",
            f"  IF NOT EXISTS (SELECT 1 FROM {s}.migrations WHERE version = {version}) THEN",
        ]
        for statement in statements:
            lines.append(f"    EXECUTE $step${statement.format(s=s)}$step$;")
        lines += [
            f"    INSERT INTO {s}.migrations (version) VALUES ({version});",
            "  END IF;",
            "END",
            "$migrate$;",
        ]
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def migrate(conn: Conn, schema: str) -> None:
    """Bring ``schema`` up to date; ``conn`` must be in autocommit mode."""
    found = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", [f"{quote_ident(schema)}.migrations"]
    ).fetchone()
    if found is not None and found[0]:
        row = conn.execute(
            _q(f"SELECT coalesce(max(version), 0) FROM {quote_ident(schema)}.migrations")
        ).fetchone()
        if row is not None and row[0] >= len(MIGRATIONS):
            return  # the common case: no lock, no DDL, no CREATE privilege needed
    conn.execute(_q(migration_sql(schema)), prepare=False)


def _q(text: str) -> LiteralString:
    # Our statements are built from constants and a quoted identifier, never
    # from values; values always travel as parameters. (mypy takes any str
    # for a LiteralString; this names the promise for other checkers.)
    return text


# -- statements ----------------------------------------------------------------------

# The time of the statement: the injected clock's, passed as %(now)s, or the
# database's. statement_timestamp() is fixed for the whole statement, so
# every row of one pop or one release sees the same instant.
_NOW = "coalesce(%(now)s::bigint, (extract(epoch FROM statement_timestamp()) * 1000000)::bigint)"

_COLUMNS = (
    "id, name, queue, args, retry_count, max_retries, backoff_kind, backoff_value, run_at,"
    " heartbeat_interval, timeout, status, last_error, runner, unique_key, backoff_max"
)


# What a Claim is built from, in this order.
_CLAIM = "id, name, queue, args, retry_count, timeout"


def _returning(prefix: str) -> str:
    return ", ".join(f"{prefix}{column.strip()}" for column in _CLAIM.split(","))


_INSERT = """INSERT INTO {jobs} (id, queue, name, args, status, run_at, max_retries,
    backoff_kind, backoff_value, backoff_max, heartbeat_interval, lease_us, timeout, unique_key,
    live_key)
SELECT u.id, u.queue, u.name, u.args, 0, coalesce(u.run_at, {now}), u.max_retries,
    u.backoff_kind, u.backoff_value, u.backoff_max, u.heartbeat_interval, u.lease_us, u.timeout,
    u.unique_key, u.unique_key
FROM unnest(%(id)s::uuid[], %(queue)s::text[], %(name)s::text[], %(args)s::bytea[],
    %(run_at)s::bigint[], %(max_retries)s::bigint[], %(backoff_kind)s::text[],
    %(backoff_value)s::float8[], %(backoff_max)s::float8[], %(heartbeat)s::float8[],
    %(lease)s::bigint[], %(timeout)s::float8[], %(unique_key)s::text[])
    AS u(id, queue, name, args, run_at, max_retries, backoff_kind, backoff_value, backoff_max,
        heartbeat_interval, lease_us, timeout, unique_key)
ON CONFLICT (live_key) WHERE live_key IS NOT NULL DO NOTHING"""

# One round of runners' messages in one statement: delete the jobs completed
# with success by their holders (``done``), then claim up to ``total`` jobs,
# stale claims first (earliest expiry), then due pending jobs. The claims are
# numbered in that order and the n-th goes to ``slots[n]``, the runner of the
# n-th job asked for, so the first request gets the first jobs, as
# consecutive pops would. SKIP LOCKED: concurrent claims on other hosts never
# wait for or take the same rows. A row deleted by ``done`` is not a stale
# claim to take (the CTEs share one snapshot, so it is left out by hand).
# ``runner`` is set exactly while a job runs, so the delete needs no
# ``status = 1``; without it the only index it can use is the primary key,
# where with it a plan may scan every held job of every host.
_COMPLETE_AND_POP = """WITH done AS (
    DELETE FROM {jobs}
    WHERE id = ANY(%(done)s::uuid[])
        AND runner = (%(done_by)s::text[])[array_position(%(done)s::uuid[], id)]
    RETURNING id
), stale AS MATERIALIZED (
    SELECT id, mark AS k FROM {jobs}
    WHERE queue = %(queue)s AND status = 1 AND mark < {now} AND id NOT IN (SELECT id FROM done)
    ORDER BY mark, id LIMIT %(total)s
    FOR UPDATE SKIP LOCKED
), due AS MATERIALIZED (
    SELECT id, run_at AS k FROM {jobs}
    WHERE queue = %(queue)s AND status = 0 AND run_at <= {now}
    ORDER BY run_at, id LIMIT (SELECT %(total)s - count(*) FROM stale)
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id, row_number() OVER (ORDER BY src, k, id) AS n
    FROM (SELECT id, 0 AS src, k FROM stale UNION ALL SELECT id, 1, k FROM due) AS u
), claimed AS (
    UPDATE {jobs} j SET status = 1, runner = (%(slots)s::text[])[p.n], mark = {now} + j.lease_us
    FROM picked p
    WHERE j.id = p.id
    RETURNING p.n, {returning}
)
SELECT * FROM claimed
UNION ALL
SELECT 0, id, {nulls} FROM done"""

_HEARTBEAT = """UPDATE {jobs} SET mark = {now} + lease_us
WHERE id = ANY(%(ids)s::uuid[]) AND status = 1 AND runner = %(runner)s
RETURNING id"""

_ONE = "id = %(id)s AND status = 1 AND runner = %(runner)s"
_ALL = "status = 1 AND runner = %(runner)s"

# Settling: a completed success (the hot path) is deleted by its holder in one
# statement. Anything else locks the held rows (_HELD), storage.settle decides
# each, and one statement stores the decisions (_APPLY), another deletes the
# finished: the rule lives in Python alone.
_FINISH = "DELETE FROM {jobs} WHERE {target} RETURNING id"

_HELD = """SELECT id, retry_count, max_retries, backoff_kind, backoff_value, backoff_max
FROM {jobs}
WHERE {target} ORDER BY id FOR UPDATE"""

_APPLY = """UPDATE {jobs} j SET runner = NULL,
    status = CASE WHEN u.dead THEN 2 ELSE 0 END,
    retry_count = u.retry_count,
    last_error = coalesce(u.error, j.last_error),
    run_at = CASE WHEN u.delay IS NULL THEN j.run_at ELSE {now} + u.delay END,
    mark = CASE WHEN u.dead THEN {now} ELSE 0 END,
    live_key = CASE WHEN u.dead THEN NULL ELSE j.live_key END
FROM unnest(%(ids)s::uuid[], %(dead)s::bool[], %(counts)s::int4[], %(delays)s::int8[],
    %(errors)s::text[]) AS u(id, dead, retry_count, delay, error)
WHERE j.id = u.id"""

_DELETE = "DELETE FROM {jobs} WHERE id = ANY(%(ids)s::uuid[])"

# A requeued job holds its key again only if no live job took it meanwhile.
_REQUEUE = """UPDATE {jobs} j SET status = 0, retry_count = 0, mark = 0, run_at = {now},
    live_key = CASE WHEN %(keep_key)s AND NOT EXISTS (
        SELECT 1 FROM {jobs} o WHERE o.live_key = j.unique_key) THEN j.unique_key END
WHERE j.id = %(id)s AND j.status = 2
RETURNING j.id"""

_PURGE = """DELETE FROM {jobs}
WHERE status = 2 AND (%(older)s::bigint IS NULL OR mark < {now} - %(older)s::bigint)"""

_INFO = "SELECT {columns} FROM {jobs} WHERE id = %(id)s"

_LIST = """SELECT {columns} FROM {jobs}
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    AND (%(status)s::smallint IS NULL OR status = %(status)s::smallint)
ORDER BY queue, status, CASE WHEN status = 0 THEN run_at ELSE mark END, id
OFFSET %(offset)s LIMIT %(limit)s"""

_STATS = """SELECT queue, count(*) FILTER (WHERE status = 0), count(*) FILTER (WHERE status = 1),
    count(*) FILTER (WHERE status = 2),
    count(*) FILTER (WHERE status = 0 AND retry_count = 0 AND run_at > {now})
FROM {jobs} GROUP BY queue ORDER BY queue"""

# A claim may be taken once its expiry is strictly in the past: one µs after.
_NEXT_DUE = """SELECT least(
    (SELECT min(run_at) FROM {jobs} WHERE queue = %(queue)s AND status = 0),
    (SELECT min(mark) + 1 FROM {jobs} WHERE queue = %(queue)s AND status = 1))"""

_LIVE_KEYS = "SELECT live_key, id FROM {jobs} WHERE live_key = ANY(%(keys)s::text[])"

_CLOCK = "SELECT extract(epoch FROM clock_timestamp())::float8"


class _Statements:
    """The SQL of one schema, formatted once."""

    def __init__(self, schema: str) -> None:
        jobs = f"{quote_ident(schema)}.jobs"

        def fmt(template: str, **extra: str) -> LiteralString:
            return _q(template.format(jobs=jobs, now=_NOW, **extra))

        self.insert = fmt(_INSERT)
        self.insert_returning = fmt(_INSERT + "\nRETURNING id")
        nulls = ", ".join(["NULL"] * (len(_CLAIM.split(",")) - 1))
        self.complete_and_pop = fmt(_COMPLETE_AND_POP, returning=_returning("j."), nulls=nulls)
        self.heartbeat = fmt(_HEARTBEAT)
        self.finish_one = fmt(_FINISH, target=_ONE)
        self.held_one = fmt(_HELD, target=_ONE)
        self.held_all = fmt(_HELD, target=_ALL)
        self.apply = fmt(_APPLY)
        self.delete = fmt(_DELETE)
        self.requeue = fmt(_REQUEUE)
        self.purge = fmt(_PURGE)
        self.info = fmt(_INFO, columns=_COLUMNS)
        self.list = fmt(_LIST, columns=_COLUMNS)
        self.stats = fmt(_STATS)
        self.next_due = fmt(_NEXT_DUE)
        self.live_keys = fmt(_LIVE_KEYS)


# Set on each of the actor's connections. Statements are prepared once and
# their plan is kept: a plan made while the table was small (a service just
# started) would go on scanning the whole table for every claim once a burst
# has filled it. Every statement of the claim path has an index to use, so
# forbidding sequential scans keeps those plans right at any size; and the
# penalty that forbidding adds to a plan's cost must not switch JIT compiling
# on, which costs tens of ms and never pays off for statements this short.
_SESSION: list[LiteralString] = ["SET enable_seqscan = off", "SET jit = off"]


def _configure(conn: Conn) -> None:
    for statement in _SESSION:
        conn.execute(statement)
    conn.commit()


class RolledBackError(Exception):
    """An operation failed, so everything since the last commit was rolled back."""


def _channel(schema: str) -> str:
    # NOTIFY channel names are identifiers: at most 63 bytes.
    name = f"jobarbiter_{schema}"
    if len(name.encode()) <= 63:
        return name
    return "jobarbiter_" + hashlib.sha256(schema.encode()).hexdigest()[:32]


# -- the storage ---------------------------------------------------------------------


class PostgresStorage:
    """A Storage in PostgreSQL, shared by any number of hosts.

    ``dsn`` is any libpq connection string; ``schema`` holds the tables (made
    or updated on open); ``clock`` replaces the database clock (tests only);
    ``pool_size`` caps the connections the pool may open (the actor uses one
    at a time and the pool replaces it if it breaks; the listener has its
    own); ``poll_interval`` is how often parked pops look again without a
    notification (retries and scheduled jobs of other hosts fall due silently).

    Behind a pooler in transaction mode (PgBouncer's ``pool_mode =
    transaction``), give ``dsn`` the pooler's address and ``listen_dsn`` the
    server's own: LISTEN needs a session of its own, so the listener connects
    there, and on ``dsn`` the storage then prepares no statement and sets
    nothing for the session, since consecutive transactions may meet different
    server connections. Each statement is then planned afresh, with the
    table's statistics of the moment, which is what the session settings are
    for otherwise.

    Like every Storage it is owned by one StorageActor and called from that
    actor's thread; ``now()`` may be called from any thread. Changes are
    durable, and visible to other hosts, only after ``commit()``; ``close()``
    rolls back what was not committed.
    """

    def __init__(
        self,
        dsn: str,
        *,
        clock: Clock | None = None,
        unregistered_delay: float = 60.0,
        schema: str = "jobarbiter",
        pool_size: int = 2,
        poll_interval: float = 5.0,
        listen_dsn: str | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self._dsn = dsn
        self._listen_dsn = listen_dsn
        self._clock = clock
        self._schema = schema
        self._unregistered_delay_us = round(unregistered_delay * _US)
        self._poll_interval = poll_interval
        self._pool_size = pool_size
        self._sql = _Statements(schema)
        self._channel = _channel(schema)
        self._ids = IdGenerator()
        self._backoffs: dict[tuple[str, float, float], Backoff] = {}
        self._max_retries: dict[int | None, MaxRetries] = {}
        self._offset = 0.0
        self._measured_at = 0.0
        self._failed: BaseException | None = None
        self._notify = False
        self._listener: _Listener | None = None
        self._backend_pid = 0

        self._pool: ConnectionPool[Conn] = not_open(self)
        self._conn: Conn | None = None

    def __repr__(self) -> str:
        return f"PostgresStorage(schema={self._schema!r})"  # the dsn may hold a password

    def open(self) -> PostgresStorage:
        """Connect, create or migrate the schema, and open the pool."""
        dsn, schema = self._dsn, self._schema
        # A plain connection first: it fails at once when nothing answers,
        # where a pool would keep retrying in the background.
        try:
            conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            raise psycopg.OperationalError(
                f"PostgresStorage cannot reach its database: {exc}".strip()
            ) from exc
        with conn:
            migrate(conn, schema)
            if self._clock is None:
                self._measure_offset(conn)
        pooled = self._listen_dsn is not None  # behind a transaction pooler
        pool: ConnectionPool[Conn] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": False, "prepare_threshold": None if pooled else 0},
            open=False,
            name=f"jobarbiter-{schema}",
            configure=None if pooled else _configure,
        )
        pool.open(wait=True)
        self._pool = pool
        return self

    # -- connection and transaction -----------------------------------------------

    def _connection(self) -> Conn:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._pool.getconn()
            self._backend_pid = conn.info.backend_pid
        return conn

    def _write(self, query: LiteralString, params: dict[str, Any]) -> psycopg.Cursor[Row]:
        """Run a statement inside the open transaction (opening one if need be)."""
        conn = self._connection()
        try:
            return conn.execute(query, params, binary=True)
        except BaseException as exc:
            self._fail(exc)
            raise

    def _rows(self, query: LiteralString, params: dict[str, Any]) -> list[Row]:
        return self._write(query, params).fetchall()

    def _alone(self, query: LiteralString, params: dict[str, Any]) -> list[Row]:
        """Run one statement as a transaction of its own when none is open,
        else as part of the open one. A read between messages so leaves no
        idle transaction holding locks, and a lone write is durable when it
        returns, in one round trip instead of three (BEGIN, it, COMMIT)."""
        conn = self._connection()
        idle = conn.info.transaction_status == TransactionStatus.IDLE
        if idle:
            conn.autocommit = True  # client-side only: no round trip
        try:
            return conn.execute(query, params, binary=True).fetchall()
        except BaseException as exc:
            if idle:
                self._drop_if_broken()
            else:
                self._fail(exc)
            raise
        finally:
            if idle and not conn.closed:
                conn.autocommit = False

    def _fail(self, exc: BaseException) -> None:
        # The server aborts the whole transaction on any error; remember it so
        # that commit() cannot report success for the operations before it.
        if self._failed is None:
            self._failed = exc
        self._drop_if_broken()

    def _drop_if_broken(self) -> None:
        conn = self._conn
        if conn is not None and conn.broken:
            self._conn = None
            self._pool.putconn(conn)  # the pool discards it and connects anew

    def commit(self) -> None:
        conn = self._conn
        if self._failed is not None:
            failed, self._failed = self._failed, None
            self._notify = False
            if conn is not None and not conn.broken:
                conn.rollback()
            raise RolledBackError(f"rolled back after a failed operation: {failed!r}") from failed
        if conn is None:
            return
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                if self._notify:
                    # One round trip for both: the NOTIFY is sent with the commit.
                    with conn.pipeline():
                        conn.execute("SELECT pg_notify(%s, '')", [self._channel])
                        conn.commit()
                else:
                    conn.commit()
            if self._clock is None and time.monotonic() - self._measured_at > _OFFSET_REFRESH:
                conn.autocommit = True
                try:
                    self._measure_offset(conn)
                finally:
                    conn.autocommit = False
        except BaseException:
            self._drop_if_broken()
            raise
        finally:
            self._notify = False

    def close(self) -> None:
        """Stop the listener and close every connection. Work not committed is
        rolled back."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if isinstance(self._pool, NotOpen):
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            if not conn.broken:
                conn.rollback()  # the pool would too, with a warning
            self._pool.putconn(conn)
        self._pool.close()

    # -- time ----------------------------------------------------------------------

    def now(self) -> float:
        if self._clock is not None:
            return self._clock.now()
        return time.time() + self._offset

    def _now_param(self) -> int | None:
        """The ``now`` of a statement: None means the database's own clock."""
        return None if self._clock is None else round(self._clock.now() * _US)

    def _measure_offset(self, conn: Conn) -> None:
        # now() is asked often and from other threads (the waker): it reads
        # the local clock plus this offset rather than asking the database.
        before = time.time()
        row = conn.execute(_CLOCK).fetchone()
        after = time.time()
        if row is not None:
            self._offset = float(row[0]) - (before + after) / 2
        self._measured_at = time.monotonic()

    @property
    def poll_interval(self) -> float | None:
        return self._poll_interval

    def subscribe(self, wake: Callable[[], None]) -> None:
        if self._listener is not None:
            self._listener.stop()
        dsn = self._listen_dsn or self._dsn
        self._listener = _Listener(dsn, self._channel, wake, lambda: self._backend_pid)

    # -- writing -------------------------------------------------------------------

    def push(self, job: NewJob) -> uuid.UUID:
        return self.push_many([job])[0]

    def push_many(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        if not jobs:
            return []
        out: list[uuid.UUID | str] = []  # an id, or the unique key whose holder it is
        first_of_key: dict[str, uuid.UUID] = {}
        columns: dict[str, list[Any]] = {
            name: []
            for name in (
                "id",
                "queue",
                "name",
                "args",
                "run_at",
                "max_retries",
                "backoff_kind",
                "backoff_value",
                "backoff_max",
                "heartbeat",
                "lease",
                "timeout",
                "unique_key",
            )
        }
        (c_id, c_queue, c_name, c_args, c_run_at, c_max, c_kind, c_value, c_cap, c_hb, c_lease,
         c_timeout, c_key) = columns.values()  # fmt: skip
        for job in jobs:
            key = job.unique_key
            if key is not None:
                out.append(key)  # its id is known once the insert has told us
                if key in first_of_key:
                    continue  # a second job with one key in one batch: the first wins
            job_id = to_uuid(self._ids.next_int())
            if key is None:
                out.append(job_id)
            else:
                first_of_key[key] = job_id
            policy = job.policy
            c_id.append(job_id)
            c_queue.append(job.queue)
            c_name.append(job.name)
            c_args.append(job.args)
            c_run_at.append(None if job.run_at is None else round(job.run_at * _US))
            c_max.append(policy.max_retries.limit)
            c_kind.append(policy.backoff.kind)
            c_value.append(policy.backoff.value)
            c_cap.append(policy.backoff.max)
            c_hb.append(policy.heartbeat_interval)
            c_lease.append(round(STALE_HEARTBEATS * policy.heartbeat_interval * _US))
            c_timeout.append(policy.timeout)
            c_key.append(key)
        params: dict[str, Any] = {"now": self._now_param(), **columns}
        self._notify = True
        if not first_of_key:
            self._write(self._sql.insert, params)
            return cast(list[uuid.UUID], out)
        inserted = {row[0] for row in self._write(self._sql.insert_returning, params)}
        # A key a live job already holds: that job's id instead of ours.
        holder = {key: job_id for key, job_id in first_of_key.items() if job_id in inserted}
        missing = [key for key in first_of_key if key not in holder]
        if missing:
            holder.update(self._live_holders(missing, jobs))
        return [holder[item] if isinstance(item, str) else item for item in out]

    def _live_holders(self, keys: list[str], jobs: Sequence[NewJob]) -> dict[str, uuid.UUID]:
        rows = self._write(self._sql.live_keys, {"keys": keys, "now": None}).fetchall()
        found: dict[str, uuid.UUID] = {row[0]: row[1] for row in rows}
        gone = [key for key in keys if key not in found]
        if gone:
            # The holder finished between our insert and our look-up (another
            # host settled it): push again, which now takes the key.
            retry: dict[str | None, NewJob] = {}
            for job in jobs:
                if job.unique_key in gone:
                    retry.setdefault(job.unique_key, job)
            for key, job_id in zip(gone, self.push_many([retry[k] for k in gone]), strict=True):
                found[key] = job_id
        return found

    def pop(self, queue: str, runner: str, limit: int = 1) -> list[Claim]:
        return self._complete_and_pop([], [(queue, runner, limit)], may_commit=False)[1][0]

    def heartbeat(self, runner: str, job_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        wanted = list(job_ids)
        if not wanted:
            return []
        rows = self._write(
            self._sql.heartbeat, {"ids": wanted, "runner": runner, "now": self._now_param()}
        )
        held = {row[0] for row in rows}
        return [job_id for job_id in wanted if job_id not in held]

    def complete(self, job_id: uuid.UUID, runner: str, result: JobResult) -> Disposition:
        target = {"id": job_id, "runner": runner}
        if result.outcome is Outcome.SUCCESS:
            gone = self._write(self._sql.finish_one, target).fetchone()
            return Disposition.NOT_HELD if gone is None else Disposition.FINISHED
        settled = self._settle(self._sql.held_one, target, result)
        return settled[0][1] if settled else Disposition.NOT_HELD

    def complete_and_pop(
        self, completions: Sequence[Completion], pops: Sequence[PopRequest]
    ) -> tuple[list[Disposition], list[list[Claim]]]:
        """The hot path is a few successes and a few pops of one queue: one
        statement, which commits by itself when no transaction is open (the
        StorageActor runs it first in a round). Other outcomes are settled
        first, one statement each, and then everything waits for commit();
        completions of distinct jobs do not depend on each other's order."""
        return self._complete_and_pop(completions, pops, may_commit=True)

    def _complete_and_pop(
        self, completions: Sequence[Completion], pops: Sequence[PopRequest], *, may_commit: bool
    ) -> tuple[list[Disposition], list[list[Claim]]]:
        settled: list[Disposition | None] = [None] * len(completions)
        done: dict[uuid.UUID, int] = {}  # a success to delete -> its place
        distinct = len({job_id for job_id, _, _ in completions}) == len(completions)
        for at, (job_id, runner, result) in enumerate(completions):
            if result.outcome is Outcome.SUCCESS and distinct:
                done[job_id] = at
            else:
                settled[at] = self.complete(job_id, runner, result)
                may_commit = False
        by_queue: dict[str, list[int]] = {}
        for at, (queue, _, _) in enumerate(pops):
            by_queue.setdefault(queue, []).append(at)
        popped: list[list[Claim]] = [[] for _ in pops]
        if done and not by_queue:
            by_queue[""] = []  # successes alone: the statement with no claims
        run = self._alone if may_commit and len(by_queue) == 1 else self._rows
        for queue, places in by_queue.items():
            slots = [pops[at][1] for at in places for _ in range(pops[at][2])]
            params: dict[str, Any] = {
                "done": _uuid_array(done),
                "done_by": _text_array([completions[at][1] for at in done.values()]),
                "queue": queue,
                "slots": _text_array(slots),
                "total": len(slots),
                "now": self._now_param(),
            }
            rows = run(self._sql.complete_and_pop, params)
            deleted = {row[1] for row in rows if row[0] == 0}
            for job_id, at in done.items():
                settled[at] = Disposition.FINISHED if job_id in deleted else Disposition.NOT_HELD
            done = {}
            claims = sorted((row for row in rows if row[0] != 0), key=lambda row: row[0])
            slot = 0
            for at in places:
                share = max(pops[at][2], 0)
                popped[at] = [Claim._make(row[1:]) for row in claims[slot : slot + share]]
                slot += share
        return [d if d is not None else Disposition.NOT_HELD for d in settled], popped

    def release(self, runner: str, result: JobResult) -> list[tuple[uuid.UUID, Disposition]]:
        return self._settle(self._sql.held_all, {"runner": runner}, result)

    def _settle(
        self, held: LiteralString, target: dict[str, Any], result: JobResult
    ) -> list[tuple[uuid.UUID, Disposition]]:
        """Settle the held rows ``held`` selects with ``result``, as
        storage.settle decides; (id, disposition) in id order."""
        rows = self._write(held, target).fetchall()
        settled, finished = [], []
        apply: dict[str, list[Any]] = {k: [] for k in ("ids", "dead", "counts", "delays", "errors")}
        for job_id, retry_count, limit, kind, value, cap in rows:
            max_retries, backoff = self._policy(limit, kind, value, cap)
            verdict = settle(
                result,
                retry_count=retry_count,
                max_retries=max_retries,
                backoff=backoff,
                unregistered_delay_us=self._unregistered_delay_us,
            )
            settled.append((job_id, verdict.disposition))
            if verdict.disposition is Disposition.FINISHED:
                finished.append(job_id)
                continue
            if verdict.disposition is not Disposition.DEAD and verdict.delay_us is None:
                self._notify = True  # due again at once: another host may take it
            apply["ids"].append(job_id)
            apply["dead"].append(verdict.disposition is Disposition.DEAD)
            apply["counts"].append(verdict.retry_count)
            apply["delays"].append(verdict.delay_us)
            apply["errors"].append(verdict.error)
        if finished:
            self._write(self._sql.delete, {"ids": finished})
        if apply["ids"]:
            self._write(self._sql.apply, {**apply, "now": self._now_param()})
        return settled

    def _policy(
        self, limit: int | None, kind: str, value: float, cap: float
    ) -> tuple[MaxRetries, Backoff]:
        """The retry values of a row's columns, one object per distinct value."""
        backoff = self._backoffs.get((kind, value, cap))
        if backoff is None:
            backoff = Backoff(kind, value, cap)  # type: ignore[arg-type]
            self._backoffs[(kind, value, cap)] = backoff
        max_retries = self._max_retries.get(limit)
        if max_retries is None:
            max_retries = self._max_retries[limit] = MaxRetries(limit)
        return max_retries, backoff

    def requeue(self, job_id: uuid.UUID) -> bool:
        params: dict[str, Any] = {"id": job_id, "keep_key": True, "now": self._now_param()}
        # A savepoint: another host may take the key between our check and
        # our update, and that unique violation must not abort the transaction.
        self._write("SAVEPOINT jobarbiter_requeue", {})
        try:
            row = self._connection().execute(self._sql.requeue, params, binary=True).fetchone()
        except psycopg.errors.UniqueViolation:
            self._write("ROLLBACK TO SAVEPOINT jobarbiter_requeue", {})
            params["keep_key"] = False
            row = self._write(self._sql.requeue, params).fetchone()
        except BaseException as exc:
            self._fail(exc)
            raise
        self._write("RELEASE SAVEPOINT jobarbiter_requeue", {})
        if row is None:
            return False
        self._notify = True
        return True

    def purge_dead(self, older_than: float | None = None) -> int:
        older = None if older_than is None else round(older_than * _US)
        cursor = self._write(self._sql.purge, {"older": older, "now": self._now_param()})
        return cursor.rowcount

    # -- reading -------------------------------------------------------------------

    def info(self, job_id: uuid.UUID) -> JobInfo | None:
        rows = self._alone(self._sql.info, {"id": job_id})
        return self._info(rows[0], 0) if rows else None

    def list(
        self,
        *,
        queue: str | None = None,
        status: Status | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[JobInfo]:
        params = {
            "queue": queue,
            "status": None if status is None else _STATUS_CODE[status],
            "offset": offset,
            "limit": limit,
        }
        return [self._info(row, 0) for row in self._alone(self._sql.list, params)]

    def stats(self) -> dict[str, QueueStats]:
        return {
            queue: QueueStats(pending=pending, running=running, dead=dead, scheduled=later)
            for queue, pending, running, dead, later in self._alone(
                self._sql.stats, {"now": self._now_param()}
            )
        }

    def next_due(self, queue: str) -> float | None:
        rows = self._alone(self._sql.next_due, {"queue": queue})
        due = rows[0][0] if rows else None
        return None if due is None else int(due) / _US

    # -- rows to records -------------------------------------------------------------

    def _info(self, row: Row, start: int) -> JobInfo:
        (job_id, name, queue, args, retry_count, max_retries, kind, value, run_at, heartbeat,
         timeout, status, last_error, runner, unique_key, cap) = row[start:]  # fmt: skip
        limit, backoff = self._policy(max_retries, kind, value, cap)
        return JobInfo.stored(
            id=job_id,
            name=name,
            queue=queue,
            args=args,
            policy=Policy(limit, backoff, heartbeat, timeout),
            retry_count=retry_count,
            run_at_us=run_at,
            status=_STATUS[status],
            last_error=last_error,
            runner=runner,
            unique_key=unique_key,
        )


# Arrays travel as literals: psycopg dumps a list element by element, which on
# the claim path cost more host time than the rest of the statement.
def _uuid_array(ids: Iterable[uuid.UUID]) -> str:
    return "{" + ",".join(map(str, ids)) + "}"


def _text_array(items: Iterable[str]) -> str:
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


# -- notifications -----------------------------------------------------------------


class _Listener:
    """LISTENs on its own connection and calls ``wake()`` for each NOTIFY that
    did not come from our own connection; reconnects if the server goes away."""

    def __init__(
        self, dsn: str, channel: str, wake: Callable[[], None], own_pid: Callable[[], int]
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._wake = wake
        self._own_pid = own_pid
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"jobarbiter-listen-{channel}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(_q(f"LISTEN {quote_ident(self._channel)}"))
                    # Notifications sent while we were not listening are lost.
                    self._wake()
                    while not self._stopped.is_set():
                        for note in conn.notifies(timeout=0.5):
                            if note.pid != self._own_pid():
                                self._wake()
            except psycopg.Error as exc:
                log.warning("listener connection lost; reconnecting", error=str(exc))
                self._stopped.wait(1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m storage.postgres",
        description="Print the SQL that creates or updates jobarbiter's PostgreSQL schema.",
    )
    parser.add_argument("--schema", default="jobarbiter", help="schema name (default: jobarbiter)")
    args = parser.parse_args(argv)
    print(migration_sql(args.schema), end="")


if __name__ == "__main__":
    main()
