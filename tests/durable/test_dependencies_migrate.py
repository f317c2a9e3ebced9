"""A file or schema from before dependencies migrates, and its jobs can be parents.

The jobs stored before the dependencies migration have no parents and no
children; once migrated, a child queued after one of them waits for it, and
a unique key an old job holds still counts (PostgreSQL's CHECK on live keys
is made again with the waiting status in it).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from storage import JobResult, ManualClock, Status
from storage import postgres as pg
from storage import sqlite as lite
from storage.ids import IdGenerator, to_uuid
from storage.postgres import PostgresStorage
from storage.sqlite import SqliteStorage
from tests.contract.support import QUEUE, info, new_job

# The version each backend had before its dependencies migration (the one
# that adds the parents column).
SQLITE_BEFORE = next(n for n, steps in enumerate(lite.MIGRATIONS) if "parents" in steps[0])
POSTGRES_BEFORE = next(n for n, steps in enumerate(pg.MIGRATIONS) if "parents" in steps[0])


def test_a_sqlite_file_from_before_dependencies_migrates(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")
    with closing(sqlite3.connect(path)) as conn, conn:
        for steps in lite.MIGRATIONS[:SQLITE_BEFORE]:
            for statement in steps:
                conn.execute(statement)
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INT)")
        conn.executemany(
            "INSERT INTO schema_version VALUES (?, 0)", [(n,) for n in range(1, SQLITE_BEFORE + 1)]
        )
        old = to_uuid(IdGenerator().next_int())
        conn.execute(
            "INSERT INTO jobs (id, name, queue, args, status, run_at, max_retries,"
            " backoff_kind, backoff_value, heartbeat_interval, lease)"
            " VALUES (?, 'old.Job', ?, x'80', 'pending', 0, 5, 'linear', 1.0, 5.0, 1)",
            (old.bytes, QUEUE),
        )
    clock = ManualClock(1_000.0)
    storage = SqliteStorage(path, clock=clock).open()
    try:
        assert storage.schema_version() == len(lite.MIGRATIONS)
        assert info(storage, old).parents == ()
        kid = storage.push(new_job()._replace(after=(old,)))
        assert info(storage, kid).status is Status.WAITING
        assert [claim.id for claim in storage.pop(QUEUE, "r1", 5)] == [old]
        storage.complete(old, "r1", JobResult.success())
        assert info(storage, kid).status is Status.PENDING
    finally:
        storage.close()


def test_a_postgres_schema_from_before_dependencies_migrates(
    dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(1_000.0)
    monkeypatch.setattr("storage.postgres.MIGRATIONS", pg.MIGRATIONS[:POSTGRES_BEFORE])
    before = PostgresStorage(dsn, schema=schema, clock=clock).open()
    old, keyed = before.push_many([new_job(), new_job(unique_key="k")])
    before.commit()
    before.close()
    monkeypatch.undo()

    storage = PostgresStorage(dsn, schema=schema, clock=clock).open()
    try:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(f'SELECT max(version) FROM "{schema}".migrations').fetchone()
        assert row == (len(pg.MIGRATIONS),)
        assert storage.push(new_job(unique_key="k")) == keyed  # the old job holds it still
        kid = storage.push(new_job()._replace(after=(old,)))
        storage.commit()
        assert info(storage, kid).status is Status.WAITING
        claimed = storage.pop(QUEUE, "r1", 5)
        assert {claim.id for claim in claimed} == {old, keyed}
        storage.complete(old, "r1", JobResult.success())
        storage.commit()
        assert info(storage, kid).status is Status.PENDING
    finally:
        storage.close()
