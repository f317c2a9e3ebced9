"""PostgresStorage as several hosts see it: one schema, many storages.

The contract suite (tests/contract) checks one storage against the model;
this file checks what only a shared database has: concurrent claims,
notifications between hosts, claims that go stale across hosts, transactions
and migrations. Each test gets a fresh schema (see pg_host.fresh_schema).
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import psycopg.conninfo
import pykka
import pytest

from actors.ops import Push, WhenIdle
from actors.storage_actor import StorageActor, pop_wait
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
from storage.ids import IdGenerator, to_uuid
from storage.postgres import (
    _STATUS_CODE,
    MIGRATIONS,
    PostgresStorage,
    RolledBackError,
    migration_sql,
)
from supervisor import WorkerConfig

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "default"


def policy(heartbeat: float = 5.0) -> Policy:
    return Policy(MaxRetries.count(3), Backoff.linear(1.0), heartbeat, None)


def due_since(storage: PostgresStorage, job_id: uuid.UUID) -> object:
    """What ``QueueStats.oldest_due_at`` is while ``job_id`` is the oldest job due."""
    found = storage.info(job_id)
    assert found is not None
    return pytest.approx(found.run_at.timestamp(), abs=1e-6)


def job(n: int = 0, *, heartbeat: float = 5.0, unique_key: str | None = None) -> NewJob:
    return NewJob(
        name="tests.Pg",
        queue=QUEUE,
        args=n.to_bytes(4, "big"),
        policy=policy(heartbeat),
        unique_key=unique_key,
    )


# -- claims ---------------------------------------------------------------------------


def test_two_hosts_popping_at_once_never_claim_the_same_job(
    hosts: Callable[..., PostgresStorage],
) -> None:
    producer = hosts()
    pushed = producer.push_many([job(n) for n in range(2000)])
    producer.commit()
    a, b = hosts(), hosts()
    claimed: dict[str, list[uuid.UUID]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def run(name: str, storage: PostgresStorage) -> None:
        runner = f"runner-{name}"
        start.wait()
        limit = 1
        while True:
            jobs = storage.pop(QUEUE, runner, limit)
            storage.commit()  # the claim is visible to the other host from here
            if not jobs:
                return
            for popped in jobs:
                claimed[name].append(popped.id)
                assert storage.complete(popped.id, runner, JobResult.success()) is (
                    Disposition.FINISHED
                )
            storage.commit()
            limit = limit % 7 + 1  # claims of 1 to 7 jobs at a time

    threads = [threading.Thread(target=run, args=item) for item in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not set(claimed["a"]) & set(claimed["b"])
    assert sorted(claimed["a"] + claimed["b"]) == sorted(pushed)  # each exactly once
    assert len(claimed["a"]) > 100 and len(claimed["b"]) > 100  # both really took part
    assert producer.stats() == {}


def test_an_uncommitted_claim_is_skipped_by_another_host(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    first, second = a.push_many([job(1), job(2)])
    a.commit()

    assert [j.id for j in a.pop(QUEUE, "ra")] == [first]  # not committed yet
    assert [j.id for j in b.pop(QUEUE, "rb")] == [second]  # skipped the locked row
    b.commit()
    oldest = due_since(b, first)  # left pending for b, locked by a
    assert b.stats() == {QUEUE: QueueStats(pending=1, running=1, dead=0, oldest_due_at=oldest)}
    a.commit()
    assert b.stats() == {QUEUE: QueueStats(pending=0, running=2, dead=0)}
    assert b.info(first) is not None
    assert b.info(first).runner == "ra"  # type: ignore[union-attr]


def test_a_stale_claim_of_one_host_is_taken_by_another(
    hosts: Callable[..., PostgresStorage],
) -> None:
    clock = ManualClock()
    a, b = hosts(clock=clock), hosts(clock=clock)
    job_id = a.push(job(heartbeat=1.0))
    assert [j.id for j in a.pop(QUEUE, "ra")] == [job_id]
    a.commit()

    clock.advance(5.0)  # exactly five intervals: not yet stale
    assert b.pop(QUEUE, "rb") == []
    clock.advance(0.001)
    taken = b.pop(QUEUE, "rb")
    b.commit()

    assert [j.id for j in taken] == [job_id]
    info = b.info(job_id)
    assert info is not None and info.runner == "rb"
    assert a.heartbeat("ra", [job_id]) == [job_id]  # host A learns it lost the job
    assert a.complete(job_id, "ra", JobResult.success()) is Disposition.NOT_HELD
    a.commit()
    assert b.complete(job_id, "rb", JobResult.success()) is Disposition.FINISHED
    b.commit()
    done = a.info(job_id)
    assert done is not None and done.status is Status.SUCCEEDED and done.runner is None


def test_on_the_database_clock_a_dead_hosts_claims_come_back(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    ids = a.push_many([job(n, heartbeat=0.05) for n in range(3)])  # lease: 0.25 s
    assert len(a.pop(QUEUE, "ra", limit=3)) == 3
    a.commit()
    a.close()  # host A is gone without settling anything

    assert b.pop(QUEUE, "rb", limit=3) == []
    due = b.next_due(QUEUE)
    assert due is not None
    assert 0 < due - b.now() <= 0.3
    time.sleep(0.35)
    taken = b.pop(QUEUE, "rb", limit=3)
    assert sorted(j.id for j in taken) == sorted(ids)
    assert b.heartbeat("rb", ids) == []


def test_heartbeats_batch_and_report_what_is_not_held(
    hosts: Callable[..., PostgresStorage],
) -> None:
    clock = ManualClock()
    a = hosts(clock=clock)
    ids = a.push_many([job(n, heartbeat=1.0) for n in range(300)])
    a.pop(QUEUE, "ra", limit=200)
    clock.advance(4.0)
    stranger = uuid.uuid4()
    lost = a.heartbeat("ra", [*ids, stranger])
    assert lost == [*ids[200:], stranger]
    clock.advance(4.0)  # 8 s after the pop, 4 s after the heartbeat: still held
    assert [j.id for j in a.pop(QUEUE, "rb", limit=300)] == ids[200:]  # only the pending
    clock.advance(1.001)  # now the heartbeat's lease has run out
    assert sorted(j.id for j in a.pop(QUEUE, "rb", limit=300)) == sorted(ids[:200])
    assert {j.runner for j in a.list(status=Status.RUNNING, limit=1000)} == {"rb"}


def test_a_unique_key_held_on_one_host_is_seen_by_another(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    first = a.push(job(unique_key="k"))
    a.commit()
    assert b.push(job(unique_key="k")) == first
    assert b.push_many([job(unique_key="k"), job(unique_key="other")])[0] == first
    b.commit()
    assert a.stats()[QUEUE].pending == 2


# -- transactions ---------------------------------------------------------------------


def test_a_failed_operation_rolls_back_the_whole_transaction(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    kept = a.push(job(1))
    a.commit()
    lost = a.push(job(2))
    bad = NewJob(name="tests.Pg", queue="nul\x00", args=b"", policy=policy())
    with pytest.raises(psycopg.Error):
        a.push(bad)  # PostgreSQL text cannot hold NUL
    with pytest.raises(RolledBackError):
        a.commit()
    assert b.info(lost) is None
    assert a.info(lost) is None
    assert a.info(kept) is not None
    a.push(job(3))  # the storage goes on
    a.commit()
    assert b.stats()[QUEUE].pending == 2


def test_nothing_is_visible_to_other_hosts_before_commit(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    job_id = a.push(job())
    assert b.info(job_id) is None
    assert b.stats() == {}
    a.commit()
    assert b.info(job_id) is not None


def test_a_lone_complete_and_pop_commits_itself_but_not_inside_a_transaction(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(), hosts()
    first, second, third = a.push_many([job(1), job(2), job(3)])
    a.commit()

    # Nothing open: one statement, durable when it returns.
    _, popped = a.complete_and_pop([], [(QUEUE, "ra", 1)])
    assert [j.id for j in popped[0]] == [first]
    oldest = due_since(b, second)
    assert b.stats() == {QUEUE: QueueStats(pending=2, running=1, dead=0, oldest_due_at=oldest)}
    settled, _ = a.complete_and_pop([(first, "ra", JobResult.success())], [])
    assert settled == [Disposition.FINISHED]
    done = b.info(first)
    assert done is not None and done.status is Status.SUCCEEDED

    # After another write of the same message it joins that transaction.
    a.heartbeat("ra", [uuid.uuid4()])
    _, popped = a.complete_and_pop([], [(QUEUE, "ra", 1)])
    assert [j.id for j in popped[0]] == [second]
    assert b.stats() == {QUEUE: QueueStats(pending=2, running=0, dead=0, oldest_due_at=oldest)}
    a.commit()
    oldest = due_since(b, third)
    assert b.stats() == {QUEUE: QueueStats(pending=1, running=1, dead=0, oldest_due_at=oldest)}
    assert b.info(third) is not None


def test_the_database_clock_is_used(hosts: Callable[..., PostgresStorage], dsn: str) -> None:
    a = hosts()
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    assert abs(a.now() - row[0]) < 0.5
    job_id = a.push(job())
    found = a.info(job_id)
    assert found is not None
    assert abs(found.run_at.timestamp() - a.now()) < 0.5


# -- notifications --------------------------------------------------------------------


def test_a_push_on_one_host_wakes_the_other(hosts: Callable[..., PostgresStorage]) -> None:
    a, b = hosts(), hosts()
    woken = threading.Event()
    a.subscribe(woken.set)
    assert woken.wait(5.0)  # the listener wakes once when it starts listening
    woken.clear()

    a.push(job(1))
    a.commit()
    assert not woken.wait(0.5)  # our own pushes need no wake-up

    b.push(job(2))
    assert not woken.wait(0.3)  # not before the commit
    b.commit()
    assert woken.wait(5.0)


def test_a_pause_on_one_host_wakes_the_other(hosts: Callable[..., PostgresStorage]) -> None:
    a, b = hosts(), hosts()
    woken = threading.Event()
    a.subscribe(woken.set)
    assert woken.wait(5.0)  # the listener wakes once when it starts listening
    woken.clear()

    a.set_paused("mine", True)
    a.commit()
    assert not woken.wait(0.5)  # our own pause needs no wake-up

    b.set_paused(QUEUE, True)
    assert not woken.wait(0.3)  # not before the commit
    assert a.paused() == frozenset({"mine"})
    b.commit()
    assert woken.wait(5.0)
    assert a.paused() == frozenset({"mine", QUEUE})  # what the woken runtime reads

    woken.clear()
    b.set_paused(QUEUE, False)
    b.commit()
    assert woken.wait(5.0)  # a resume is news too
    assert a.paused() == frozenset({"mine"})


def test_a_parked_pop_is_served_when_another_host_pushes(
    hosts: Callable[..., PostgresStorage],
) -> None:
    # poll_interval is long: only the notification can wake the parked pop.
    a, b = hosts(poll_interval=60.0), hosts()
    actor = StorageActor.start(a)
    try:
        time.sleep(0.3)  # the listener is listening
        found: list[uuid.UUID] = []
        waiter = threading.Thread(
            target=lambda: found.extend(j.id for j in pop_wait(actor, QUEUE, "ra", timeout=10))
        )
        waiter.start()
        time.sleep(0.3)
        started = time.monotonic()
        job_id = b.push(job())
        b.commit()
        waiter.join(timeout=15)
        assert found == [job_id]
        assert time.monotonic() - started < 2.0
    finally:
        actor.stop()


def test_join_returns_when_another_host_finishes_the_last_job(
    hosts: Callable[..., PostgresStorage],
) -> None:
    a, b = hosts(poll_interval=0.2), hosts()
    actor = StorageActor.start(a)
    try:
        # Through the actor: it is the only user of ``a`` once started.
        (job_id,) = actor.ask(Push((job(),)))
        idle: pykka.ThreadingFuture[bool] = pykka.ThreadingFuture()
        actor.tell(WhenIdle(idle.set))
        (popped,) = b.pop(QUEUE, "rb")
        b.complete(popped.id, "rb", JobResult.success())
        b.commit()
        assert popped.id == job_id
        # Nothing settled through this actor: only its poll can see it.
        assert idle.get(timeout=5) is True
    finally:
        actor.stop()


def test_poll_interval_is_a_slow_fallback(hosts: Callable[..., PostgresStorage]) -> None:
    assert hosts().poll_interval == 5.0


# -- migrations -----------------------------------------------------------------------


def test_migrations_print_as_sql_that_applies_twice(dsn: str, schema: str) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "storage.postgres", "--schema", schema],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == migration_sql(schema)
    assert "CREATE TABLE" in printed and "jobs_pending" in printed
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(printed)
        conn.execute(printed)
        row = conn.execute(
            f'SELECT array_agg(version ORDER BY version) FROM "{schema}".migrations'
        ).fetchone()
    assert row is not None
    assert row[0] == list(range(1, len(MIGRATIONS) + 1))
    storage = PostgresStorage(dsn, schema=schema).open()  # finds the schema up to date
    try:
        job_id = storage.push(job())
        assert [j.id for j in storage.pop(QUEUE, "r")] == [job_id]
    finally:
        storage.close()


def test_a_schema_from_before_backoff_max_gets_a_days_cap(
    dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("storage.postgres.MIGRATIONS", MIGRATIONS[:1])
    PostgresStorage(dsn, schema=schema).open().close()  # a schema of version 1
    monkeypatch.undo()
    job_id = to_uuid(IdGenerator().next_int())  # a UUIDv7, as stored ids are
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".jobs (id, queue, name, args, status, run_at, max_retries,'
            " backoff_kind, backoff_value, heartbeat_interval, lease_us)"
            " VALUES (%s, %s, 'old.Job', '\\x80', 0, 0, 5, 'exponential', 3, 5, 1)",
            (job_id, QUEUE),
        )
    migrated = PostgresStorage(dsn, schema=schema).open()
    try:
        found = migrated.info(job_id)
        assert found is not None and found.backoff == Backoff.exponential(3, max=24 * 3600)
    finally:
        migrated.close()


def test_a_schema_from_before_pauses_keeps_its_jobs_and_takes_pauses(
    dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead, pending = _old_rows(dsn, schema, monkeypatch, version=3)

    migrated = PostgresStorage(dsn, schema=schema).open()
    try:
        assert [j.id for j in migrated.list()] == [dead, pending]
        assert [j.id for j in migrated.list(status=Status.DEAD)] == [dead]
        assert migrated.paused() == frozenset()
        migrated.set_paused(QUEUE, True)
        migrated.commit()
        assert migrated.paused() == frozenset({QUEUE})
        with psycopg.connect(dsn) as conn:
            row = conn.execute(f'SELECT max(version) FROM "{schema}".migrations').fetchone()
        assert row == (len(MIGRATIONS),)
    finally:
        migrated.close()


def _old_rows(
    dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch, *, version: int
) -> tuple[uuid.UUID, uuid.UUID]:
    """A schema of ``version`` holding a dead job and then a pending one,
    written as that version's hosts wrote them (columns it has)."""
    monkeypatch.setattr("storage.postgres.MIGRATIONS", MIGRATIONS[:version])
    PostgresStorage(dsn, schema=schema).open().close()
    monkeypatch.undo()
    made = IdGenerator()
    dead, pending = (to_uuid(made.next_int()) for _ in range(2))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".jobs (id, queue, name, args, status, run_at, mark,'
            " finished_at, max_retries, backoff_kind, backoff_value, heartbeat_interval, lease_us)"
            " VALUES (%s, %s, 'old.Job', '\\x80', 2, 0, 1, 1, 5, 'linear', 1, 5, 1),"
            " (%s, %s, 'old.Job', '\\x81', 0, 0, 0, NULL, 5, 'linear', 1, 5, 1)",
            (dead, QUEUE, pending, QUEUE),
        )
    return dead, pending


def test_a_schema_from_before_priorities_gives_its_jobs_the_default(
    dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead, pending = _old_rows(dsn, schema, monkeypatch, version=5)
    migrated = PostgresStorage(dsn, schema=schema).open()
    try:
        assert [j.priority for j in migrated.list()] == [0, 0]
        urgent = migrated.push(job(3)._replace(priority=1))
        later = migrated.push(job(4)._replace(priority=-1))
        assert migrated.requeue(dead)
        popped = migrated.pop(QUEUE, "r", 10)
        assert [claim.id for claim in popped] == [urgent, pending, dead, later]
    finally:
        migrated.close()


def _plan(storage: PostgresStorage, sql: str, params: dict[str, object]) -> str:
    conn = storage._connection()
    rows = conn.execute(f"EXPLAIN {sql}", params).fetchall()  # type: ignore[arg-type]
    conn.rollback()
    return "\n".join(row[0] for row in rows)


def test_every_listing_has_an_index_backed_plan_and_no_offset(
    hosts: Callable[..., PostgresStorage], dsn: str, schema: str
) -> None:
    a = hosts()
    # A busy table: mostly kept records, a backlog, a few of the rest.
    done = a.push_many([job(n) for n in range(3000)])
    a.complete_and_pop([], [(QUEUE, "ra", 3000)])
    a.complete_and_pop([(job_id, "ra", JobResult.success()) for job_id in done], [])
    a.push_many([job(n) for n in range(300)])
    for claim in a.pop(QUEUE, "ra", limit=20):
        a.complete(claim.id, "ra", JobResult.failure("boom"))  # pending again, retrying
    a.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{schema}".jobs')
    params: dict[str, object] = {
        "queue": QUEUE,
        "name": "tests.Job",
        "after": done[0],
        "limit": 100,
        "now": None,
    }
    for status in (None, *Status):
        for by_queue, by_name in itertools.product((False, True), repeat=2):
            code = None if status is None else _STATUS_CODE[status]
            sql = a._sql.listing(
                queue=by_queue, status=code, scheduled=None, name=by_name, after=True
            )
            assert "OFFSET" not in sql
            plan = _plan(a, sql, params)
            assert "Seq Scan" not in plan, plan
            assert "Index" in plan, plan
            if status in (Status.DEAD, Status.CANCELLED) and by_queue:
                index = "jobs_dead_ids" if status is Status.DEAD else "jobs_cancelled"
                assert index in plan, plan
    sql = a._sql.listing(queue=True, status=0, scheduled=True, name=False, after=True)
    assert "Seq Scan" not in _plan(a, sql, params)
    # stats(): index ranges, the retries' own among them; no kept record read.
    plan = _plan(a, a._sql.stats, {"now": None, "over": 11})
    assert "Seq Scan" not in plan, plan
    assert "jobs_retrying" in plan and "jobs_expires" not in plan, plan


def test_a_claim_reads_the_due_range_of_each_level_and_no_more(
    hosts: Callable[..., PostgresStorage], dsn: str, schema: str
) -> None:
    a = hosts()
    # A backlog at the default, many high-priority jobs not due yet, and a
    # few due ones above the default, queued last (the newest ids).
    a.push_many([job(n) for n in range(3000)])
    a.push_many([job(n)._replace(priority=9, run_at=time.time() + 3600) for n in range(3000)])
    urgent = a.push_many([job(n)._replace(priority=5) for n in range(5)])
    a.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{schema}".jobs')
    params: dict[str, object] = {
        "done": "{}",
        "done_by": "{}",
        "results": None,
        "ended": "unheard",
        "origin": "test",
        "queue": QUEUE,
        "slots": "{" + ",".join(["r"] * 10) + "}",
        "total": 10,
        "now": None,
    }
    plan = _plan(a, "(ANALYZE, COSTS OFF) " + a._sql.complete_and_pop, params)
    assert "Seq Scan" not in plan and "Merge Join" not in plan, plan
    # Each level is a range of the pending index; the claims are found by id.
    assert "(priority = l" in plan and "jobs_pending" in plan, plan
    assert "Index Cond: (id = ANY (p.ids))" in plan, plan
    # Three levels met (9, 5, 0: the probe below 0 is never made), and
    # about ten rows read from them: none of the 3,000 not due, none of the
    # backlog past the claim.
    assert re.search(r"CTE Scan on levels \S+ \(actual \S+ rows=3 loops=1\)", plan), plan
    scans = re.findall(r"Index Scan using jobs_pending .*\(actual \S+ rows=(\d+) loops=(\d+)", plan)
    assert [int(rows) * int(loops) for rows, loops in scans] == [9], plan  # 10/3, rounded
    claims = a.pop(QUEUE, "r", 10)
    assert [claim.id for claim in claims][:5] == urgent


def test_hosts_starting_together_migrate_once(dsn: str, schema: str) -> None:
    made: list[PostgresStorage] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            made.append(PostgresStorage(dsn, schema=schema).open())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert len(made) == 4
        with psycopg.connect(dsn) as conn:
            row = conn.execute(f'SELECT count(*) FROM "{schema}".migrations').fetchone()
        assert row == (len(MIGRATIONS),)
    finally:
        for storage in made:
            storage.close()


def test_building_opens_nothing_and_start_names_the_database() -> None:
    storage = PostgresStorage("postgresql://postgres@127.0.0.1:1/nowhere", schema="unused")
    with pytest.raises(psycopg.OperationalError, match=r"PostgresStorage cannot reach its"):
        WorkerConfig(storage=storage).start(processes=0)
    assert not [a for a in pykka.ActorRegistry.get_all() if a.is_alive()]


def test_a_missing_database_is_named(dsn: str) -> None:
    missing = psycopg.conninfo.make_conninfo(dsn, dbname="jobarbiter_no_such_db")
    storage = PostgresStorage(missing, schema="unused")
    with pytest.raises(psycopg.OperationalError, match=r'database "jobarbiter_no_such_db"'):
        storage.open()
