"""PostgresStorage: jobs in one PostgreSQL table, shared by many hosts.

Every host process owns one StorageActor and so one PostgresStorage; any
number of hosts may point at the same database and schema. Apply the schema
on open (automatic) or beforehand with ``python -m storage.postgres``.

Schema (``<schema>.jobs``, one row per job that is live, dead, or ended
and kept for its result_ttl)::

    id          uuid    UUIDv7 made by the pushing host (storage.ids)
    queue       text    COLLATE "C", so queues sort as Python sorts str
    status      int2    0 pending, 1 running, 2 dead, 3 succeeded, 4 cancelled,
                        5 waiting (for its parents)
    run_at      int8    µs since the epoch: when the job is due
    priority    int8    among due jobs of a queue, higher is claimed first
    mark        int8    running: the claim's expiry (µs); dead: time of death
    runner      text    the holder while running, else NULL
    lease_us    int8    5 x heartbeat interval, in µs, fixed at push
    live_key    text    = unique_key while this job holds the key, else NULL;
                        a CHECK keeps it NULL on every ended row
    result      bytea   succeeded: what ``run`` returned (msgpack), else NULL
    started_at  int8    µs: when its latest claim was taken
    finished_at int8    µs: when it succeeded, died or was cancelled
    expires_at  int8    µs: succeeded or cancelled: until when it is kept
    result_ttl  float8  seconds an ended record is kept (0: deleted at once)
    parents     uuid[]  the jobs it was queued after (NULL: none)
    waiting_on  int4    while waiting: how many parents have not succeeded
    has_children bool   a child was ever queued after it
    ...         the rest of the policy (max_retries, backoff, heartbeat,
                timeout), args, retry_count, last_error, unique_key

Times are integer microseconds so that ordering and the "strictly older is
stale" rule are exact, as in MemoryStorage. They come from the database clock
(``statement_timestamp()``) so that hosts with skewed clocks agree, unless a
clock is injected (tests), in which case that clock provides every time.

``<schema>.queues`` holds the stored pauses: a row per queue ever paused,
``paused_at`` (µs) while it is paused, NULL once resumed.

``<schema>.schedule_ticks`` holds the newest tick (µs) queued per recurring
schedule. ``push_tick`` moves it forward with one upsert whose update is
conditional (``WHERE tick < excluded.tick``), in the transaction that
inserts the tick's job: a second host pushing the same tick waits on the
row (or on the first's insert of it) until that transaction ends, then sees
the committed tick and stores nothing. No leader, no advisory lock.

Partial indexes serve each path: pending ``(queue, priority, run_at, id)``, held
``(queue, mark, id)``, held by runner ``(runner)``, dead ``(mark, id)`` and
``(queue, id)``, cancelled ``(queue, id)``, pending retries ``(queue,
run_at)`` (jobs that failed and wait out a backoff: a fresh job never enters
it), kept
records ``(expires_at)`` (what ``expire`` walks, never touching live rows),
and a unique index on ``live_key`` that makes "one live job per key" a
constraint. ``live_key`` is set only on pending and running rows (a CHECK
says so), so the index covers live jobs alone and a job that ends frees its
key; the index keeps the predicate it had, so that hosts of the previous
version, whose inserts name it in ON CONFLICT, go on working.

Counts (``stats``): one statement finds the queues that hold a live or dead
job by a skip scan of each status's partial index (a descent per queue, so
kept records are never read) and reads each count along its index up to
``count_cap + 1`` rows; a count that reaches it is the planner's estimate
(``EXPLAIN`` of that count's query: the table's statistics, as fresh as its
last ANALYZE; extended statistics on (queue, status) let it see which queue
holds which jobs), named in ``QueueStats.estimated``. See storage.counts.
The same statement finds the queue's priority levels as a claim does (see
Priorities) and, only when there are several, counts each level's range
of the pending index the same way (``pending_by_priority``).
No counter row is kept: every writer would queue behind it.

Claim protocol: ``pop`` is one statement that locks candidates with
``FOR UPDATE SKIP LOCKED`` (stale claims first by expiry, then due pending
jobs by (priority descending, run_at, id)) and updates them to running with
a fresh lease, so two
hosts popping at once never take the same row: the second skips rows the
first has locked, and re-checks rows the first has since committed. Heartbeat,
complete and release only touch rows whose ``runner`` is the caller, so a
claim taken over by another runner is not settled twice. A dead host's claims
come back through the same stale-claim path after five heartbeat intervals;
there is no recovery on open, because other hosts may be alive.

Priorities: the pending index holds priority before run_at, so that a
claim never walks past jobs not due yet: the statement finds the queue's
priority levels by a loose index scan (a recursive CTE, one backward index
probe per level: ``max(priority) ... priority < the last``), and for each
level, highest first, reads a range (priority =, run_at <=) in (run_at, id)
order, through LATERAL; the outer LIMIT stops the recursion as soon as the
claim is filled. A claim costs 2 + L index probes at most for L levels
present among the queue's pending jobs: few in practice (one at the default
priority), and a queue with thousands of distinct priorities pays that many
probes per claim. ``next_due`` reads each level's head the same way.
Hosts of the version before priorities still claim from the new index
(queue =, then a sort), in run_at order.

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

Settling a round: the round statement (``complete_and_pop``) stores the
successes itself: an UPDATE that keeps each row as succeeded (its value from
one bytea array parameter for the batch, finished_at the statement's time,
expires_at finished_at + result_ttl), and a DELETE of those whose result_ttl
is 0, both matched on (id, runner), then the claims: one statement per round
whatever it holds. Other outcomes lock the held rows, storage.settle decides
each in Python, and one ``UPDATE ... FROM unnest`` stores every decision.
``expire`` deletes kept records past their expiry along the expiry index,
SKIP LOCKED (so that hosts expiring at once never wait for each other), in
batches, for at most EXPIRE_BUDGET seconds a call; ``info`` and ``list``
hide a record past its expiry whether or not it has been deleted yet.

Notifications, all sent by the transaction that makes the change, so they are
heard only once it is committed (payloads start with the sending storage's
origin token, by which a listener skips its own, PgBouncer or not):

* ``jobarbiter_<schema>`` (wake): a job pushed or put back due, or a pause
  stored or cleared (the runtime reads ``paused()`` again when woken);
* ``jobarbiter_<schema>_ended``: ids of jobs that ended (succeeded, dead or
  cancelled), comma-separated, at most ENDED_PER_NOTIFY per notification so
  that a payload stays under NOTIFY's 8000 bytes;
* ``jobarbiter_<schema>_cancel``: a running job was cancelled: JSON
  ``[origin, job id, runner, reason]``, the reason cut to fit.

Dependencies (storage/dependencies.py): a waiting child (status 5) is found
from its parent through a GIN index on ``parents`` over waiting rows only.
Hosts agree through row locks: a push of a child first marks each parent
``has_children`` (an UPDATE, so it waits for a parent being settled, and
reads what it became), and a parent so marked is never settled by the round
statement above (its ``NOT has_children``), only by the locking path, whose
next statements take a fresh snapshot and so see every child whose push
committed while they waited. There, a success counts down each waiting
child's ``waiting_on`` (pending at 0; concurrent parents of one child
serialise on its row), and a death or a cancel walks the waiting subtree in
one recursive statement, then cancels it in another with the reasons
storage.dependencies words, and walks again from what it cancelled (a child
pushed meanwhile under a cancelled one) until nothing is left. Children
released wake the other hosts; children cancelled are told as ended.

Listing is by keyset: ``id > after ORDER BY id LIMIT n``, never OFFSET,
one statement per combination of filters, each with its status as a literal
so that the planner may read that status's partial index (its queue's range,
in id order for the dead and the cancelled; pending and running entries are
in due or expiry order, so it sorts what it finds), or walk the primary key
from ``after`` where most rows match, as succeeded records, most of a busy
table, do. No index in id order covers pending or running rows: it would
cost every job a write on its hot path; nor does one cover the job name, so
a ``name`` filter is tested on each row a page reads (a rare name's page
reads on until it has ``limit`` of them or meets the end).

``subscribe`` starts a listener thread on its own connection (``listen_dsn``
behind a pooler) that LISTENs on the wake channel, and on the other two when
their callbacks are given, and calls them. Delays (retries, schedules)
elsewhere are caught by ``poll_interval``; so is anything sent while the
listener was reconnecting, when it calls ``wake()`` once.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import secrets
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

from storage import dependencies
from storage.clock import Clock
from storage.contract import (
    STALE_HEARTBEATS,
    Completion,
    NotOpen,
    PopRequest,
    not_open,
    page_is_empty,
    walked_status,
)
from storage.counts import COUNT_CAP, Read, check_cap, queue_stats
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
)
from storage.policy import Backoff, MaxRetries, Policy
from storage.settle import settle

log = EventLog("storage.postgres")

_US = 1_000_000
_PENDING, _RUNNING, _DEAD, _SUCCEEDED, _CANCELLED, _WAITING = 0, 1, 2, 3, 4, 5
_STATUS = {
    _PENDING: Status.PENDING,
    _RUNNING: Status.RUNNING,
    _DEAD: Status.DEAD,
    _SUCCEEDED: Status.SUCCEEDED,
    _CANCELLED: Status.CANCELLED,
    _WAITING: Status.WAITING,
}
_STATUS_CODE = {status: code for code, status in _STATUS.items()}
_SETTLED_STATUS = {
    Disposition.FINISHED: _SUCCEEDED,
    Disposition.CANCELLED: _CANCELLED,
    Disposition.DEAD: _DEAD,
    Disposition.RETRYING: _PENDING,
    Disposition.REQUEUED: _PENDING,
}
_LOCK_NAMESPACE = 0x6A6F6261  # "joba": first key of the migration advisory lock
_OFFSET_REFRESH = 60.0  # seconds between measurements of the database clock
# expire() deletes kept records EXPIRE_BATCH at a time (a statement of its
# own when no transaction is open, so its locks are short), batch after batch
# while they come back full, for at most EXPIRE_BUDGET seconds: it keeps up
# with tens of thousands of jobs a second, and a backlog (hosts were down)
# never stalls the actor for long.
EXPIRE_BATCH = 1000
EXPIRE_BUDGET = 0.2
# A text UUID is 36 bytes: 200 of them, commas and the origin stay well under
# the 8000 bytes a NOTIFY payload may hold.
ENDED_PER_NOTIFY = 200
_PAYLOAD_BYTES = 7999  # NOTIFY refuses a payload of 8000 bytes or more

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
    # Kept records (issue 13): results, times, a per-job result_ttl (jobs
    # stored before it get Policy's default), statuses 3 succeeded and 4
    # cancelled. Dead jobs died at their mark. An ended row never holds its
    # unique key (the CHECK), so the unique index covers live jobs only.
    [
        """ALTER TABLE {s}.jobs ADD COLUMN result bytea, ADD COLUMN started_at bigint,
    ADD COLUMN finished_at bigint, ADD COLUMN expires_at bigint,
    ADD COLUMN result_ttl double precision NOT NULL DEFAULT 600""",
        "UPDATE {s}.jobs SET finished_at = mark WHERE status = 2",
        "UPDATE {s}.jobs SET live_key = NULL WHERE status NOT IN (0, 1) AND live_key IS NOT NULL",
        """ALTER TABLE {s}.jobs ADD CONSTRAINT jobs_key_live
    CHECK (live_key IS NULL OR status IN (0, 1))""",
        "CREATE INDEX jobs_expires ON {s}.jobs (expires_at) WHERE status IN (3, 4)",
    ],
    # Stored pauses; keyset listing of the dead and the cancelled in id order
    # (few rows: no job passes through these on its way to success).
    [
        """CREATE TABLE {s}.queues (
    queue text COLLATE "C" PRIMARY KEY,
    paused_at bigint
)""",
        "CREATE INDEX jobs_dead_ids ON {s}.jobs (queue, id) WHERE status = 2",
        "CREATE INDEX jobs_cancelled ON {s}.jobs (queue, id) WHERE status = 4",
    ],
    # Counts that stay cheap on a big table (storage.counts): the retries
    # waiting out a backoff get a range of their own (a fresh job never
    # enters it), and the planner learns how queues and statuses go together,
    # for its estimates of counts above the cap.
    [
        "CREATE INDEX jobs_retrying ON {s}.jobs (queue, run_at)"
        " WHERE status = 0 AND retry_count > 0",
        "CREATE STATISTICS {s}.jobs_queue_status (mcv) ON queue, status FROM {s}.jobs",
    ],
    # Priorities: jobs stored before have the default, 0; the pending index
    # orders each queue by priority, then run_at (see Priorities).
    [
        "ALTER TABLE {s}.jobs ADD COLUMN priority bigint NOT NULL DEFAULT 0",
        "DROP INDEX {s}.jobs_pending",
        "CREATE INDEX jobs_pending ON {s}.jobs (queue, priority, run_at, id) WHERE status = 0",
    ],
    # Dependencies: a child's parents and how many it still waits for, a
    # parent's mark that it has children, status 5 (waiting), which holds its
    # unique key like the other live ones.
    [
        """ALTER TABLE {s}.jobs ADD COLUMN parents uuid[],
    ADD COLUMN waiting_on integer NOT NULL DEFAULT 0,
    ADD COLUMN has_children boolean NOT NULL DEFAULT false""",
        "CREATE INDEX jobs_waiting ON {s}.jobs USING gin (parents) WHERE status = 5",
        "CREATE INDEX jobs_waiting_ids ON {s}.jobs (queue, id) WHERE status = 5",
        """ALTER TABLE {s}.jobs DROP CONSTRAINT jobs_key_live,
    ADD CONSTRAINT jobs_key_live CHECK (live_key IS NULL OR status IN (0, 1, 5))""",
    ],
    # Recurring schedules: the newest tick queued per schedule (push_tick).
    [
        """CREATE TABLE {s}.schedule_ticks (
    name text COLLATE "C" PRIMARY KEY,
    tick bigint NOT NULL
)""",
    ],
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

# A kept record's expiry, set when it ends; result_ttl is float seconds.
_EXPIRES = "{now} + (j.result_ttl * 1000000)::bigint"

# Not past its expiry: what info and list show.
_VISIBLE = "(expires_at IS NULL OR expires_at > {now})"

_COLUMNS = (
    "id, name, queue, args, retry_count, max_retries, backoff_kind, backoff_value, run_at,"
    " heartbeat_interval, timeout, status, last_error, runner, unique_key, backoff_max,"
    " result_ttl, result, started_at, finished_at, expires_at, priority, parents"
)


# What a Claim is built from, in this order.
_CLAIM = "id, name, queue, args, retry_count, timeout, parents"


def _returning(prefix: str) -> str:
    return ", ".join(f"{prefix}{column.strip()}" for column in _CLAIM.split(","))


_INSERT = """INSERT INTO {jobs} (id, queue, name, args, status, run_at, max_retries,
    backoff_kind, backoff_value, backoff_max, heartbeat_interval, lease_us, timeout, unique_key,
    live_key, result_ttl, priority)
SELECT u.id, u.queue, u.name, u.args, 0, coalesce(u.run_at, {now}), u.max_retries,
    u.backoff_kind, u.backoff_value, u.backoff_max, u.heartbeat_interval, u.lease_us, u.timeout,
    u.unique_key, u.unique_key, u.result_ttl, u.priority
FROM unnest(%(id)s::uuid[], %(queue)s::text[], %(name)s::text[], %(args)s::bytea[],
    %(run_at)s::bigint[], %(max_retries)s::bigint[], %(backoff_kind)s::text[],
    %(backoff_value)s::float8[], %(backoff_max)s::float8[], %(heartbeat)s::float8[],
    %(lease)s::bigint[], %(timeout)s::float8[], %(unique_key)s::text[], %(ttl)s::float8[],
    %(priority)s::bigint[])
    AS u(id, queue, name, args, run_at, max_retries, backoff_kind, backoff_value, backoff_max,
        heartbeat_interval, lease_us, timeout, unique_key, result_ttl, priority)
ON CONFLICT (live_key) WHERE live_key IS NOT NULL DO NOTHING"""

# The priority levels among a queue's pending jobs, highest first, by a loose
# scan of the pending index: one backward probe per level, made only while
# the query that reads it asks for more (the last row is NULL).
_LEVELS = """levels AS (
    SELECT max(priority) AS p FROM {jobs} WHERE queue = %(queue)s AND status = 0
    UNION ALL
    SELECT (SELECT max(priority) FROM {jobs}
        WHERE queue = %(queue)s AND status = 0 AND priority < l.p)
    FROM levels l WHERE l.p IS NOT NULL
)"""

# A batch with dependencies: each row's status (0, 5, or 4: cancelled at
# push), parents (an array literal each), waiting count, error and whether
# a later job of the batch waits for it.
_INSERT_CHILDREN = """INSERT INTO {jobs} (id, queue, name, args, status, run_at, max_retries,
    backoff_kind, backoff_value, backoff_max, heartbeat_interval, lease_us, timeout, unique_key,
    live_key, result_ttl, parents, waiting_on, has_children, last_error, finished_at, expires_at,
    priority)
SELECT u.id, u.queue, u.name, u.args, u.status, coalesce(u.run_at, {now}), u.max_retries,
    u.backoff_kind, u.backoff_value, u.backoff_max, u.heartbeat_interval, u.lease_us, u.timeout,
    u.unique_key, CASE WHEN u.status <> 4 THEN u.unique_key END, u.result_ttl,
    u.parents::uuid[], u.waiting_on, u.has_children, u.error,
    CASE WHEN u.status = 4 THEN {now} END,
    CASE WHEN u.status = 4 THEN {now} + (u.result_ttl * 1000000)::bigint END, u.priority
FROM unnest(%(id)s::uuid[], %(queue)s::text[], %(name)s::text[], %(args)s::bytea[],
    %(run_at)s::bigint[], %(max_retries)s::bigint[], %(backoff_kind)s::text[],
    %(backoff_value)s::float8[], %(backoff_max)s::float8[], %(heartbeat)s::float8[],
    %(lease)s::bigint[], %(timeout)s::float8[], %(unique_key)s::text[], %(ttl)s::float8[],
    %(status)s::int2[], %(parents)s::text[], %(waiting_on)s::int4[], %(has_children)s::bool[],
    %(error)s::text[], %(priority)s::bigint[])
    AS u(id, queue, name, args, run_at, max_retries, backoff_kind, backoff_value, backoff_max,
        heartbeat_interval, lease_us, timeout, unique_key, result_ttl, status, parents,
        waiting_on, has_children, error, priority)
ON CONFLICT (live_key) WHERE live_key IS NOT NULL DO NOTHING"""

# The parents a push names, marked and so locked till its commit (a parent
# being settled elsewhere is waited for, and read as it ended up).
_MARK_PARENTS = """UPDATE {jobs} j SET has_children = true
WHERE j.id = ANY(%(ids)s::uuid[]) AND {visible}
RETURNING j.id, j.status"""

# Parents that succeeded: each waiting child counts them down, pending at 0.
_RELEASE = """WITH hits AS (
    SELECT c.id, count(*)::int4 AS n
    FROM unnest(%(ids)s::uuid[]) AS d(id)
    JOIN {jobs} c ON c.status = 5 AND c.parents @> ARRAY[d.id]
    GROUP BY c.id
)
UPDATE {jobs} c SET waiting_on = c.waiting_on - h.n,
    status = CASE WHEN c.waiting_on - h.n <= 0 THEN 0 ELSE 5 END
FROM hits h
WHERE c.id = h.id AND c.status = 5
RETURNING c.queue, c.status"""

# The waiting subtree under parents that ended badly: each child once, with
# the parent it was reached from and the root (and how the root ended).
_WALK = """WITH RECURSIVE tree(id, parent, root, ended) AS (
    SELECT c.id, f.id, f.root, f.ended
    FROM unnest(%(ids)s::uuid[], %(roots)s::uuid[], %(ended)s::int2[]) AS f(id, root, ended)
    JOIN {jobs} c ON c.status = 5 AND c.parents @> ARRAY[f.id]
  UNION
    SELECT c.id, t.id, t.root, t.ended
    FROM tree t JOIN {jobs} c ON c.status = 5 AND c.parents @> ARRAY[t.id]
)
SELECT DISTINCT ON (id) id, parent, root, ended FROM tree ORDER BY id, parent"""

# Cancel walked children that still wait: kept for their ttl, or deleted.
_CANCEL_CHILDREN = """WITH u AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(reasons)s::text[]) AS u(id, reason)
), kept AS (
    UPDATE {jobs} j SET status = 4, last_error = u.reason, live_key = NULL, mark = 0,
        started_at = NULL, finished_at = {now}, expires_at = {expires}
    FROM u WHERE j.id = u.id AND j.status = 5 AND j.result_ttl > 0
    RETURNING j.id, j.queue, u.reason
), gone AS (
    DELETE FROM {jobs} j USING u
    WHERE j.id = u.id AND j.status = 5 AND j.result_ttl <= 0
    RETURNING j.id, j.queue, u.reason
)
SELECT * FROM kept UNION ALL SELECT * FROM gone"""

# One round of runners' messages in one statement: store the jobs completed
# with success by their holders (``done``: kept as succeeded with the value of
# the same place in ``results``, or deleted when their result_ttl is 0), tell
# the other hosts they ended, then claim up to ``total`` jobs, stale claims
# first (earliest expiry), then due pending jobs, level by level from the
# highest priority (``levels``; LATERAL reads each level's due range in
# (run_at, id) order, and the LIMIT outside stops at the first level that
# fills the claim). The claims are put in that order in one array
# (``picked``) and the n-th goes to ``slots[n]``, the runner of the n-th job
# asked for, so the first request gets the first jobs, as consecutive pops
# would. The UPDATE finds them by the primary key, id = ANY(the array): a
# join with a set of claims may be planned as a merge along the whole
# primary key, from the oldest id to the newest claimed, and with
# priorities the newest job may be the first claimed. SKIP LOCKED:
# concurrent claims on other hosts never wait for or take the same rows. A
# row ``kept`` or ``gone`` settled is not a stale claim to take (the CTEs
# share one snapshot, so it is left out by hand). Both match (id, runner)
# through the primary key: ``runner`` is set exactly while a job runs, so
# they need no ``status = 1``, with which a plan may scan every held job of
# every host. They split the rows by result_ttl, so no row is changed twice.
# (A join with unnest() of the arrays cost more than these lookups in the
# arrays, which hold a round's few completions.) ``note`` is read by the
# last SELECT only so that it runs: one pg_notify per ENDED_PER_NOTIFY ended
# ids (rows -1, which the caller skips). A parent (``has_children``) is left
# to the locking path: ``held_parents`` names it (rows -2). It looks only at
# the successes not stored (none, mostly: no look-up at all), and by a
# locking read, which sees the mark of a push that committed while ``kept``
# waited for its lock; the snapshot the CTEs share does not.
_COMPLETE_AND_POP = """WITH RECURSIVE kept AS (
    UPDATE {jobs} j SET status = 3, runner = NULL, live_key = NULL, mark = 0,
        result = (%(results)s::bytea[])[array_position(%(done)s::uuid[], j.id)],
        finished_at = {now}, expires_at = {expires}
    WHERE j.id = ANY(%(done)s::uuid[]) AND j.result_ttl > 0 AND NOT j.has_children
        AND j.runner = (%(done_by)s::text[])[array_position(%(done)s::uuid[], j.id)]
    RETURNING j.id
), gone AS (
    DELETE FROM {jobs} j
    WHERE j.id = ANY(%(done)s::uuid[]) AND j.result_ttl <= 0 AND NOT j.has_children
        AND j.runner = (%(done_by)s::text[])[array_position(%(done)s::uuid[], j.id)]
    RETURNING j.id
), done AS (
    SELECT id FROM kept UNION ALL SELECT id FROM gone
), held_parents AS (
    SELECT j.id, j.has_children AS parent FROM {jobs} j
    WHERE j.id = ANY(ARRAY(SELECT unnest(%(done)s::uuid[]) EXCEPT SELECT id FROM done))
        AND j.runner = (%(done_by)s::text[])[array_position(%(done)s::uuid[], j.id)]
    FOR UPDATE
), note AS (
    SELECT pg_notify(%(ended)s, %(origin)s || ':' || string_agg(e.id::text, ','))
    FROM (SELECT id, (row_number() OVER () - 1) / {per_notify} AS chunk FROM done) AS e
    GROUP BY e.chunk
), stale AS MATERIALIZED (
    SELECT id, mark AS k FROM {jobs}
    WHERE queue = %(queue)s AND status = 1 AND mark < {now}
        AND id NOT IN (SELECT id FROM done UNION ALL SELECT id FROM held_parents)
    ORDER BY mark, id LIMIT %(total)s
    FOR UPDATE SKIP LOCKED
), {levels}, due AS MATERIALIZED (
    SELECT d.id, l.p, d.k FROM levels l CROSS JOIN LATERAL (
        SELECT id, run_at AS k FROM {jobs}
        WHERE queue = %(queue)s AND status = 0 AND priority = l.p AND run_at <= {now}
        ORDER BY run_at, id LIMIT (SELECT %(total)s - count(*) FROM stale)
        FOR UPDATE SKIP LOCKED
    ) d
    LIMIT (SELECT %(total)s - count(*) FROM stale)
), picked AS (
    SELECT array_agg(id ORDER BY src, p DESC, k, id) AS ids
    FROM (SELECT id, 0 AS src, 0::bigint AS p, k FROM stale UNION ALL SELECT id, 1, p, k FROM due)
        AS u
), claimed AS (
    UPDATE {jobs} j SET status = 1, runner = (%(slots)s::text[])[array_position(p.ids, j.id)],
        mark = {now} + j.lease_us, started_at = {now}
    FROM picked p
    WHERE j.id = ANY(p.ids)
    RETURNING array_position(p.ids, j.id), {returning}
)
SELECT * FROM claimed
UNION ALL
SELECT 0, id, {nulls} FROM done
UNION ALL
SELECT -2, id, {nulls} FROM held_parents WHERE parent
UNION ALL
SELECT -1, NULL, {nulls} FROM note"""

_HEARTBEAT = """UPDATE {jobs} SET mark = {now} + lease_us
WHERE id = ANY(%(ids)s::uuid[]) AND status = 1 AND runner = %(runner)s
RETURNING id"""

_ONE = "id = %(id)s AND status = 1 AND runner = %(runner)s"
_ALL = "status = 1 AND runner = %(runner)s"

# Settling: completed successes (the hot path) are stored by the round
# statement above. Anything else locks the held rows (_HELD), storage.settle
# decides each, and one statement stores the decisions (_APPLY), another
# deletes the ended ones kept for no time: the rule lives in Python alone.
_HELD = """SELECT id, retry_count, max_retries, backoff_kind, backoff_value, backoff_max,
    result_ttl, has_children
FROM {jobs}
WHERE {target} ORDER BY id FOR UPDATE"""

# u.status: 0 pending again, 2 dead, 3 succeeded, 4 cancelled.
_APPLY = """UPDATE {jobs} j SET runner = NULL,
    status = u.status,
    retry_count = u.retry_count,
    last_error = coalesce(u.error, j.last_error),
    result = u.result,
    run_at = CASE WHEN u.delay IS NULL THEN j.run_at ELSE {now} + u.delay END,
    mark = CASE WHEN u.status = 2 THEN {now} ELSE 0 END,
    finished_at = CASE WHEN u.status = 0 THEN NULL ELSE {now} END,
    expires_at = CASE WHEN u.status >= 3 THEN {expires} END,
    live_key = CASE WHEN u.status = 0 THEN j.live_key END
FROM unnest(%(ids)s::uuid[], %(statuses)s::int2[], %(counts)s::int4[], %(delays)s::int8[],
    %(errors)s::text[], %(results)s::bytea[])
    AS u(id, status, retry_count, delay, error, result)
WHERE j.id = u.id"""

# cancel(): the record as it stands, locked, unless it is past its expiry.
_CANCEL_LOOK = """SELECT status, runner, result_ttl, has_children FROM {jobs} j
WHERE j.id = %(id)s AND (j.expires_at IS NULL OR j.expires_at > {now})
FOR UPDATE"""

_CANCEL_KEEP = """UPDATE {jobs} j SET status = 4, last_error = %(reason)s, runner = NULL,
    live_key = NULL, mark = 0, result = NULL, started_at = NULL, finished_at = {now},
    expires_at = {expires}
WHERE j.id = %(id)s"""

# At most EXPIRE_BATCH, along the expiry index; rows another host is
# expiring (locked) are its to delete.
_EXPIRE = """WITH gone AS (
    DELETE FROM {jobs} WHERE id IN (
        SELECT id FROM {jobs}
        WHERE status IN (3, 4) AND expires_at <= {now}
        ORDER BY expires_at LIMIT {batch}
        FOR UPDATE SKIP LOCKED)
    RETURNING 1
)
SELECT count(*) FROM gone"""

_NOTIFY = """SELECT pg_notify(n.channel, n.payload)
FROM unnest(%(channels)s::text[], %(payloads)s::text[]) AS n(channel, payload)"""

_DELETE = "DELETE FROM {jobs} WHERE id = ANY(%(ids)s::uuid[])"

# A requeued job holds its key again only if no live job took it meanwhile.
_REQUEUE = """UPDATE {jobs} j SET status = 0, retry_count = 0, mark = 0, run_at = {now},
    finished_at = NULL,
    live_key = CASE WHEN %(keep_key)s AND NOT EXISTS (
        SELECT 1 FROM {jobs} o WHERE o.live_key = j.unique_key) THEN j.unique_key END
WHERE j.id = %(id)s AND j.status = 2
RETURNING j.id"""

_PURGE = """DELETE FROM {jobs}
WHERE status = 2 AND (%(older)s::bigint IS NULL OR mark < {now} - %(older)s::bigint)"""

_INFO = "SELECT {columns} FROM {jobs} WHERE id = %(id)s AND {visible}"

# A page of list(): the filters are put in by _Statements.listing.
_LIST = "SELECT {columns} FROM {jobs} WHERE {where} ORDER BY id LIMIT %(limit)s"
_SCHEDULED = "(run_at > {now} AND retry_count = 0)"

_SET_PAUSED = """INSERT INTO {queues} AS q (queue, paused_at) VALUES (%(queue)s, {now})
ON CONFLICT (queue) DO UPDATE SET paused_at = coalesce(q.paused_at, excluded.paused_at)"""
_SET_RESUMED = "UPDATE {queues} SET paused_at = NULL WHERE queue = %(queue)s"
_PAUSED = "SELECT queue FROM {queues} WHERE paused_at IS NOT NULL"

# The queues with a live or dead job (kept records are left out, so a queue
# holding only those is absent): a skip scan of each status's partial index,
# one descent per queue. Then each queue's counts, each read along its
# index up to %(over)s rows (storage.counts), and its earliest run_at; the
# waiting (for their parents) last.
_STATS = """WITH RECURSIVE
pending(queue) AS (
    SELECT min(queue) FROM {jobs} WHERE status = 0
    UNION ALL
    SELECT (SELECT min(queue) FROM {jobs} WHERE status = 0 AND queue > p.queue)
    FROM pending p WHERE p.queue IS NOT NULL),
running(queue) AS (
    SELECT min(queue) FROM {jobs} WHERE status = 1
    UNION ALL
    SELECT (SELECT min(queue) FROM {jobs} WHERE status = 1 AND queue > r.queue)
    FROM running r WHERE r.queue IS NOT NULL),
dead(queue) AS (
    SELECT min(queue) FROM {jobs} WHERE status = 2
    UNION ALL
    SELECT (SELECT min(queue) FROM {jobs} WHERE status = 2 AND queue > d.queue)
    FROM dead d WHERE d.queue IS NOT NULL),
waiting(queue) AS (
    SELECT min(queue) FROM {jobs} WHERE status = 5
    UNION ALL
    SELECT (SELECT min(queue) FROM {jobs} WHERE status = 5 AND queue > w.queue)
    FROM waiting w WHERE w.queue IS NOT NULL),
queues(queue) AS (
    SELECT queue FROM pending UNION SELECT queue FROM running UNION SELECT queue FROM dead
    UNION SELECT queue FROM waiting)
SELECT q.queue,
    (SELECT count(*) FROM (SELECT FROM {jobs}
        WHERE status = 0 AND queue = q.queue LIMIT %(over)s) c),
    (SELECT count(*) FROM (SELECT FROM {jobs}
        WHERE status = 1 AND queue = q.queue LIMIT %(over)s) c),
    (SELECT count(*) FROM (SELECT FROM {jobs}
        WHERE status = 2 AND queue = q.queue LIMIT %(over)s) c),
    s.n,
    -- The due and the retrying only when the scheduled reach the cap: the
    -- rule needs them then alone (a CASE runs a subquery only when reached).
    CASE WHEN s.n >= %(over)s THEN (SELECT count(*) FROM (SELECT FROM unnest(lv.ps) v(p),
        LATERAL (SELECT FROM {jobs} WHERE status = 0 AND queue = q.queue AND priority = v.p
            AND run_at <= {now} LIMIT %(over)s) x LIMIT %(over)s) c) END,
    CASE WHEN s.n >= %(over)s THEN (SELECT count(*) FROM (SELECT FROM {jobs}
        WHERE status = 0 AND retry_count > 0 AND queue = q.queue AND run_at > {now}
        LIMIT %(over)s) c) END,
    (SELECT min(h.run_at) FROM unnest(lv.ps) v(p), LATERAL (SELECT run_at FROM {jobs}
        WHERE status = 0 AND queue = q.queue AND priority = v.p ORDER BY run_at LIMIT 1) h),
    {now},
    (SELECT count(*) FROM (SELECT FROM {jobs}
        WHERE status = 5 AND queue = q.queue LIMIT %(over)s) c),
    lv.ps,
    -- Each level's count only when there are several (see storage.counts).
    CASE WHEN cardinality(lv.ps) > 1 THEN ARRAY(SELECT (SELECT count(*) FROM (SELECT FROM {jobs}
        WHERE status = 0 AND queue = q.queue AND priority = v.p LIMIT %(over)s) c)
        FROM unnest(lv.ps) WITH ORDINALITY v(p, o) ORDER BY v.o) END
FROM queues q,
    -- The queue's priority levels (see Priorities), each a range of the
    -- pending index for the counts by run_at.
    LATERAL (WITH RECURSIVE l(p) AS (
        SELECT max(priority) FROM {jobs} WHERE status = 0 AND queue = q.queue
        UNION ALL
        SELECT (SELECT max(priority) FROM {jobs}
            WHERE status = 0 AND queue = q.queue AND priority < l.p)
        FROM l WHERE l.p IS NOT NULL)
    SELECT array_agg(p) AS ps FROM l WHERE p IS NOT NULL) lv,
    LATERAL (SELECT count(*) AS n FROM (SELECT FROM unnest(lv.ps) v(p),
        LATERAL (SELECT FROM {jobs} WHERE status = 0 AND queue = q.queue AND priority = v.p
            AND run_at > {now} AND retry_count = 0 LIMIT %(over)s) x LIMIT %(over)s) c) s
WHERE q.queue IS NOT NULL ORDER BY q.queue"""

# The planner's estimate of a count above the cap, from the table's
# statistics (as fresh as its last ANALYZE, autovacuum's or an operator's).
_ESTIMATE = "EXPLAIN (FORMAT JSON) SELECT FROM {jobs} WHERE {where}"
_ESTIMATED = {
    "pending": "status = 0 AND queue = %(queue)s",
    "running": "status = 1 AND queue = %(queue)s",
    "dead": "status = 2 AND queue = %(queue)s",
    "scheduled": "status = 0 AND queue = %(queue)s AND run_at > %(at)s AND retry_count = 0",
    "waiting": "status = 5 AND queue = %(queue)s",
}
_ESTIMATED_LEVEL = "status = 0 AND queue = %(queue)s AND priority = %(priority)s"

_ADVANCE_TICK = """INSERT INTO {ticks} AS t (name, tick) VALUES (%(name)s, %(tick)s)
ON CONFLICT (name) DO UPDATE SET tick = excluded.tick WHERE t.tick < excluded.tick
RETURNING 1"""
_LAST_TICK = "SELECT tick FROM {ticks} WHERE name = %(name)s"

# A claim may be taken once its expiry is strictly in the past: one µs after.
# The earliest run_at is the least of the levels' heads.
_NEXT_DUE = """WITH RECURSIVE {levels}
SELECT least(
    (SELECT min(h.run_at) FROM levels l CROSS JOIN LATERAL (
        SELECT run_at FROM {jobs} WHERE queue = %(queue)s AND status = 0 AND priority = l.p
        ORDER BY run_at LIMIT 1) h),
    (SELECT min(mark) + 1 FROM {jobs} WHERE queue = %(queue)s AND status = 1))"""

_LIVE_KEYS = "SELECT live_key, id FROM {jobs} WHERE live_key = ANY(%(keys)s::text[])"

_CLOCK = "SELECT extract(epoch FROM clock_timestamp())::float8"


class _Statements:
    """The SQL of one schema, formatted once."""

    def __init__(self, schema: str) -> None:
        jobs = f"{quote_ident(schema)}.jobs"
        queues = f"{quote_ident(schema)}.queues"
        ticks = f"{quote_ident(schema)}.schedule_ticks"

        def fmt(template: str, **extra: str) -> LiteralString:
            return _q(
                template.format(
                    jobs=jobs,
                    queues=queues,
                    ticks=ticks,
                    now=_NOW,
                    expires=_EXPIRES.format(now=_NOW),
                    visible=_VISIBLE.format(now=_NOW),
                    levels=_LEVELS.format(jobs=jobs),
                    **extra,
                )
            )

        self.insert = fmt(_INSERT)
        self.insert_returning = fmt(_INSERT + "\nRETURNING id")
        self.insert_children = fmt(_INSERT_CHILDREN)
        self.mark_parents = fmt(_MARK_PARENTS)
        self.release = fmt(_RELEASE)
        self.walk = fmt(_WALK)
        self.cancel_children = fmt(_CANCEL_CHILDREN)
        nulls = ", ".join(["NULL"] * (len(_CLAIM.split(",")) - 1))
        self.complete_and_pop = fmt(
            _COMPLETE_AND_POP,
            returning=_returning("j."),
            nulls=nulls,
            per_notify=str(ENDED_PER_NOTIFY),
        )
        self.heartbeat = fmt(_HEARTBEAT)
        self.held_one = fmt(_HELD, target=_ONE)
        self.held_all = fmt(_HELD, target=_ALL)
        self.apply = fmt(_APPLY)
        self.delete = fmt(_DELETE)
        self.cancel_look = fmt(_CANCEL_LOOK)
        self.cancel_keep = fmt(_CANCEL_KEEP)
        self.expire = fmt(_EXPIRE, batch=str(EXPIRE_BATCH))
        self.notify = _q(_NOTIFY)
        self.requeue = fmt(_REQUEUE)
        self.purge = fmt(_PURGE)
        self.info = fmt(_INFO, columns=_COLUMNS)
        self._fmt = fmt
        self._listings: dict[tuple[bool, int | None, bool | None, bool, bool], LiteralString] = {}
        self.set_paused = fmt(_SET_PAUSED)
        self.set_resumed = fmt(_SET_RESUMED)
        self.paused = fmt(_PAUSED)
        self.stats = fmt(_STATS)
        self.estimates = {
            field: fmt(_ESTIMATE.replace("{where}", where)) for field, where in _ESTIMATED.items()
        }
        self.estimate_level = fmt(_ESTIMATE.replace("{where}", _ESTIMATED_LEVEL))
        self.next_due = fmt(_NEXT_DUE)
        self.live_keys = fmt(_LIVE_KEYS)
        self.advance_tick = fmt(_ADVANCE_TICK)
        self.last_tick = fmt(_LAST_TICK)

    def listing(
        self, *, queue: bool, status: int | None, scheduled: bool | None, name: bool, after: bool
    ) -> LiteralString:
        """The page statement for these filters: each status a literal, so
        that its partial index can serve it (a parameter would hide which)."""
        key = (queue, status, scheduled, name, after)
        sql = self._listings.get(key)
        if sql is None:
            where = [] if status is None else [f"status = {status}"]
            if queue:
                where.append("queue = %(queue)s")
            if name:
                where.append("name = %(name)s")
            if after:
                where.append("id > %(after)s")
            if status is None or status >= _SUCCEEDED:
                where.append("{visible}")
            if scheduled is not None:
                where.append(_SCHEDULED if scheduled else f"NOT {_SCHEDULED}")
            condition = " AND ".join(where) if where else "true"
            sql = self._listings[key] = self._fmt(
                _LIST.replace("{where}", condition), columns=_COLUMNS
            )
        return sql


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


def _channel(schema: str, suffix: str = "") -> str:
    # NOTIFY channel names are identifiers: at most 63 bytes.
    name = f"jobarbiter_{schema}{suffix}"
    if len(name.encode()) <= 63:
        return name
    return "jobarbiter_" + hashlib.sha256(schema.encode()).hexdigest()[:32] + suffix


def _ended_payloads(origin: str, ids: Sequence[uuid.UUID]) -> list[str]:
    return [
        origin + ":" + ",".join(map(str, ids[at : at + ENDED_PER_NOTIFY]))
        for at in range(0, len(ids), ENDED_PER_NOTIFY)
    ]


def _cancel_payload(origin: str, job_id: uuid.UUID, runner: str, reason: str) -> str:
    """The cancel notification, its reason cut to the longest start that
    fits a payload (escapes make its size in JSON hard to foresee)."""

    def payload(chars: int) -> str:
        return json.dumps([origin, str(job_id), runner, reason[:chars]], ensure_ascii=False)

    if len(payload(len(reason)).encode()) <= _PAYLOAD_BYTES:
        return payload(len(reason))
    fits, too_long = 0, len(reason)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if len(payload(middle).encode()) <= _PAYLOAD_BYTES:
            fits = middle
        else:
            too_long = middle
    return payload(fits)


# -- the storage ---------------------------------------------------------------------


class PostgresStorage:
    """A Storage in PostgreSQL, shared by any number of hosts.

    ``dsn`` is any libpq connection string; ``schema`` holds the tables (made
    or updated on open); ``clock`` replaces the database clock (tests only);
    ``pool_size`` caps the connections the pool may open (the actor uses one
    at a time and the pool replaces it if it breaks; the listener has its
    own); ``poll_interval`` is how often parked pops look again without a
    notification (retries and scheduled jobs of other hosts fall due silently);
    a count of ``stats`` above ``count_cap`` is the planner's estimate
    (storage.counts).

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
        count_cap: int = COUNT_CAP,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self._count_cap = check_cap(count_cap)
        self._dsn = dsn
        self._listen_dsn = listen_dsn
        self._clock = clock
        self._schema = schema
        self._unregistered_delay_us = round(unregistered_delay * _US)
        self._poll_interval = poll_interval
        self._pool_size = pool_size
        self._sql = _Statements(schema)
        self._channel = _channel(schema)
        self._ended_channel = _channel(schema, "_ended")
        self._cancel_channel = _channel(schema, "_cancel")
        # Marks our notifications, so that our own listener skips them: a
        # backend pid would not do behind a pooler.
        self._origin = secrets.token_hex(8)
        self._ended: list[uuid.UUID] = []  # ended in this transaction, not yet told
        self._cancels: list[str] = []  # cancel notifications for this transaction
        # What the ends of parents did, until dependents() is asked.
        self._told = dependencies.Told()
        self._ids = IdGenerator()
        self._backoffs: dict[tuple[str, float, float], Backoff] = {}
        self._max_retries: dict[int | None, MaxRetries] = {}
        self._offset = 0.0
        self._measured_at = 0.0
        self._failed: BaseException | None = None
        self._notify = False
        self._listener: _Listener | None = None

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

    def _alone(
        self, query: LiteralString, params: dict[str, Any], *, prepare: bool | None = None
    ) -> list[Row]:
        """Run one statement as a transaction of its own when none is open,
        else as part of the open one. A read between messages so leaves no
        idle transaction holding locks, and a lone write is durable when it
        returns, in one round trip instead of three (BEGIN, it, COMMIT).
        ``prepare`` False: never a prepared statement."""
        conn = self._connection()
        idle = conn.info.transaction_status == TransactionStatus.IDLE
        if idle:
            conn.autocommit = True  # client-side only: no round trip
        try:
            return conn.execute(query, params, binary=True, prepare=prepare).fetchall()
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

    def _forget_notifications(self) -> None:
        self._notify = False
        self._ended = []
        self._cancels = []
        # Read by the runtime after each operation, before the commit: left
        # over only from a transaction that failed, and then untrue.
        self._told.clear()

    def _notifications(self) -> dict[str, list[str]]:
        channels: list[str] = []
        payloads: list[str] = []
        if self._notify:
            channels.append(self._channel)
            payloads.append(self._origin)
        for payload in _ended_payloads(self._origin, self._ended):
            channels.append(self._ended_channel)
            payloads.append(payload)
        for payload in self._cancels:
            channels.append(self._cancel_channel)
            payloads.append(payload)
        return {"channels": channels, "payloads": payloads}

    def commit(self) -> None:
        conn = self._conn
        if self._failed is not None:
            failed, self._failed = self._failed, None
            self._forget_notifications()
            if conn is not None and not conn.broken:
                conn.rollback()
            raise RolledBackError(f"rolled back after a failed operation: {failed!r}") from failed
        if conn is None:
            return
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                notes = self._notifications()
                if notes["channels"]:
                    # One round trip for both: the NOTIFYs are sent with the commit.
                    with conn.pipeline():
                        conn.execute(self._sql.notify, notes)
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
            self._forget_notifications()

    def close(self) -> None:
        """Stop the listener and close every connection. Work not committed is
        rolled back."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if isinstance(self._pool, NotOpen):
            return
        conn, self._conn = self._conn, None
        self._forget_notifications()
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

    def subscribe(
        self,
        wake: Callable[[], None],
        *,
        ended: Callable[[list[uuid.UUID]], None] | None = None,
        cancelled: Callable[[uuid.UUID, str, str], None] | None = None,
    ) -> None:
        """Listen for other hosts' notifications (see the module docstring);
        a later call replaces the callbacks of an earlier one."""
        if self._listener is not None:
            self._listener.stop()
        origin = self._origin
        handlers: dict[str, Callable[[str], None]] = {
            self._channel: lambda payload: None if payload == origin else wake()
        }
        if ended is not None:
            handlers[self._ended_channel] = lambda payload: _on_ended(origin, payload, ended)
        if cancelled is not None:
            handlers[self._cancel_channel] = lambda payload: _on_cancel(origin, payload, cancelled)
        self._listener = _Listener(self._listen_dsn or self._dsn, handlers, wake)

    # -- writing -------------------------------------------------------------------

    def push(self, job: NewJob) -> uuid.UUID:
        return self.push_many([job])[0]

    def push_many(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        if not jobs:
            return []
        if dependencies.any_after(jobs):
            return self._push_children(jobs)
        out: list[uuid.UUID | str] = []  # an id, or the unique key whose holder it is
        first_of_key: dict[str, uuid.UUID] = {}
        columns: dict[str, list[Any]] = {name: [] for name in _JOB_COLUMNS}
        lists = tuple(columns.values())
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
            for column, value in zip(lists, _job_values(job, job_id), strict=True):
                column.append(value)
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

    def _push_children(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        """``push_many`` of a batch in which some jobs have parents: ids and
        statuses worked out here, the parents marked (and locked), then one
        insert. A unique key a live job holds gives that job's id, as ever."""
        for position, job in enumerate(jobs):
            dependencies.check_after(job.after, position)
        keys = [job.unique_key for job in jobs if job.unique_key is not None]
        holders: dict[str, uuid.UUID] = {}
        if keys:
            rows = self._write(self._sql.live_keys, {"keys": keys, "now": None}).fetchall()
            holders = {row[0]: row[1] for row in rows}
        ids: list[uuid.UUID] = []
        new: dict[int, tuple[uuid.UUID, ...]] = {}  # position stored -> its parents
        for position, job in enumerate(jobs):
            key = job.unique_key
            if key is not None and key in holders:
                ids.append(holders[key])
                continue
            job_id = to_uuid(self._ids.next_int())
            if key is not None:
                holders[key] = job_id  # a later job of the batch with this key gets it
            ids.append(job_id)
            new[position] = dependencies.resolve(job.after, ids[:position])
        mine = {ids[position] for position in new}
        outside = {p for parents in new.values() for p in parents if p not in mine}
        outside.update(p for job in jobs for p in job.after if isinstance(p, uuid.UUID))
        found: dict[uuid.UUID, Status] = {}
        if outside:
            rows = self._write(
                self._sql.mark_parents,
                {"ids": _uuid_array(outside), "now": self._now_param()},
            ).fetchall()
            found = {row[0]: _STATUS[row[1]] for row in rows}
        for job in jobs:
            for parent in job.after:
                if isinstance(parent, uuid.UUID) and parent not in found:
                    raise UnknownParent(parent)
        columns: dict[str, list[Any]] = {name: [] for name in _CHILD_COLUMNS}
        has_children: set[uuid.UUID] = set()
        rows_at: dict[uuid.UUID, int] = {}
        for position, parents in new.items():
            job, job_id = jobs[position], ids[position]
            stands = dependencies.standing(parents, found.get)
            has_children.update(p for p in stands.waiting_for if p in mine)
            if stands.cancelled is not None:
                self._told.cancelled.append(CancelledChild(job_id, job.queue, stands.cancelled))
                found[job_id] = Status.CANCELLED
                if job.policy.result_ttl <= 0:
                    continue  # cancelled, and kept for no time
                code = _CANCELLED
            else:
                code = _WAITING if stands.waiting_for else _PENDING
                found[job_id] = _STATUS[code]
            rows_at[job_id] = len(columns["id"])
            self._child_row(columns, job, job_id, status=code, parents=parents, stands=stands)
        for parent in has_children:
            if parent in rows_at:
                columns["has_children"][rows_at[parent]] = True
        if columns["id"]:
            self._write(self._sql.insert_children, {"now": self._now_param(), **columns})
        self._notify = True
        return ids

    def _child_row(
        self,
        columns: dict[str, list[Any]],
        job: NewJob,
        job_id: uuid.UUID,
        *,
        status: int,
        parents: tuple[uuid.UUID, ...],
        stands: dependencies.Standing,
    ) -> None:
        values = (
            *_job_values(job, job_id),
            status,
            _uuid_array(parents) if parents else None,
            len(stands.waiting_for),
            False,
            stands.cancelled,
        )
        for name, value in zip(_CHILD_COLUMNS, values, strict=True):
            columns[name].append(value)

    def dependents(self) -> Dependents:
        return self._told.take()

    def _parents_succeeded(self, ids: list[uuid.UUID]) -> None:
        rows = self._rows(self._sql.release, {"ids": _uuid_array(ids)})
        for queue, status in rows:
            if status == _PENDING:
                self._told.released.add(queue)
                self._notify = True  # another host may serve its queue

    def _parents_failed(self, roots: list[tuple[uuid.UUID, int]]) -> None:
        """Cancel the waiting subtrees of ``roots`` ((id, status): dead or
        cancelled): one walk, one update, again from what it cancelled till
        a walk finds nothing (a child pushed under one while we worked)."""
        frontier = [(root, root, code) for root, code in roots]
        while frontier:
            params = {
                "ids": _uuid_array(f[0] for f in frontier),
                "roots": _uuid_array(f[1] for f in frontier),
                "ended": [f[2] for f in frontier],
            }
            walked = self._rows(self._sql.walk, params)
            if not walked:
                return
            reasons = {
                child: dependencies.reason(parent, root, _STATUS[ended])
                for child, parent, root, ended in walked
            }
            roots_of = {child: (root, ended) for child, _, root, ended in walked}
            cancelled = self._rows(
                self._sql.cancel_children,
                {
                    "ids": _uuid_array(reasons),
                    "reasons": _text_array(reasons.values()),
                    "now": self._now_param(),
                },
            )
            frontier = []
            for child, queue, why in cancelled:
                self._told.cancelled.append(CancelledChild(child, queue, why))
                self._ended.append(child)
                frontier.append((child, *roots_of[child]))

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

    def push_tick(self, schedule: str, tick_us: int, job: NewJob) -> uuid.UUID | None:
        if not self._rows(self._sql.advance_tick, {"name": schedule, "tick": tick_us}):
            return None
        return self.push_many([job])[0]

    def last_tick(self, schedule: str) -> int | None:
        rows = self._alone(self._sql.last_tick, {"name": schedule})
        return None if not rows else int(rows[0][0])

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
        if result.outcome is Outcome.SUCCESS:
            # The round statement with nothing to claim: one way to store a success.
            completion = [(job_id, runner, result)]
            return self._complete_and_pop(completion, [], may_commit=False)[0][0]
        target = {"id": job_id, "runner": runner}
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
        done: dict[uuid.UUID, int] = {}  # a success to store -> its place
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
        unstored: list[int] = []  # places of parents' successes, for the locking path
        if done and not by_queue:
            by_queue[""] = []  # successes alone: the statement with no claims
        run = self._alone if may_commit and len(by_queue) == 1 else self._rows
        for queue, places in by_queue.items():
            slots = [pops[at][1] for at in places for _ in range(pops[at][2])]
            params: dict[str, Any] = {
                "done": _uuid_array(done),
                "done_by": _text_array([completions[at][1] for at in done.values()]),
                "results": _values([completions[at][2].value for at in done.values()]),
                "ended": self._ended_channel,
                "origin": self._origin,
                "queue": queue,
                "slots": _text_array(slots),
                "total": len(slots),
                "now": self._now_param(),
            }
            rows = run(self._sql.complete_and_pop, params)
            stored = {row[1] for row in rows if row[0] == 0}
            parents = {row[1] for row in rows if row[0] == -2}
            for job_id, at in done.items():
                if job_id in stored:
                    settled[at] = Disposition.FINISHED
                elif job_id in parents:
                    unstored.append(at)
                else:
                    settled[at] = Disposition.NOT_HELD
            done = {}
            claims = sorted((row for row in rows if row[0] > 0), key=lambda row: row[0])
            slot = 0
            for at in places:
                share = max(pops[at][2], 0)
                popped[at] = [_claim(row) for row in claims[slot : slot + share]]
                slot += share
        released = bool(self._told.released)
        for at in unstored:
            job_id, runner, result = completions[at]
            ended = self._settle(self._sql.held_one, {"id": job_id, "runner": runner}, result)
            settled[at] = ended[0][1] if ended else Disposition.NOT_HELD
        if unstored and not released and self._told.released:
            # Children those parents released are popped as if settled first.
            for at, (queue, runner, limit) in enumerate(pops):
                short = limit - len(popped[at])
                if queue in self._told.released and short > 0:
                    popped[at] += self._complete_and_pop(
                        [], [(queue, runner, short)], may_commit=False
                    )[1][0]
        return [d if d is not None else Disposition.NOT_HELD for d in settled], popped

    def release(self, runner: str, result: JobResult) -> list[tuple[uuid.UUID, Disposition]]:
        return self._settle(self._sql.held_all, {"runner": runner}, result)

    def _settle(
        self, held: LiteralString, target: dict[str, Any], result: JobResult
    ) -> list[tuple[uuid.UUID, Disposition]]:
        """Settle the held rows ``held`` selects with ``result``, as
        storage.settle decides; (id, disposition) in id order."""
        rows = self._write(held, target).fetchall()
        settled, removed = [], []
        apply: dict[str, list[Any]] = {
            k: [] for k in ("ids", "statuses", "counts", "delays", "errors", "results")
        }
        succeeded: list[uuid.UUID] = []  # parents, whose children are looked at after
        failed: list[tuple[uuid.UUID, int]] = []
        for job_id, retry_count, limit, kind, value, cap, ttl, parent in rows:
            max_retries, backoff = self._policy(limit, kind, value, cap)
            verdict = settle(
                result,
                retry_count=retry_count,
                max_retries=max_retries,
                backoff=backoff,
                unregistered_delay_us=self._unregistered_delay_us,
            )
            disposition = verdict.disposition
            settled.append((job_id, disposition))
            status = _SETTLED_STATUS[disposition]
            if parent and status == _SUCCEEDED:
                succeeded.append(job_id)
            elif parent and status != _PENDING:
                failed.append((job_id, status))
            if status != _PENDING:
                self._ended.append(job_id)
                if status != _DEAD and ttl <= 0:
                    removed.append(job_id)  # kept for no time
                    continue
            elif verdict.delay_us is None:
                self._notify = True  # due again at once: another host may take it
            apply["ids"].append(job_id)
            apply["statuses"].append(status)
            apply["counts"].append(verdict.retry_count)
            apply["delays"].append(verdict.delay_us)
            apply["errors"].append(verdict.error)
            apply["results"].append(result.value if status == _SUCCEEDED else None)
        if removed:
            self._write(self._sql.delete, {"ids": removed})
        if apply["ids"]:
            values = _values(apply.pop("results"))
            self._write(self._sql.apply, {**apply, "results": values, "now": self._now_param()})
        # Statements of their own, after the parents' rows were locked: they
        # see every child pushed while we waited for those locks.
        if succeeded:
            self._parents_succeeded(succeeded)
        if failed:
            self._parents_failed(failed)
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

    def cancel(self, job_id: uuid.UUID, reason: str) -> Status | None:
        now = self._now_param()
        row = self._write(self._sql.cancel_look, {"id": job_id, "now": now}).fetchone()
        if row is None:
            return None
        status, runner, ttl, parent = row
        if status in (_PENDING, _WAITING):
            if ttl > 0:
                self._write(self._sql.cancel_keep, {"id": job_id, "reason": reason, "now": now})
            else:
                self._write(self._sql.delete, {"ids": [job_id]})
            self._ended.append(job_id)
            if parent:
                self._parents_failed([(job_id, _CANCELLED)])
        elif status == _RUNNING:
            # Its runner stops it and completes it as cancelled; the host
            # whose runner that is may be another one.
            self._cancels.append(_cancel_payload(self._origin, job_id, runner, reason))
        return _STATUS[status]

    def expire(self) -> int:
        # Alone when no transaction is open: its row locks end with it.
        deadline = time.monotonic() + EXPIRE_BUDGET
        removed = 0
        while True:
            rows = self._alone(self._sql.expire, {"now": self._now_param()})
            count = int(rows[0][0])
            removed += count
            if count < EXPIRE_BATCH or time.monotonic() > deadline:
                return removed

    def purge_dead(self, older_than: float | None = None) -> int:
        older = None if older_than is None else round(older_than * _US)
        cursor = self._write(self._sql.purge, {"older": older, "now": self._now_param()})
        return cursor.rowcount

    # -- reading -------------------------------------------------------------------

    def info(self, job_id: uuid.UUID) -> JobInfo | None:
        rows = self._alone(self._sql.info, {"id": job_id, "now": self._now_param()})
        return self._info(rows[0], 0) if rows else None

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
        """As the contract says; see the module docstring for the plans."""
        if page_is_empty(status, scheduled, limit):
            return []
        status = walked_status(status, scheduled)
        code = None if status is None else _STATUS_CODE[status]
        sql = self._sql.listing(
            queue=queue is not None,
            status=code,
            scheduled=scheduled,
            name=name is not None,
            after=after is not None,
        )
        params = {
            "queue": queue,
            "name": name,
            "after": after,
            "limit": limit,
            "now": self._now_param(),
        }
        return [self._info(row, 0) for row in self._alone(sql, params)]

    def stats(self, *, levels: bool = True) -> dict[str, QueueStats]:
        """As the contract says: each count exact up to ``count_cap``, the
        planner's estimate above it (see storage.counts). The levels come
        with the counts' one statement, capped like them, so ``levels=False``
        saves nothing worth a second statement and changes nothing."""
        cap = self._count_cap
        rows = self._alone(self._sql.stats, {"now": self._now_param(), "over": cap + 1})
        stats = {}
        for row in rows:
            queue, pending, running, dead, later, due, retrying, first, now, waiting = row[:10]
            present, by_level = row[10:]
            read = Read(
                pending=pending,
                running=running,
                dead=dead,
                scheduled=later,
                due=due or 0,
                retrying=retrying or 0,
                oldest_due_at=first / _US if first is not None and first <= now else None,
                waiting=waiting,
                levels=present or (),
                by_level=by_level or (),
            )
            stats[queue] = queue_stats(
                read,
                cap=cap,
                estimate=functools.partial(self._estimate, queue, now),
                estimate_level=functools.partial(self._estimate_level, queue),
            )
        return stats

    def _estimate(self, queue: str, now: int, field: str) -> tuple[int, bool]:
        # Not prepared: a prepared statement may be planned once for any
        # parameters, and this plan's estimate for these is what is wanted.
        params = {"queue": queue, "at": now}
        ((plan,),) = self._alone(self._sql.estimates[field], params, prepare=False)
        return round(plan[0]["Plan"]["Plan Rows"]), False

    def _estimate_level(self, queue: str, priority: int) -> tuple[int, bool]:
        # Not prepared, as _estimate.
        params = {"queue": queue, "priority": priority}
        ((plan,),) = self._alone(self._sql.estimate_level, params, prepare=False)
        return round(plan[0]["Plan"]["Plan Rows"]), False

    def set_paused(self, queue: str, paused: bool) -> None:
        if paused:
            self._write(self._sql.set_paused, {"queue": queue, "now": self._now_param()})
        else:
            self._write(self._sql.set_resumed, {"queue": queue})
        # Sent with the commit: other hosts' wake() runs, and they read paused().
        self._notify = True

    def paused(self) -> frozenset[str]:
        return frozenset(row[0] for row in self._alone(self._sql.paused, {}))

    def next_due(self, queue: str) -> float | None:
        rows = self._alone(self._sql.next_due, {"queue": queue})
        due = rows[0][0] if rows else None
        return None if due is None else int(due) / _US

    # -- rows to records -------------------------------------------------------------

    def _info(self, row: Row, start: int) -> JobInfo:
        (job_id, name, queue, args, retry_count, max_retries, kind, value, run_at, heartbeat,
         timeout, status, last_error, runner, unique_key, cap, ttl, result, started, finished,
         expires, priority, parents) = row[start:]  # fmt: skip
        limit, backoff = self._policy(max_retries, kind, value, cap)
        return JobInfo.stored(
            id=job_id,
            name=name,
            queue=queue,
            args=args,
            policy=Policy(limit, backoff, heartbeat, timeout, ttl),
            retry_count=retry_count,
            run_at_us=run_at,
            status=_STATUS[status],
            last_error=last_error,
            runner=runner,
            unique_key=unique_key,
            result=result,
            started_us=started,
            finished_us=finished,
            expires_us=expires,
            priority=priority,
            parents=tuple(parents) if parents else (),
        )


def _claim(row: Row) -> Claim:
    """A Claim from a claimed row of the round statement (its place first)."""
    parents = row[7]
    return Claim._make((*row[1:7], tuple(parents) if parents else ()))


# The columns (as insert parameters, one array each) of a pushed job, in the
# order of _job_values; a child's insert takes a few more.
_JOB_COLUMNS = (
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
    "ttl",
    "priority",
)
_CHILD_COLUMNS = (*_JOB_COLUMNS, "status", "parents", "waiting_on", "has_children", "error")


def _job_values(job: NewJob, job_id: uuid.UUID) -> tuple[Any, ...]:
    """What a push stores of ``job``, in _JOB_COLUMNS' order."""
    policy = job.policy
    return (
        job_id,
        job.queue,
        job.name,
        job.args,
        None if job.run_at is None else round(job.run_at * _US),
        policy.max_retries.limit,
        policy.backoff.kind,
        float(policy.backoff.value),
        float(policy.backoff.max),
        float(policy.heartbeat_interval),
        round(STALE_HEARTBEATS * policy.heartbeat_interval * _US),
        None if policy.timeout is None else float(policy.timeout),
        job.unique_key,
        float(policy.result_ttl),  # float8[]: one type
        job.priority,
    )


# Arrays travel as literals: psycopg dumps a list element by element, which on
# the claim path cost more host time than the rest of the statement.
def _uuid_array(ids: Iterable[uuid.UUID]) -> str:
    return "{" + ",".join(map(str, ids)) + "}"


def _text_array(items: Iterable[str]) -> str:
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def _values(values: list[bytes | None]) -> list[bytes | None] | None:
    """The bytea array of returned values: None (a NULL array, whose every
    element reads as NULL) when none was returned, as for no-op jobs; else a
    list, which psycopg sends in binary, values of any size."""
    return values if any(v is not None for v in values) else None


# -- notifications -----------------------------------------------------------------


class _Listener:
    """LISTENs on its own connection to each channel of ``handlers`` and calls
    its handler with each payload; reconnects if the server goes away, then
    calls ``wake()``, since what was sent meanwhile is lost."""

    def __init__(
        self, dsn: str, handlers: dict[str, Callable[[str], None]], wake: Callable[[], None]
    ) -> None:
        self._dsn = dsn
        self._handlers = handlers
        self._wake = wake
        self._stopped = threading.Event()
        first = next(iter(handlers))
        self._thread = threading.Thread(
            target=self._run, name=f"jobarbiter-listen-{first}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    for channel in self._handlers:
                        conn.execute(_q(f"LISTEN {quote_ident(channel)}"))
                    _call(self._wake)
                    while not self._stopped.is_set():
                        for note in conn.notifies(timeout=0.5):
                            handler = self._handlers.get(note.channel)
                            if handler is not None:
                                _call(handler, note.payload)
            except psycopg.Error as exc:
                log.warning("listener connection lost; reconnecting", error=str(exc))
                self._stopped.wait(1.0)


def _call(callback: Callable[..., None], *args: Any) -> None:
    # A callback that raises must not stop the listening for every other one.
    try:
        callback(*args)
    except Exception as exc:
        log.warning("a notification callback failed", error=repr(exc))


def _on_ended(origin: str, payload: str, ended: Callable[[list[uuid.UUID]], None]) -> None:
    sender, _, ids = payload.partition(":")
    if sender != origin and ids:
        ended([uuid.UUID(text) for text in ids.split(",")])


def _on_cancel(origin: str, payload: str, cancelled: Callable[[uuid.UUID, str, str], None]) -> None:
    sender, job_id, runner, reason = json.loads(payload)
    if sender != origin:
        cancelled(uuid.UUID(job_id), runner, reason)


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
