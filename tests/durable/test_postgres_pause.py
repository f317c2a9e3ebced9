"""A pause on PostgreSQL is stored: another host holds the queue within a
second, a host started while it is paused starts paused, and resume on any
host releases them all."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.postgres import PostgresStorage
from supervisor import Manager, WorkerConfig

from ..runtime.jobs import DIR_VAR, Record, lines
from ..runtime.support import start, wait_until
from .pg_host import fresh_schema, require_postgres

pytestmark = pytest.mark.processes

OBEYED_WITHIN = 1.0  # the bound for another host to hold a paused queue


@pytest.fixture
def schema_dsn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    monkeypatch.setenv(DIR_VAR, str(tmp_path))
    dsn = require_postgres()
    with fresh_schema(dsn) as schema:
        yield dsn, schema


def host(managers: list[Manager], dsn: str, schema: str, processes: int) -> Manager:
    config = WorkerConfig(storage=PostgresStorage(dsn, schema=schema)).register(Record)
    if processes == 0:
        manager = config.start(processes=0)
        managers.append(manager)
        return manager
    return start(managers, config, processes=processes)


def test_a_pause_from_one_host_holds_the_other_within_a_second(
    schema_dsn: tuple[str, str], tmp_path: Path
) -> None:
    dsn, schema = schema_dsn
    managers: list[Manager] = []
    try:
        runner = host(managers, dsn, schema, processes=1)
        operator = host(managers, dsn, schema, processes=0)
        runner.queue(Record(tag="before"))
        wait_until(lambda: len(lines(tmp_path, "runs.log")) == 1, what="the first run")

        operator.pause("default")
        time.sleep(OBEYED_WITHIN)
        assert runner.stats().queues["default"].paused_everywhere
        operator.queue_many(Record(tag=f"held{i}") for i in range(3))
        time.sleep(1.0)
        assert [f[0] for f in lines(tmp_path, "runs.log")] == ["before"]

        operator.resume("default")
        wait_until(lambda: len(lines(tmp_path, "runs.log")) == 4, what="the held jobs")
    finally:
        for manager in managers:
            manager.stop(timeout=10)


def test_a_host_started_while_a_queue_is_paused_starts_paused(
    schema_dsn: tuple[str, str], tmp_path: Path
) -> None:
    dsn, schema = schema_dsn
    managers: list[Manager] = []
    try:
        operator = host(managers, dsn, schema, processes=0)
        operator.pause("default")
        operator.queue(Record(tag="held"))
        runner = host(managers, dsn, schema, processes=1)
        time.sleep(1.0)
        assert lines(tmp_path, "runs.log") == []
        figures = runner.stats().queues["default"]
        assert figures.paused and figures.paused_everywhere and figures.pending == 1
        runner.resume("default")
        wait_until(lambda: len(lines(tmp_path, "runs.log")) == 1, what="the held job")
    finally:
        for manager in managers:
            manager.stop(timeout=10)
