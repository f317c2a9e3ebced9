"""Schedule ticks in a SQLite file: a file from before them is migrated."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import ManualClock
from storage.sqlite import MIGRATIONS, SqliteStorage
from tests.contract.support import ids, new_job

SECOND = 1_000_000


def test_a_file_from_before_schedules_is_migrated(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    before = next(i for i, steps in enumerate(MIGRATIONS) if "schedule_ticks" in steps[0])
    monkeypatch.setattr("storage.sqlite.MIGRATIONS", MIGRATIONS[:before])
    old = SqliteStorage(path, clock=clock).open()
    assert old.schema_version() == before
    job_id = old.push(new_job())
    old.close()
    monkeypatch.undo()

    new = SqliteStorage(path, clock=clock).open()
    try:
        assert new.schema_version() == len(MIGRATIONS)
        assert ids(new.list()) == [job_id]
        assert new.last_tick("beat") is None
        assert new.push_tick("beat", SECOND, new_job()) is not None
        assert new.push_tick("beat", SECOND, new_job()) is None
        new.commit()
    finally:
        new.close()
