"""SqliteStorage beyond the contract: the file outlives the host that wrote it."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import cast

import pykka
import pytest

import storage.sqlite
from storage import Backoff, JobResult, ManualClock, NewJob, QueueStats, Status
from storage.ids import IdGenerator, to_uuid
from storage.sqlite import MIGRATIONS, RECOVERED_ERROR, SqliteStorage
from supervisor import WorkerConfig
from tests.contract.support import QUEUE, ids, info, kill, new_job, policy, utc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "jobs.db")


def test_a_reopened_file_keeps_its_jobs_and_their_order(path: str, clock: ManualClock) -> None:
    first = SqliteStorage(path, clock=clock).open()
    dead = first.push(new_job(policy=policy(retries=0)))
    kill(first, dead)
    a = first.push(new_job(unique_key="k", args=b"\x81\xa1n\x01"))
    b = first.push(new_job())
    first.close()

    clock.advance(10)
    again = SqliteStorage(path, clock=clock).open()
    assert again.recovered == 0
    assert ids(again.list()) == [dead, a, b]
    job = info(again, a)
    assert (job.args, job.unique_key, job.status) == (b"\x81\xa1n\x01", "k", Status.PENDING)
    assert info(again, dead).last_error == "fatal"
    assert again.push(new_job(unique_key="k")) == a  # the key is still held
    c = again.push(new_job(run_at=clock.now() - 10))  # same run_at as a and b
    # Ids made by this host sort after the last host's: enqueue order holds.
    assert ids(again.pop(QUEUE, "r1", limit=5)) == [a, b, c]
    # The time of death came through too: dead exactly 10 s is not "more than".
    assert again.purge_dead(older_than=10) == 0
    assert again.purge_dead(older_than=9) == 1
    again.close()


def test_jobs_left_running_are_failed_attempts_on_the_next_open(
    path: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    first = SqliteStorage(path, clock=clock).open()
    retrying = first.push(
        new_job(unique_key="r", policy=policy(retries=1, backoff=Backoff.linear(2)))
    )
    dying = first.push(new_job(unique_key="d", policy=policy(retries=0)))
    finished = first.push(new_job())
    assert len(first.pop(QUEUE, "r1", limit=3)) == 3
    first.complete(finished, "r1", JobResult.success())
    first.close()

    clock.advance(5)
    with caplog.at_level(logging.WARNING, logger="jobarbiter"):
        second = SqliteStorage(path, clock=clock).open()

    assert second.recovered == 2
    events = [(r.name, vars(r)["event"], vars(r)["jobs"]) for r in caplog.records]
    event = "jobs an earlier host was running counted as failed attempts"
    assert events == [("jobarbiter.storage.sqlite", event, 2)]
    job = info(second, retrying)
    assert (job.status, job.retry_count, job.runner) == (Status.PENDING, 1, None)
    assert job.last_error == RECOVERED_ERROR
    assert job.run_at == utc(clock.now() + 2)  # the backoff runs from the recovery
    job = info(second, dying)
    assert (job.status, job.retry_count, job.last_error) == (Status.DEAD, 1, RECOVERED_ERROR)
    assert info(second, finished).status is Status.SUCCEEDED  # its record outlives the host
    assert second.stats() == {QUEUE: QueueStats(pending=1, running=0, dead=1)}
    assert second.push(new_job(unique_key="r")) == retrying  # still live, still holds it
    assert second.push(new_job(unique_key="d")) != dying  # dead: the key is free
    second.close()

    third = SqliteStorage(path, clock=clock).open()
    assert third.recovered == 0  # the recovery was committed
    third.close()


def test_what_was_not_committed_dies_with_the_process(path: str) -> None:
    script = (
        "import os, sys\n"
        "from storage.sqlite import SqliteStorage\n"
        "from tests.contract.support import new_job\n"
        "s = SqliteStorage(sys.argv[1]).open()\n"
        "print(s.push(new_job()), flush=True)\n"
        "s.commit()\n"
        "s.push(new_job())\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    reopened = SqliteStorage(path).open()
    assert [str(job_id) for job_id in ids(reopened.list())] == [done.stdout.strip()]
    reopened.close()


def test_a_failed_operation_leaves_nothing_half_done(path: str, clock: ManualClock) -> None:
    storage_ = SqliteStorage(path, clock=clock).open()
    kept = storage_.push(new_job())
    unbindable = NewJob("tests.Bad", QUEUE, cast(bytes, object()), policy())
    with pytest.raises(sqlite3.Error):
        storage_.push_many([new_job(), unbindable])
    assert storage_.stats() == {
        QUEUE: QueueStats(pending=1, running=0, dead=0, oldest_due_at=clock.now())
    }
    storage_.commit()  # the operation before the failed one is still in it
    storage_.close()

    reopened = SqliteStorage(path, clock=clock).open()
    assert ids(reopened.list()) == [kept]
    reopened.close()


def test_migrations_run_once_in_order_and_a_newer_file_is_refused(
    path: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = SqliteStorage(path, clock=clock).open()
    assert fresh.schema_version() == len(MIGRATIONS)
    kept = fresh.push(new_job())
    fresh.close()

    step = ("CREATE INDEX jobs_by_name ON jobs (name)",)
    monkeypatch.setattr(storage.sqlite, "MIGRATIONS", [*MIGRATIONS, step])
    for _ in range(2):  # the second open must not apply the step again
        migrated = SqliteStorage(path, clock=clock).open()
        assert migrated.schema_version() == len(MIGRATIONS) + 1
        assert ids(migrated.list()) == [kept]
        migrated.close()
    with closing(sqlite3.connect(path)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "jobs_by_name" in names

    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="newer jobarbiter"):
        SqliteStorage(path, clock=clock).open()


def test_a_file_from_before_backoff_max_gets_a_days_cap(path: str, clock: ManualClock) -> None:
    job_id = to_uuid(IdGenerator().next_int())  # a UUIDv7, as stored ids are
    with closing(sqlite3.connect(path)) as conn, conn:  # a file of schema version 1
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INT)")
        conn.execute("INSERT INTO schema_version VALUES (1, 0)")
        conn.execute(
            "INSERT INTO jobs (id, name, queue, args, status, run_at, max_retries, backoff_kind,"
            " backoff_value, heartbeat_interval, lease, timeout)"
            " VALUES (?, 'old.Job', ?, x'80', 'pending', 0, 5, 'exponential', 3.0, 5.0, 1, NULL)",
            (job_id.bytes, QUEUE),
        )
    migrated = SqliteStorage(path, clock=clock).open()
    assert migrated.schema_version() == len(MIGRATIONS)
    assert info(migrated, job_id).backoff == Backoff.exponential(3, max=24 * 3600)
    migrated.close()


def _file_of_version(path: str, version: int) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        for steps in MIGRATIONS[:version]:
            for statement in steps:
                conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INT)")
        conn.executemany(
            "INSERT INTO schema_version VALUES (?, 0)", [(n,) for n in range(1, version + 1)]
        )


def test_a_file_from_before_kept_records_keeps_its_jobs_for_600_s(
    path: str, clock: ManualClock
) -> None:
    made = IdGenerator()
    pending, running, dead = (to_uuid(made.next_int()) for _ in range(3))
    _file_of_version(path, 2)
    with closing(sqlite3.connect(path)) as conn, conn:
        columns = (
            "id, name, queue, args, status, run_at, expires, died_at, runner, retry_count,"
            " last_error, unique_key, max_retries, backoff_kind, backoff_value,"
            " heartbeat_interval, lease"
        )
        conn.executemany(
            f"INSERT INTO jobs ({columns}) VALUES"
            " (?, 'old.Job', ?, x'80', ?, 0, ?, ?, ?, ?, ?, ?, 5, 'linear', 1.0, 5.0, 25000000)",
            [
                (pending.bytes, QUEUE, "pending", None, None, None, 0, None, "p"),
                (running.bytes, QUEUE, "running", 1, None, "gone", 0, None, "r"),
                (dead.bytes, QUEUE, "dead", None, 3_000_000, None, 6, "boom", None),
            ],
        )
        conn.executemany(
            "INSERT INTO unique_keys VALUES (?, ?)", [("p", pending.bytes), ("r", running.bytes)]
        )

    migrated = SqliteStorage(path, clock=clock).open()
    assert migrated.schema_version() == len(MIGRATIONS)
    assert migrated.recovered == 1  # the running one: a failed attempt, pending again
    # Due since its run_at of 0; the recovered one waits out its backoff.
    assert migrated.stats() == {QUEUE: QueueStats(pending=2, running=0, dead=1, oldest_due_at=0.0)}
    old = info(migrated, dead)
    assert (old.finished_at, old.expires_at, old.started_at) == (utc(3), None, None)
    assert (old.result, old.last_error) == (None, "boom")

    assert migrated.cancel(running, "not wanted") is Status.PENDING
    cancelled = info(migrated, running)
    assert cancelled.expires_at == utc(clock.now() + 600)  # the default result_ttl
    clock.advance(3)  # past the retry's backoff
    (claim,) = migrated.pop(QUEUE, "r1")
    assert claim.id == pending
    migrated.complete(pending, "r1", JobResult.success(b"\x2a"))
    done = info(migrated, pending)
    assert (done.status, done.value(), done.started_at) == (Status.SUCCEEDED, 42, utc(clock.now()))
    assert done.expires_at == utc(clock.now() + 600)
    assert migrated.push(new_job(unique_key="p")) != pending  # the key is free
    assert migrated.push(new_job(unique_key="r")) != running
    migrated.close()


def test_a_file_from_before_priorities_gives_its_jobs_the_default(
    path: str, clock: ManualClock
) -> None:
    made = IdGenerator()
    pending, dead = (to_uuid(made.next_int()) for _ in range(2))
    _file_of_version(path, 4)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO jobs (id, name, queue, args, status, run_at, died_at, max_retries,"
            " backoff_kind, backoff_value, heartbeat_interval, lease)"
            " VALUES (?, 'old.Job', ?, x'80', ?, 0, ?, 5, 'linear', 1.0, 5.0, 1)",
            [(pending.bytes, QUEUE, "pending", None), (dead.bytes, QUEUE, "dead", 1)],
        )
    migrated = SqliteStorage(path, clock=clock).open()
    assert migrated.schema_version() == len(MIGRATIONS)
    assert [job.priority for job in migrated.list()] == [0, 0]
    urgent = migrated.push(new_job()._replace(priority=1))
    later = migrated.push(new_job()._replace(priority=-1))
    assert migrated.requeue(dead)
    popped = migrated.pop(QUEUE, "r1", 10)
    assert [claim.id for claim in popped] == [urgent, pending, dead, later]
    migrated.close()


def _plan(storage_: SqliteStorage, sql: str, *params: object) -> str:
    conn = storage_._conn
    return " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_expire_reads_a_range_of_the_expiry_index(path: str, clock: ManualClock) -> None:
    storage_ = SqliteStorage(path, clock=clock).open()
    kept = storage_.push(new_job(policy=policy(result_ttl=5)))
    live = storage_.push(new_job(run_at=clock.now() + 100))
    storage_.pop(QUEUE, "r1")
    storage_.complete(kept, "r1", JobResult.success())
    storage_.commit()

    plan = _plan(storage_, "DELETE FROM jobs WHERE expires_at <= ?", 0)
    assert plan == "SEARCH jobs USING COVERING INDEX jobs_kept (expires_at<?)"
    assert storage_.expire() == 0
    clock.advance(5)
    assert storage_.info(kept) is None  # gone on time, before expire() ran
    assert storage_.expire() == 1
    assert ids(storage_.list()) == [live]
    storage_.close()


def test_a_claim_reads_a_range_of_each_level_and_finds_levels_by_probes(
    path: str, clock: ManualClock
) -> None:
    storage_ = SqliteStorage(path, clock=clock).open()
    storage_.push_many([new_job(priority=level % 3) for level in range(30)])
    storage_.commit()
    claim = (
        "SELECT id FROM jobs WHERE queue = ? AND status = 'pending' AND priority = ?"
        " AND run_at <= ? ORDER BY run_at, id LIMIT ?"
    )
    plan = _plan(storage_, claim, QUEUE, 1, 0, 10)
    assert plan == "SEARCH jobs USING INDEX jobs_pending (queue=? AND priority=? AND run_at<?)"
    below = "SELECT max(priority) FROM jobs WHERE queue = ? AND status = 'pending' AND priority < ?"
    assert _plan(storage_, below, QUEUE, 1) == (
        "SEARCH jobs USING INDEX jobs_pending (queue=? AND priority<?)"
    )
    assert [claim.id for claim in storage_.pop(QUEUE, "r1", 30)] == [
        job.id for job in sorted(storage_.list(), key=lambda job: -job.priority)
    ]
    storage_.close()


# What a page of each status reads: its partial index (the queue's range of
# it), or the primary key from ``after`` on. None of them sorts the table.
PAGE_PLANS = {
    None: "SEARCH jobs USING PRIMARY KEY (id>?)",
    Status.PENDING: "SEARCH jobs USING INDEX jobs_pending (queue=?)",
    Status.RUNNING: "SEARCH jobs USING INDEX jobs_held (queue=?)",
    Status.DEAD: "SEARCH jobs USING INDEX jobs_dead_ids (queue=? AND id>?)",
    Status.SUCCEEDED: "SEARCH jobs USING PRIMARY KEY (id>?)",
    Status.CANCELLED: "SEARCH jobs USING INDEX jobs_cancelled (queue=? AND id>?)",
}


@pytest.mark.parametrize("status", list(PAGE_PLANS))
def test_every_listing_reads_an_index_and_never_an_offset(
    path: str, clock: ManualClock, status: Status | None
) -> None:
    storage_ = SqliteStorage(path, clock=clock).open()
    after = storage_.push(new_job())
    for name in (None, "tests.Job"):  # a name is tested on the rows the page reads
        sql, params = storage_._page(
            queue=QUEUE, status=status, scheduled=None, name=name, after=after, limit=10
        )
        assert "OFFSET" not in sql
        plan = _plan(storage_, sql, *params)
        assert PAGE_PLANS[status] in plan
        assert "SCAN" not in plan  # no walk of the table or of a whole index
        if status not in (None, Status.SUCCEEDED):
            # Only the page's rows are read from the table, by id.
            assert plan.startswith("SEARCH jobs USING PRIMARY KEY (id=?)")
    scheduled, params = storage_._page(
        queue=QUEUE, status=Status.PENDING, scheduled=True, name=None, after=after, limit=10
    )
    # The queue's range: priority comes before run_at in the index.
    assert "jobs_pending (queue=?)" in _plan(storage_, scheduled, *params)
    storage_.close()


def test_a_file_from_before_pauses_keeps_its_jobs_and_takes_pauses(
    path: str, clock: ManualClock
) -> None:
    _file_of_version(path, 3)
    old = to_uuid(IdGenerator().next_int())
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO jobs (id, name, queue, args, status, run_at, died_at, max_retries,"
            " backoff_kind, backoff_value, heartbeat_interval, lease, finished_at)"
            " VALUES (?, 'old.Job', ?, x'80', 'dead', 0, 5, 5, 'linear', 1.0, 5.0, 1, 5)",
            (old.bytes, QUEUE),
        )
    migrated = SqliteStorage(path, clock=clock).open()
    assert migrated.schema_version() == len(MIGRATIONS)
    assert ids(migrated.list(queue=QUEUE, status=Status.DEAD)) == [old]  # the new index
    assert migrated.paused() == frozenset()
    migrated.set_paused(QUEUE, True)
    migrated.close()
    again = SqliteStorage(path, clock=clock).open()
    assert again.paused() == frozenset({QUEUE})
    again.close()


def test_one_host_per_file(path: str) -> None:
    owner = SqliteStorage(path).open()
    with pytest.raises(sqlite3.OperationalError, match="another host"):
        SqliteStorage(path, timeout=0.1).open()
    owner.close()
    SqliteStorage(path).open().close()


def test_building_opens_nothing_and_start_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing-folder" / "jobs.db"
    storage_ = SqliteStorage(path)  # a module may build this at import time
    assert not path.parent.exists()
    with pytest.raises(RuntimeError, match=r"SqliteStorage\('.*jobs.db'\) is not open"):
        storage_.pop(QUEUE, "r1")
    with pytest.raises(sqlite3.OperationalError, match=rf"cannot open {path}: unable to open"):
        WorkerConfig(storage=storage_).start(processes=0)
    assert not [a for a in pykka.ActorRegistry.get_all() if a.is_alive()]
