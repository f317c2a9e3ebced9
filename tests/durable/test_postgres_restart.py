"""The PostgreSQL server restarts mid-run: the host carries on by itself.

``pg_ctlcluster ... restart -m fast`` ends every connection while jobs are
being queued and run. A queue() that falls in the outage is refused with a
StorageError naming the cause; every one that was acknowledged runs; the
Manager, its StorageActor and its listener live on and take new work. Runs
where this machine has the packaged cluster and the right to restart it (as
in CI); skipped elsewhere, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from actors.ops import StorageError
from storage.postgres import PostgresStorage
from supervisor import WorkerConfig
from tests.runtime.jobs import DIR_VAR, Record, lines

from .pg_host import fresh_schema, require_postgres

pytestmark = pytest.mark.processes

BATCHES = 30
PER_BATCH = 100


def restart_command() -> list[str]:
    clusters = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if shutil.which("pg_ctlcluster") is None or not clusters or os.geteuid() != 0:
        pytest.skip("needs the packaged PostgreSQL cluster and root to restart it")
    return [
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        clusters[-1],
        "main",
        "restart",
        "-m",
        "fast",
    ]


def test_a_server_restart_mid_run_loses_no_acknowledged_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = restart_command()
    dsn = require_postgres()
    monkeypatch.setenv(DIR_VAR, str(tmp_path))
    restarted: list[subprocess.CompletedProcess[str]] = []

    def restart() -> None:
        time.sleep(0.5)
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
        restarted.append(done)

    with fresh_schema(dsn) as schema:
        config = (
            WorkerConfig(storage=PostgresStorage(dsn, schema=schema))
            .register(Record)
            .set_worker_count("default", 4)
        )
        with config.start(processes=2) as manager:
            acknowledged: list[str] = []
            refused: list[StorageError] = []
            thread = threading.Thread(target=restart)
            thread.start()
            for batch in range(BATCHES):
                tags = [f"{batch}-{k}" for k in range(PER_BATCH)]
                try:
                    manager.queue_many(Record(tag=tag) for tag in tags)
                except StorageError as exc:
                    refused.append(exc)
                else:
                    acknowledged += tags
                time.sleep(0.1)
            thread.join()
            assert restarted and restarted[0].returncode == 0, restarted
            manager.queue(Record(tag="after"))  # it takes work once the server is back
            manager.join(timeout=120)
            ran = {f[0] for f in lines(tmp_path, "runs.log")}
            assert ran >= {*acknowledged, "after"}
            assert len(refused) < BATCHES  # the outage is seconds, not the run
            assert all("Push failed" in str(exc) for exc in refused)
