"""PostgresStorage behind PgBouncer in transaction pooling mode.

Two hosts share a schema through the pooler, where consecutive transactions
meet different server connections: every job runs, and a job queued by one
host reaches the other's idle workers by NOTIFY, heard on ``listen_dsn``
(the server's own address), long before its poll would find it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.postgres import PostgresStorage
from supervisor import WorkerConfig
from tests.runtime.jobs import DIR_VAR, Record, lines
from tests.runtime.support import wait_until

from .pg_host import fresh_schema, require_postgres
from .pgbouncer import pgbouncer

pytestmark = pytest.mark.processes

POLL = 60.0  # so long that only a NOTIFY can bring the other host's jobs in time


def ran(folder: Path, prefix: str) -> set[str]:
    return {f[0] for f in lines(folder, "runs.log") if f[0].startswith(prefix)}


def test_two_hosts_behind_pgbouncer_run_every_job_and_hear_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = require_postgres()
    monkeypatch.setenv(DIR_VAR, str(tmp_path))
    with pgbouncer(server) as pooled, fresh_schema(server) as schema:
        other = PostgresStorage(pooled, schema=schema, listen_dsn=server).open()
        try:
            storage = PostgresStorage(pooled, schema=schema, listen_dsn=server, poll_interval=POLL)
            config = WorkerConfig(storage=storage).register(Record).set_worker_count("default", 4)
            with config.start(processes=2) as manager:
                manager.queue_many(Record(tag=f"here-{i}") for i in range(500))
                manager.join(timeout=60)
                assert ran(tmp_path, "here-") == {f"here-{i}" for i in range(500)}

                other.push_many([Record(tag=f"there-{i}").to_new() for i in range(200)])
                other.commit()
                expected = {f"there-{i}" for i in range(200)}
                wait_until(
                    lambda: ran(tmp_path, "there-") == expected,
                    timeout=POLL / 4,
                    what="the other host's jobs, by NOTIFY",
                )
                manager.join(timeout=60)
        finally:
            other.close()
