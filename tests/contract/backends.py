"""The storage backends that the contract suite runs against.

To put a new backend under the contract, add one factory here: it takes the
ManualClock the test drives and returns a fresh, empty, open Storage that reads
the time from that clock only. If the storage has a ``close()`` method, the suite
calls it when the test is done. A backend that keeps its jobs past a restart
also gets a case in ``reopen``. The ``storage`` fixture (conftest.py) and the
stateful model test (test_stateful.py) both run once per entry.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage import ManualClock, MemoryStorage, Storage
from storage.sqlite import SqliteStorage

BackendFactory = Callable[[ManualClock], Storage]


def memory(clock: ManualClock) -> Storage:
    return MemoryStorage(clock=clock).open()


class _Directory:
    """A directory of its own for a file (WAL mode adds files beside it),
    removed once no storage on that file is left."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="jobarbiter-contract-")
        weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)


# Each SQLite storage of the suite holds its directory, a reopened one too.
_directories: weakref.WeakKeyDictionary[Storage, _Directory] = weakref.WeakKeyDictionary()


def sqlite(clock: ManualClock) -> Storage:
    directory = _Directory()  # a fresh file per call
    storage = SqliteStorage(str(Path(directory.path) / "jobs.db"), clock=clock).open()
    _directories[storage] = directory
    return storage


def postgres(clock: ManualClock) -> Storage:
    # Imported here: psycopg is an optional dependency. Skips (fails under CI)
    # when no server answers; see tests/durable/pg_host.py.
    from tests.durable.pg_host import contract_storage  # noqa: PLC0415

    return contract_storage(clock)


BACKENDS: dict[str, BackendFactory] = {
    "memory": memory,
    "sqlite": sqlite,
    "postgres": postgres,
}


def reopen(storage: Storage, clock: ManualClock, **options: Any) -> Storage | None:
    """Close ``storage`` and open another on what it stored, as a host
    restarted would, built with ``options`` too; None for a storage that
    keeps nothing past close."""
    if isinstance(storage, MemoryStorage):
        return None
    if isinstance(storage, SqliteStorage):
        directory = _directories[storage]
        storage.close()
        path = str(Path(directory.path) / "jobs.db")
        again = SqliteStorage(path, clock=clock, **options).open()
        _directories[again] = directory
        return again
    from storage.postgres import PostgresStorage  # noqa: PLC0415 - optional

    assert isinstance(storage, PostgresStorage)
    storage.close()
    return PostgresStorage(
        storage._dsn, clock=clock, schema=storage._schema, pool_size=1, **options
    ).open()


def close(storage: Storage) -> None:
    """Let go of whatever a backend holds (connections, files), if anything."""
    closer = getattr(storage, "close", None)
    if callable(closer):
        closer()


def set_retry_count(storage: Storage, job_id: uuid.UUID, count: int) -> None:
    """Give a held job ``count`` failures, as if it had failed that often: no
    test has time to fail a job a billion times. Reaches into each backend,
    so it lives here, beside the factories."""
    if isinstance(storage, MemoryStorage):
        seq = storage._ids.as_seq(job_id)
        assert seq is not None
        storage._jobs[seq].grown().retry_count = count
    elif isinstance(storage, SqliteStorage):
        storage._conn.execute("UPDATE jobs SET retry_count = ? WHERE id = ?", (count, job_id.bytes))
    else:
        from storage.postgres import PostgresStorage  # noqa: PLC0415 - optional

        assert isinstance(storage, PostgresStorage)
        table = f'"{storage._schema}".jobs'
        storage._write(
            f"UPDATE {table} SET retry_count = %(count)s WHERE id = %(id)s",  # type: ignore[arg-type]
            {"count": count, "id": job_id},
        )


def analyze(storage: Storage) -> None:
    """Refresh the statistics a backend estimates counts from (PostgreSQL's
    ANALYZE, which autovacuum runs on a busy table); others have none."""
    if isinstance(storage, MemoryStorage | SqliteStorage):
        return
    from storage.postgres import PostgresStorage  # noqa: PLC0415 - optional

    assert isinstance(storage, PostgresStorage)
    storage._write(f'ANALYZE "{storage._schema}".jobs', {})  # type: ignore[arg-type]
    storage.commit()
