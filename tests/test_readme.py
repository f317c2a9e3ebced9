"""The README's code runs as it stands, so it cannot drift from the library.

Its Quickstart blocks carry ``<!-- file: PATH -->`` markers: they are written
to those paths and the service is run as the README says. A block marked
``<!-- replaces: NAME in PATH -->`` replaces the statement that assigns NAME
in that file (the Storage section's SQLite config) and the service runs again.
A ``<!-- snippet: NAME -->`` block (the logging examples) runs ahead of a few
of the library's events, and what they print is checked.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"<!-- (file|replaces|snippet): ([^>]+?) -->\n```python\n(.*?)```", re.S)

pytestmark = pytest.mark.processes


def blocks(kind: str) -> dict[str, str]:
    return {target: code for found, target, code in BLOCK.findall(README) if found == kind}


def replace_assignment(source: str, name: str, code: str) -> str:
    """``source`` with the top-level statement that assigns ``name`` replaced by ``code``."""
    lines = source.splitlines(keepends=True)
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            assert node.end_lineno is not None
            return "".join([*lines[: node.lineno - 1], code, *lines[node.end_lineno :]])
    raise AssertionError(f"no top-level assignment to {name!r}")


def run_service(app: Path, module: str = "myapp.service") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=app,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def app(tmp_path: Path) -> Path:
    files = blocks("file")
    assert set(files) == {
        "myapp/jobs.py",
        "myapp/service.py",
        "myapp/reports.py",
        "myapp/report_service.py",
    }
    for path, code in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(code)
    return tmp_path


def check_quickstart_run(app: Path) -> None:
    done = run_service(app)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing configured: the library stays quiet
    first, second = done.stdout.splitlines()
    assert first == "None"  # the job succeeded
    assert second.startswith("ManagerStats(queues={'mail': QueueFigures(pending=1, ")
    assert "scheduled=1," in second  # the mail for later, which join does not wait for
    mails = (app / "outbox.txt").read_text().splitlines()
    assert len(mails) == 101
    assert sorted(mails)[0] == "a@example.com hi"
    (app / "outbox.txt").unlink()


def test_the_quickstart_runs_as_written(app: Path) -> None:
    check_quickstart_run(app)


def test_the_results_example_runs_as_written(app: Path) -> None:
    done = run_service(app, "myapp.report_service")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    first, *ended, cancelled, why = done.stdout.splitlines()
    assert first == "{'words': 6}"
    assert sorted(ended) == [f"succeeded {{'words': {n}}}" for n in range(3)]  # as they end
    assert (cancelled, why) == ("True", "cancelled: cancelled by Manager.cancel()")


def test_the_quickstart_on_sqlite_runs_as_written(app: Path) -> None:
    replacements = blocks("replaces")
    assert list(replacements) == ["config in myapp/service.py"]
    name, _, path = "config in myapp/service.py".partition(" in ")
    service = app / path
    service.write_text(
        replace_assignment(service.read_text(), name, replacements["config in myapp/service.py"])
    )
    check_quickstart_run(app)
    assert (app / "jobs.db").exists()


EVENTS = """
import uuid
from storage.events import EventLog

log = EventLog("manager")
log.info("arbiter started", arbiter=0, pid=42)
log.debug("job succeeded", job_id=uuid.UUID(int=7), runner="r-0")
"""


def run_snippet(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", blocks("snippet")[name] + EVENTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_the_logging_snippet_shows_lifecycle_and_per_job_events() -> None:
    assert run_snippet("logging").stderr.splitlines() == [
        "INFO:jobarbiter.manager:arbiter started arbiter=0 pid=42",
        "DEBUG:jobarbiter.manager:job succeeded "
        "job_id=00000000-0000-0000-0000-000000000007 runner=r-0",
    ]


def test_the_structlog_snippet_gives_structured_events() -> None:
    events = [json.loads(line) for line in run_snippet("structlog").stderr.splitlines()]
    assert events == [{"arbiter": 0, "pid": 42, "event": "arbiter started", "level": "info"}]
