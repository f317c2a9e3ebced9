"""Two Managers on one PostgreSQL schema: a wait and a cancel on one host for
a job that the other host runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.postgres import PostgresStorage
from supervisor import JobCancelled, Manager, Status, WorkerConfig

from ..runtime.jobs import DIR_VAR, Cooperative, Returns, lines
from ..runtime.support import start, wait_until
from .pg_host import fresh_schema, require_postgres

pytestmark = pytest.mark.processes


@pytest.fixture
def two_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Manager, Manager]]:
    """(producer, runner): the first runs no job, the second runs them all."""
    monkeypatch.setenv(DIR_VAR, str(tmp_path))
    dsn = require_postgres()
    managers: list[Manager] = []
    with fresh_schema(dsn) as schema:
        try:
            runner_config = WorkerConfig(storage=PostgresStorage(dsn, schema=schema))
            runner_config.register(Returns).register(Cooperative)
            runner = start(managers, runner_config, processes=1)
            producer = WorkerConfig(storage=PostgresStorage(dsn, schema=schema)).start(processes=0)
            managers.append(producer)
            yield producer, runner
        finally:
            for manager in managers:
                manager.stop(timeout=10)


def test_a_wait_on_one_host_is_woken_when_the_other_ends_the_job(
    two_hosts: tuple[Manager, Manager],
) -> None:
    producer, _ = two_hosts
    job = producer.queue(Returns(value={"from": "the other host"}, seconds=0.5))
    began = time.monotonic()
    assert producer.wait(job, timeout=20) == {"from": "the other host"}
    # Woken by NOTIFY, not by the 1 s-scale polling a fallback would need.
    assert time.monotonic() - began < 5
    info = producer.info(job)
    assert info is not None and info.status is Status.SUCCEEDED
    ids = [producer.queue(Returns(value=i)) for i in range(20)]
    assert sorted(end.value() for _, end in producer.as_completed(ids, timeout=20)) == list(
        range(20)
    )


def test_a_cancel_on_one_host_stops_the_job_running_on_the_other(
    two_hosts: tuple[Manager, Manager], tmp_path: Path
) -> None:
    producer, runner = two_hosts
    job = producer.queue(Cooperative(tag="remote"))
    wait_until(lambda: lines(tmp_path, "coop.log"), what="the job to start on the runner")

    asked = time.monotonic()
    assert producer.cancel(job) is True
    with pytest.raises(JobCancelled):
        producer.wait(job, timeout=10)
    assert time.monotonic() - asked < 1.0 + 1.0  # heard within 1 s, stopped at the exception
    assert ["interrupted", "remote", "True"] in lines(tmp_path, "coop.log")
    assert runner.stats().arbiters[0].restarts == 0
    assert producer.cancel(job) is False  # ended: left as it is
