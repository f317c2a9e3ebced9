"""A user's own script, run as the README says, with nothing configured.

Each test writes a small app into a temporary directory (a jobs module and a
service script that builds its config at module level, as the Quickstart
does) and runs the script in a subprocess, so that ``__main__`` really is the
user's script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

JOBS = """
from dataclasses import dataclass
from supervisor import Job

@dataclass
class Mark(Job):
    n: int

    def run(self, state):
        pass
"""

SERVICE = """
print("module level ran", flush=True)
{setup}
from supervisor import WorkerConfig
from myjobs import Mark

config = WorkerConfig(storage={storage}).register(Mark)

if __name__ == "__main__":
    with config.start(processes=2) as manager:
        manager.queue_many(Mark(n) for n in range({jobs}))
        manager.join(timeout=120)
        left = sum(q.pending + q.running for q in manager.stats().queues.values())
        print("left", left, flush=True)
"""

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_script(tmp_path: Path) -> Run:
    (tmp_path / "myjobs.py").write_text(textwrap.dedent(JOBS))

    def run(
        *, storage: str = "None", jobs: int = 200, setup: str = "", script: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        source = script or SERVICE.format(storage=storage, jobs=jobs, setup=setup)
        (tmp_path / "service.py").write_text(textwrap.dedent(source))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, "service.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    return run


def test_a_script_on_memory_storage_prints_nothing_of_its_own_for_20000_jobs(
    run_script: Run,
) -> None:
    done = run_script(jobs=20_000)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "module level ran\nleft 0\n"


def test_a_script_on_sqlite_runs_every_job_and_its_module_level_once(run_script: Run) -> None:
    # Arbiters that re-ran the script would open the locked file and crash-loop.
    done = run_script(
        storage='SqliteStorage("jobs.db")', setup="from supervisor import SqliteStorage"
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "module level ran\nleft 0\n"


def test_a_script_on_postgres_runs_every_job_and_its_module_level_once(run_script: Run) -> None:
    from tests.durable.pg_host import fresh_schema, require_postgres  # noqa: PLC0415

    dsn = require_postgres()
    with fresh_schema(dsn) as schema:
        done = run_script(
            storage=f"PostgresStorage({dsn!r}, schema={schema!r})",
            setup="from supervisor import PostgresStorage",
        )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "module level ran\nleft 0\n"


def test_a_job_class_in_the_script_is_refused_with_the_fix(run_script: Run) -> None:
    done = run_script(
        script="""
        from dataclasses import dataclass
        from supervisor import Job, WorkerConfig

        @dataclass
        class Local(Job):
            def run(self, state):
                pass

        WorkerConfig().register(Local)
        """
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "TypeError: job class Local is defined in the script being run (__main__); "
        "arbiters import it by name and never run that script: move it into a module "
        "(for example myapp/jobs.py) and import it from there"
    )


def test_a_state_factory_in_the_script_is_refused_at_start(run_script: Run) -> None:
    done = run_script(
        script="""
        from supervisor import WorkerConfig
        from myjobs import Mark

        def make_state(handle):
            return {}

        if __name__ == "__main__":
            WorkerConfig(state=make_state).register(Mark).start()
        """
    )
    assert done.returncode == 1
    assert "TypeError: state factory make_state is defined in the script being run" in done.stderr


def test_per_job_events_show_at_debug_with_stdlib_logging(run_script: Run) -> None:
    done = run_script(
        jobs=50,
        setup="import logging\n"
        "logging.basicConfig(level=logging.DEBUG, format='%(name)s %(message)s')",
    )
    assert done.returncode == 0, done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("jobarbiter.")]
    started = [line for line in ours if line.startswith("jobarbiter.storage job started ")]
    succeeded = [line for line in ours if line.startswith("jobarbiter.storage job succeeded ")]
    assert (len(started), len(succeeded)) == (50, 50)
    assert "job_name=myjobs.Mark queue=default" in started[0]
    assert any(line.startswith("jobarbiter.manager arbiter started arbiter=0") for line in ours)


STRUCTLOG = """
import logging
import structlog

handler = logging.StreamHandler()
handler.setFormatter(
    structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(default=str),
        ],
    )
)
logging.getLogger().addHandler(handler)
logging.getLogger("jobarbiter").setLevel(logging.DEBUG)
"""


def test_events_are_structlog_events_where_the_app_configures_structlog(
    run_script: Run,
) -> None:
    done = run_script(jobs=10, setup=STRUCTLOG)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    succeeded = [e for e in events if e["event"] == "job succeeded"]
    assert len(succeeded) == 10
    assert {e["level"] for e in succeeded} == {"debug"}
    assert all(len(e["job_id"]) == 36 and e["runner"] for e in succeeded)
    started = [e for e in events if e["event"] == "arbiter started"]
    assert sorted(e["arbiter"] for e in started) == [0, 1]
