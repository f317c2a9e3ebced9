"""PostgresStorage's kept records and events as several hosts see them.

The contract suite checks the rules of kept records on one storage; this file
checks what only a shared database has: hosts hearing that jobs ended or that
a running job was cancelled (NOTIFY, heard by the other host's listener), two
hosts expiring at once, a schema of the previous version migrated with its
jobs, and the shape of the statements (one per round, kept records out of
the live paths).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest

from storage import (
    Backoff,
    Disposition,
    JobResult,
    ManualClock,
    MaxRetries,
    NewJob,
    Policy,
    QueueStats,
    Status,
)
from storage.codec import encode
from storage.ids import IdGenerator, to_uuid
from storage.postgres import ENDED_PER_NOTIFY, EXPIRE_BATCH, MIGRATIONS, PostgresStorage

from .pg_host import fresh_schema, require_postgres
from .pgbouncer import pgbouncer

QUEUE = "default"
HEARD_WITHIN = 1.0  # the brief: the other host's callback fires within a second


def job(n: int = 0, *, ttl: float = 600.0, retries: int = 3, key: str | None = None) -> NewJob:
    policy = Policy(MaxRetries.count(retries), Backoff.linear(1.0), 5.0, None, ttl)
    return NewJob("tests.Pg", QUEUE, n.to_bytes(4, "big"), policy, unique_key=key)


class Heard:
    """What one host's listener was told, for the test thread to wait on."""

    def __init__(self) -> None:
        self.woken = threading.Event()
        self.ended: list[uuid.UUID] = []
        self.cancelled: list[tuple[uuid.UUID, str, str]] = []
        self.notifications = 0
        self._changed = threading.Condition()

    def on_ended(self, ids: list[uuid.UUID]) -> None:
        with self._changed:
            self.ended.extend(ids)
            self.notifications += 1
            self._changed.notify_all()

    def on_cancelled(self, job_id: uuid.UUID, runner: str, reason: str) -> None:
        with self._changed:
            self.cancelled.append((job_id, runner, reason))
            self._changed.notify_all()

    def wait(self, done: Callable[[], bool], timeout: float = HEARD_WITHIN) -> bool:
        with self._changed:
            return self._changed.wait_for(done, timeout)


def listening(storage: PostgresStorage) -> Heard:
    heard = Heard()
    storage.subscribe(heard.woken.set, ended=heard.on_ended, cancelled=heard.on_cancelled)
    assert heard.woken.wait(5.0)  # the listener wakes once it listens
    return heard


# -- events between hosts -------------------------------------------------------------


def test_jobs_ended_on_one_host_are_heard_on_the_other(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    heard_a, heard_b = listening(a), listening(b)
    ok, failing, waiting = b.push_many([job(1), job(2, retries=0), job(3)])
    b.commit()
    assert len(b.pop(QUEUE, "rb", limit=2)) == 2
    b.commit()

    # The hot path: a lone round statement, a transaction of its own.
    settled, _ = b.complete_and_pop([(ok, "rb", JobResult.success(encode(7)))], [])
    assert settled == [Disposition.FINISHED]
    assert heard_a.wait(lambda: heard_a.ended == [ok])

    # Settled in Python (dead) and cancelled while pending: told with the commit.
    assert b.complete(failing, "rb", JobResult.failure("boom")) is Disposition.DEAD
    assert b.cancel(waiting, "not needed") is Status.PENDING
    assert not heard_a.wait(lambda: len(heard_a.ended) > 1, timeout=0.3)  # not before
    b.commit()
    assert heard_a.wait(lambda: sorted(heard_a.ended) == sorted([ok, failing, waiting]))
    ended = a.info(ok)
    assert ended is not None and ended.value() == 7

    # A host is not told what it did itself.
    assert heard_b.ended == []


def test_a_failed_round_tells_no_one(hosts: Callable[..., PostgresStorage]) -> None:
    a, b = hosts(), hosts()
    heard = listening(a)
    (job_id,) = b.push_many([job()])
    b.commit()
    b.pop(QUEUE, "rb")
    b.commit()
    b.heartbeat("rb", [job_id])  # a transaction is open: the round joins it
    b.complete_and_pop([(job_id, "rb", JobResult.success())], [])
    b.close()  # never committed: rolled back, and its NOTIFY with it
    assert not heard.wait(lambda: bool(heard.ended), timeout=0.5)
    still = a.info(job_id)
    assert still is not None and still.status is Status.RUNNING


def test_a_round_that_ends_many_jobs_splits_its_notifications(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    heard = listening(a)
    count = ENDED_PER_NOTIFY * 2 + 7
    b.push_many([job(n, ttl=0 if n % 2 else 600) for n in range(count)])
    b.commit()
    claims = b.pop(QUEUE, "rb", limit=count)
    b.commit()
    assert len(claims) == count

    settled, _ = b.complete_and_pop([(c.id, "rb", JobResult.success()) for c in claims], [])
    assert settled == [Disposition.FINISHED] * count
    expected = sorted(c.id for c in claims)
    assert heard.wait(lambda: sorted(heard.ended) == expected, timeout=2.0)
    assert heard.notifications == 3  # NOTIFY payloads stay under 8000 bytes
    assert b.stats() == {}


def test_cancelling_a_running_job_tells_the_host_of_its_runner(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    heard_a, heard_b = listening(a), listening(b)
    job_id = a.push(job())
    a.commit()
    a.pop(QUEUE, "runner-a")
    a.commit()

    assert b.cancel(job_id, "user asked") is Status.RUNNING
    assert not heard_a.wait(lambda: bool(heard_a.cancelled), timeout=0.3)  # not before commit
    b.commit()
    assert heard_a.wait(lambda: heard_a.cancelled == [(job_id, "runner-a", "user asked")])
    assert heard_b.cancelled == []
    running = b.info(job_id)
    assert running is not None and running.status is Status.RUNNING  # its runner settles it

    # The runner stops it: cancelled, and everyone hears it ended.
    assert a.complete(job_id, "runner-a", JobResult.cancelled("user asked")) is (
        Disposition.CANCELLED
    )
    a.commit()
    assert heard_b.wait(lambda: heard_b.ended == [job_id])
    record = b.info(job_id)
    assert record is not None and record.status is Status.CANCELLED
    assert record.last_error == "user asked" and record.finished_at is not None


def test_a_long_cancel_reason_is_cut_to_fit_a_notification(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    heard = listening(a)
    job_id = a.push(job())
    a.commit()
    a.pop(QUEUE, "ra")
    a.commit()
    reason = 'é"\n' * 5_000  # 20,000 bytes, and more once escaped
    assert b.cancel(job_id, reason) is Status.RUNNING
    b.commit()
    assert heard.wait(lambda: bool(heard.cancelled))
    ((heard_id, runner, told),) = heard.cancelled
    assert (heard_id, runner) == (job_id, "ra")
    assert len(told) > 1000 and reason.startswith(told) and len(told.encode()) < 8000


def test_a_raising_callback_does_not_stop_the_listener(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    heard: list[uuid.UUID] = []
    calls = threading.Semaphore(0)

    def ended(ids: list[uuid.UUID]) -> None:
        heard.extend(ids)
        calls.release()
        raise RuntimeError("a bug in a callback")

    woken = threading.Event()
    a.subscribe(woken.set, ended=ended)
    assert woken.wait(5.0)
    for n in range(2):
        job_id = b.push(job(n))
        b.commit()
        b.pop(QUEUE, "rb")
        b.commit()
        b.complete_and_pop([(job_id, "rb", JobResult.success())], [])
        assert calls.acquire(timeout=HEARD_WITHIN)
    assert len(heard) == 2


def test_behind_pgbouncer_hosts_hear_each_other_and_not_themselves() -> None:
    # Through the pooler, consecutive transactions meet different server
    # connections: only the origin in a payload tells a host its own.
    server = require_postgres()
    with pgbouncer(server) as pooled, fresh_schema(server) as schema:
        a = PostgresStorage(pooled, schema=schema, listen_dsn=server).open()
        b = PostgresStorage(pooled, schema=schema, listen_dsn=server).open()
        try:
            heard_a, heard_b = listening(a), listening(b)
            mine, theirs = a.push_many([job(1), job(2)])
            a.commit()
            a.pop(QUEUE, "ra", limit=2)
            a.commit()
            assert b.cancel(theirs, "stop") is Status.RUNNING
            b.commit()
            assert heard_a.wait(lambda: heard_a.cancelled == [(theirs, "ra", "stop")])
            a.complete_and_pop([(mine, "ra", JobResult.success())], [])
            assert a.complete(theirs, "ra", JobResult.cancelled("stop")) is Disposition.CANCELLED
            a.commit()
            assert heard_b.wait(lambda: sorted(heard_b.ended) == sorted([mine, theirs]))
            assert not heard_a.wait(lambda: bool(heard_a.ended), timeout=0.3)
            assert heard_b.cancelled == []
        finally:
            a.close()
            b.close()


# -- expiry ---------------------------------------------------------------------------


def test_two_hosts_expiring_at_once_never_wait_for_each_other(
    hosts: Callable[..., PostgresStorage],
) -> None:
    clock = ManualClock()
    a, b = hosts(clock=clock), hosts(clock=clock)
    ids = a.push_many([job(n, ttl=10) for n in range(20)])
    claims = a.pop(QUEUE, "ra", limit=20)
    a.complete_and_pop([(c.id, "ra", JobResult.success()) for c in claims], [])
    a.commit()
    clock.advance(10)

    a.heartbeat("ra", [uuid.uuid4()])  # a transaction open: a's expire holds its rows
    assert a.expire() == 20
    started = time.monotonic()
    assert b.expire() == 0  # skipped, not waited for
    assert time.monotonic() - started < 1.0
    a.commit()
    assert all(b.info(job_id) is None for job_id in ids)
    assert b.expire() == 0


def test_expire_goes_on_past_one_batch(hosts: Callable[..., PostgresStorage]) -> None:
    clock = ManualClock()
    a = hosts(clock=clock)
    count = EXPIRE_BATCH * 2 + 1
    a.push_many([job(n, ttl=1) for n in range(count)])
    claims = a.pop(QUEUE, "ra", limit=count)
    a.complete_and_pop([(c.id, "ra", JobResult.success()) for c in claims], [])
    a.commit()
    clock.advance(1)
    assert a.expire() == count
    assert a.list() == []


def test_kept_records_stay_out_of_the_live_paths(
    hosts: Callable[..., PostgresStorage], dsn: str, schema: str
) -> None:
    a = hosts()
    a.push_many([job(n) for n in range(50)])
    claims = a.pop(QUEUE, "ra", limit=50)
    a.complete_and_pop([(c.id, "ra", JobResult.success()) for c in claims], [])
    live = a.push(job(99))
    a.commit()
    found = a.info(live)
    assert found is not None
    oldest = pytest.approx(found.run_at.timestamp(), abs=1e-6)
    assert a.stats() == {QUEUE: QueueStats(pending=1, running=0, dead=0, oldest_due_at=oldest)}
    assert a.next_due(QUEUE) is not None
    assert [c.id for c in a.pop(QUEUE, "ra", limit=10)] == [live]
    with psycopg.connect(dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f'EXPLAIN DELETE FROM "{schema}".jobs WHERE status IN (3, 4) AND expires_at <= 0'
            )
        )
    assert "jobs_expires" in plan


# -- migration ------------------------------------------------------------------------


def test_a_schema_of_version_2_is_migrated_with_its_jobs(
    dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("storage.postgres.MIGRATIONS", MIGRATIONS[:2])
    PostgresStorage(dsn, schema=schema).open().close()  # a schema of version 2
    monkeypatch.undo()
    ids = IdGenerator()  # UUIDv7, whose time is the enqueue time
    dead_id, pending_id = to_uuid(ids.next_int()), to_uuid(ids.next_int())
    with psycopg.connect(dsn, autocommit=True) as conn:
        insert = (
            f'INSERT INTO "{schema}".jobs (id, queue, name, args, status, run_at, mark,'
            " max_retries, backoff_kind, backoff_value, heartbeat_interval, lease_us, unique_key,"
            " live_key)"
            " VALUES (%s, %s, 'old.Job', '\\x80', %s, 0, %s, 0, 'linear', 1, 5, 1, %s, %s)"
        )
        conn.execute(insert, (dead_id, QUEUE, 2, 5, "k", None))  # died at µs 5
        conn.execute(insert, (pending_id, QUEUE, 0, 0, "k", "k"))

    new = PostgresStorage(dsn, schema=schema).open()
    try:
        dead = new.info(dead_id)
        assert dead is not None and dead.status is Status.DEAD and dead.finished_at is not None
        assert dead.finished_at.timestamp() == 5 / 1_000_000
        pending = new.info(pending_id)
        assert pending is not None and pending.status is Status.PENDING
        assert new.cancel(pending_id, "old job") is Status.PENDING
        cancelled = new.info(pending_id)
        assert cancelled is not None and cancelled.expires_at and cancelled.finished_at
        # Jobs stored before version 3 are kept for Policy's default.
        assert (cancelled.expires_at - cancelled.finished_at).total_seconds() == 600
        assert new.push(job(key="k")) != pending_id  # the key is free again
        new.commit()
    finally:
        new.close()
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.CheckViolation):
        # Only a live job may hold a key.
        conn.execute(f"UPDATE \"{schema}\".jobs SET live_key = 'x' WHERE id = %s", [dead_id])
