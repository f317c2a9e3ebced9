"""The operator commands of the jobarbiter CLI, on what a real run left behind.

Each backend's story starts a real Manager (one arbiter) on its storage, runs
jobs that succeed, return a value, fail until dead, wait for later or sit on
a queue nobody serves, stops it, and then walks the commands over the stored
jobs, checking what they print and what they changed (read back through a
storage opened afresh). The same commands then run against a live service
over HTTP. The error tests need no run: one line on stderr, a non-zero exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from storage import JobInfo, SqliteStorage, Status, Storage
from supervisor import JobFailed, Manager, WorkerConfig, jsonview
from supervisor.cli import build_parser, main
from supervisor.storage_ops import open_operations
from tests.durable.pg_host import fresh_schema, require_postgres
from tests.runtime.jobs import DIR_VAR, AlwaysFails, Record, Returns
from tests.runtime.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


# -- running the command ----------------------------------------------------------


@dataclass
class Ran:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.status == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def cli(cli_logging: None, capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """``cli("jobs", "--url", url)``: main() in this process, its output captured."""

    def run(*args: str) -> Ran:
        capsys.readouterr()
        status = main(["--log-level", "warning", *args])
        out, err = capsys.readouterr()
        return Ran(status, out, err)

    return run


def one_error(ran: Ran, status: int, starts: str) -> str:
    """The one line of a failed command."""
    assert ran.status == status, (ran.status, ran.out, ran.err)
    assert ran.out == ""
    assert ran.err.count("\n") == 1, ran.err
    assert ran.err.startswith("jobarbiter: " + starts), ran.err
    return ran.err.strip()


def command() -> list[str]:
    """The installed console script, or the module where it is not installed."""
    script = shutil.which("jobarbiter", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "supervisor.cli"]


def subprocess_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def table(out: str) -> list[dict[str, str]]:
    """An aligned table's rows, by header: columns start where their header does."""
    header, *rows = out.splitlines()
    names = header.split("   ")
    names = [n.strip() for n in names if n.strip()]
    starts = [header.index(name) for name in names]
    ends = [*starts[1:], None]
    return [
        {name: row[start:end].strip() for name, start, end in zip(names, starts, ends, strict=True)}
        for row in rows
    ]


# -- a real run ---------------------------------------------------------------------


@dataclass
class Run:
    """What a real run left in its storage."""

    url: str
    reopen: Callable[[], Storage]
    succeeded: uuid.UUID
    returned: uuid.UUID
    dead: list[uuid.UUID]  # queue default
    other_dead: uuid.UUID  # queue other
    scheduled: uuid.UUID
    unserved: uuid.UUID
    order: list[uuid.UUID]  # every id, in the order queued


def real_run(storage: Storage, url: str, reopen: Callable[[], Storage]) -> Run:
    config = (
        WorkerConfig(storage=storage)
        .register(Record)
        .register(Returns)
        .register(AlwaysFails)
        .set_worker_count("default", 2)
        .set_worker_count("other", 1)
    )
    manager: Manager = config.start(processes=1)
    try:
        succeeded = manager.queue(Record(tag="ok"))
        returned = manager.queue(Returns(value={"answer": 42}))
        dead = [manager.queue(AlwaysFails(tag=f"dies-{n}")) for n in range(3)]
        other_dead = manager.queue(AlwaysFails(tag="other"), queue="other")
        scheduled = manager.schedule(Record(tag="later"), at=3600, priority=-7)
        unserved = manager.queue(Record(tag="nobody"), queue="unserved")
        assert manager.wait(returned, timeout=TIMEOUT) == {"answer": 42}
        manager.wait(succeeded, timeout=TIMEOUT)
        for job in [*dead, other_dead]:
            with pytest.raises(JobFailed):
                manager.wait(job, timeout=TIMEOUT)
    finally:
        manager.stop(timeout=10)
    order = [succeeded, returned, *dead, other_dead, scheduled, unserved]
    return Run(url, reopen, succeeded, returned, dead, other_dead, scheduled, unserved, order)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(DIR_VAR, str(tmp_path))  # where the test jobs note their runs
    return tmp_path


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    dsn = require_postgres()
    with fresh_schema(dsn) as schema:
        yield dsn, schema


def pg_url(dsn: str, schema: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    return (
        f"postgresql://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
        f"{params.get('port', 5432)}/{params['dbname']}?schema={schema}"
    )


@pytest.fixture(params=["sqlite", "postgres"])
def run(request: pytest.FixtureRequest, workdir: Path) -> Run:
    if request.param == "sqlite":
        path = workdir / "jobs.db"
        return real_run(
            SqliteStorage(path), f"sqlite:///{path}", lambda: SqliteStorage(path).open()
        )
    from storage.postgres import PostgresStorage  # noqa: PLC0415

    dsn, schema = request.getfixturevalue("pg_schema")
    return real_run(
        PostgresStorage(dsn, schema=schema),
        pg_url(dsn, schema),
        lambda: PostgresStorage(dsn, schema=schema, pool_size=1).open(),
    )


@contextmanager
def reopened(run: Run) -> Iterator[Storage]:
    """The run's storage, opened afresh (and closed: a SQLite file has one owner)."""
    storage = run.reopen()
    try:
        yield storage
    finally:
        storage.close()


def stored(run: Run, job_id: uuid.UUID) -> JobInfo | None:
    with reopened(run) as storage:
        return storage.info(job_id)


# -- the story on each storage --------------------------------------------------------


def shown(name: str, value: object) -> str:
    """A line of ``show``: the labels padded to the longest ("Unique key:")."""
    return f"{name + ':':<12}{value}"


@pytest.mark.processes
def test_every_command_on_what_a_real_run_stored(run: Run, cli: Callable[..., Ran]) -> None:
    reading(run, cli)
    changing(run, cli)
    # The same through the installed command, the URL from the environment.
    first = run.dead[0]
    child = subprocess_cli("jobs", "--status", "pending", "--json", env={"JOBARBITER_URL": run.url})
    assert child.returncode == 0, child.stderr
    assert ids(json.loads(child.stdout)["jobs"]) == [first, run.other_dead, run.unserved]
    missing = subprocess_cli("show", str(uuid.uuid4()), "--url", run.url)
    assert missing.returncode == 1
    assert missing.stderr.startswith("jobarbiter: no job ")
    assert missing.stderr.count("\n") == 1


def reading(run: Run, cli: Callable[..., Ran]) -> None:
    url, first = run.url, run.dead[0]

    # stats: the stored counts, per queue.
    stats = cli("stats", "--url", url)
    assert stats.status == 0, stats.err
    rows = {row["QUEUE"]: row for row in table(stats.out)}
    assert list(rows) == ["default", "other", "unserved"]
    assert rows["default"] == {
        "QUEUE": "default",
        "PENDING": "1",
        "SCHEDULED": "1",
        "WAITING": "0",
        "RUNNING": "0",
        "DEAD": "3",
        "OLDEST DUE": "-",  # its one pending job is not due
        "PAUSED": "no",
        "BY PRIORITY": "-",  # its pending jobs are at one level
    }
    assert (rows["other"]["PENDING"], rows["other"]["DEAD"]) == ("0", "1")
    assert (rows["unserved"]["PENDING"], rows["unserved"]["PAUSED"]) == ("1", "no")
    assert rows["unserved"]["OLDEST DUE"].endswith("s")  # due since the run, waiting
    check_stats_json(cli("stats", "--url", url, "--json").json())

    # jobs: every kept record, in the order queued, by page.
    listed = table(cli("jobs", "--url", url).out)
    # In the order queued, each with its priority (the scheduled one's given).
    assert [(uuid.UUID(row["ID"]), row["PRIORITY"]) for row in listed] == [
        (job, "-7" if job == run.scheduled else "0") for job in run.order
    ]
    statuses = {uuid.UUID(row["ID"]): row["STATUS"] for row in listed}
    assert [statuses[job] for job in [*run.dead, run.other_dead]] == ["dead"] * 4
    assert statuses[run.scheduled] == "scheduled"
    assert (statuses[run.succeeded], statuses[run.unserved]) == ("succeeded", "pending")
    dead_rows = [row for row in listed if row["STATUS"] == "dead"]
    assert {row["ATTEMPTS"] for row in dead_rows} == {"3"}
    assert dead_rows[0]["LAST ERROR"].startswith("ValueError: always fails: dies-0")

    page = cli("jobs", "--url", url, "--limit", "2")
    assert [uuid.UUID(row["ID"]) for row in table(page.out)] == run.order[:2]
    assert page.err == f"next page: --after {run.order[1]}\n"
    rest = cli("jobs", "--url", url, "--after", str(run.order[1]), "--json").json()
    assert (ids(rest["jobs"]), rest["next"]) == (run.order[2:], None)
    last = cli("jobs", "--url", url, "--after", str(run.order[-2]), "--limit", "1")
    assert (len(table(last.out)), last.err) == (1, "")  # a full page, but the last one
    dead = cli("jobs", "--url", url, "--status", "dead", "--json").json()["jobs"]
    assert ids(dead) == [*run.dead, run.other_dead]
    assert dead[0]["attempts"] == 3 and "arguments" not in dead[0]
    later = cli("jobs", "--url", url, "--status", "scheduled", "--json").json()
    assert [(job["id"], job["priority"]) for job in later["jobs"]] == [(str(run.scheduled), -7)]
    other = cli("jobs", "--url", url, "--queue", "unserved", "--json").json()
    assert ids(other["jobs"]) == [run.unserved]
    named = cli("jobs", "--url", url, "--name", AlwaysFails.NAME, "--json").json()
    assert ids(named["jobs"]) == [*run.dead, run.other_dead]
    named = cli("jobs", "--url", url, "--name", Record.NAME, "--status", "pending", "--json")
    assert ids(named.json()["jobs"]) == [run.scheduled, run.unserved]

    # show: the record, the arguments only when asked.
    record = cli("show", str(first), "--url", url)
    assert record.status == 0, record.err
    lines = record.out.splitlines()
    assert shown("ID", first) in lines
    assert {shown("Status", "dead"), shown("Priority", "0")} <= set(lines)
    assert shown("Attempts", "3 (retries allowed: 2)") in lines
    assert shown("Last error", "ValueError: always fails: dies-0") in lines
    assert "Arguments" not in record.out
    with_arguments = cli("show", str(first), "--arguments", "--url", url)
    assert shown("Arguments", '{"tag": "dies-0"}') in with_arguments.out.splitlines()
    result = cli("show", str(run.returned), "--url", url)
    assert shown("Result", "{'answer': 42}") in result.out.splitlines()
    check_job_json(cli("show", str(run.returned), "--url", url, "--json").json(), run.returned)


def changing(run: Run, cli: Callable[..., Ran]) -> None:
    url = run.url
    first, second, third = run.dead

    # requeue one: pending again, due now, retries afresh; a second time is refused.
    done = cli("requeue", str(first), "--url", url)
    assert (done.status, done.out) == (0, f"requeued {first}: pending, due now\n")
    again = stored(run, first)
    assert again is not None
    assert (again.status, again.retry_count) == (Status.PENDING, 0)
    not_dead = f"job {first} is not dead: it is pending"
    one_error(cli("requeue", str(first), "--url", url), 1, not_dead)

    # requeue --all-dead, of one queue: the others' stay dead.
    requeued = cli("requeue", "--all-dead", "--queue", "other", "--url", url)
    assert requeued.out == "requeued 1 dead job of other\n"
    assert cli("requeue", "--all-dead", "--queue", "unserved", "--json", "--url", url).json() == {
        "requeued": 0
    }
    still_dead = cli("jobs", "--url", url, "--status", "dead", "--json").json()["jobs"]
    assert ids(still_dead) == [second, third]

    # purge-dead: not those dead for less than a week; then the rest.
    kept = cli("purge-dead", "--older-than", "7d", "--url", url)
    assert kept.out == "purged 0 dead jobs dead longer than 7d\n"
    assert cli("purge-dead", "--url", url, "--json").json() == {"purged": 2}
    assert stored(run, second) is None and stored(run, third) is None
    one_error(cli("show", str(second), "--url", url), 1, f"no job {second}: never queued")

    # pause and resume are stored: a storage opened afresh reports them.
    assert cli("pause", "default", "--url", url).out == "paused default on every host\n"
    with reopened(run) as storage:
        assert storage.paused() == frozenset({"default"})
    paused = {row["QUEUE"]: row["PAUSED"] for row in table(cli("stats", "--url", url).out)}
    assert paused == {"default": "yes", "other": "no", "unserved": "no"}
    assert cli("resume", "default", "--url", url, "--json").json() == {
        "queue": "default",
        "paused": False,
        "local_only": False,
    }
    with reopened(run) as storage:
        assert storage.paused() == frozenset()
    one_error(cli("pause", "default", "--local-only", "--url", url), 2, "pausing one host only")

    # scale needs workers, which a storage has not.
    one_error(cli("scale", "default", "3", "--url", url), 2, "scaling default needs a running")

    # cancel: a scheduled job never runs; an ended one cannot be.
    assert cli("cancel", str(run.scheduled), "--url", url).out == f"cancelled {run.scheduled}\n"
    cancelled = stored(run, run.scheduled)
    assert cancelled is not None and cancelled.status is Status.CANCELLED
    ended = f"job {run.succeeded} has ended already: it is succeeded"
    one_error(cli("cancel", str(run.succeeded), "--url", url), 1, ended)


def ids(jobs: list[dict[str, Any]]) -> list[uuid.UUID]:
    return [uuid.UUID(job["id"]) for job in jobs]


def check_stats_json(document: Any) -> None:
    queues = document["queues"]
    assert (queues["default"]["dead"], queues["default"]["scheduled"]) == (3, 1)
    assert queues["unserved"]["pending"] == 1
    assert queues["other"]["dead"] == 1
    assert queues["default"]["paused"] is False


def check_job_json(document: Any, job_id: uuid.UUID) -> None:
    """The API's form: the record exactly, its value msgpack in base64."""
    assert jsonview.job_from_json(document).value() == {"answer": 42}
    assert (document["id"], document["status"]) == (str(job_id), "succeeded")


# -- errors -------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """An empty jobarbiter SQLite file."""
    path = tmp_path / "jobs.db"
    SqliteStorage(path).open().close()
    return f"sqlite:///{path}"


def test_no_url_says_how_to_give_one(
    cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOBARBITER_URL", raising=False)
    one_error(cli("stats"), 2, "say which storage or service: --url URL or $JOBARBITER_URL")


def test_a_url_of_no_known_form_lists_the_forms(cli: Callable[..., Ran]) -> None:
    error = one_error(cli("stats", "--url", "redis://:secret@localhost/0"), 2, "unknown URL")
    assert "sqlite:///relative/path.db" in error and "http://host:port" in error
    assert "secret" not in error


def test_a_missing_sqlite_file_is_named_and_not_made(
    cli: Callable[..., Ran], tmp_path: Path
) -> None:
    path = tmp_path / "nowhere.db"
    one_error(cli("jobs", "--url", f"sqlite:///{path}"), 1, f"cannot open {path}: no such file")
    assert not path.exists()
    one_error(cli("jobs", "--url", "sqlite://jobs.db"), 2, "a SQLite URL is sqlite:///")


def test_a_sqlite_file_of_another_application_is_left_alone(
    cli: Callable[..., Ran], tmp_path: Path
) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.commit()
    one_error(
        cli("stats", "--url", f"sqlite:///{path}"), 1, f"cannot open {path}: not a jobarbiter"
    )
    with closing(sqlite3.connect(path)) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("users",)]


def test_a_relative_sqlite_path_is_from_the_current_directory(
    cli: Callable[..., Ran], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(sqlite_url.removeprefix("sqlite:///")).parent)
    ran = cli("stats", "--url", "sqlite:///jobs.db")
    assert (ran.status, ran.out) == (0, "no queues hold a job\n")


def test_a_sqlite_file_in_use_says_to_use_the_service(
    cli: Callable[..., Ran], sqlite_url: str
) -> None:
    host = SqliteStorage(sqlite_url.removeprefix("sqlite:///")).open()
    try:
        error = one_error(cli("stats", "--url", sqlite_url), 1, "")
    finally:
        host.close()
    assert "open in another host" in error
    assert error.endswith("use the host's service: --url http://HOST:PORT")


def test_job_ids_are_checked_before_anything_opens(cli: Callable[..., Ran], tmp_path: Path) -> None:
    nowhere = f"sqlite:///{tmp_path / 'nowhere.db'}"
    one_error(cli("show", "nope", "--url", nowhere), 2, "not a job id: 'nope'")
    one_error(cli("jobs", "--after", "12", "--url", nowhere), 2, "not a job id: '12'")


def test_an_unknown_job_is_named(cli: Callable[..., Ran], sqlite_url: str) -> None:
    job = uuid.uuid4()
    for args in (["show", str(job)], ["requeue", str(job)], ["cancel", str(job)]):
        one_error(cli(*args, "--url", sqlite_url), 1, f"no job {job}: never queued")


def test_stats_splits_pending_by_priority_when_there_are_several_levels(
    cli: Callable[..., Ran], sqlite_url: str
) -> None:
    storage = SqliteStorage(sqlite_url.removeprefix("sqlite:///")).open()
    try:
        storage.push_many([Returns(value=1).to_new(queue="mail") for _ in range(2)])
        urgent = Returns(value=1).to_new(queue="mail")._replace(priority=10)
        storage.push_many([urgent, urgent, urgent, Returns(value=1).to_new(queue="one")])
        storage.commit()
    finally:
        storage.close()
    ran = cli("stats", "--url", sqlite_url)
    assert ran.status == 0, ran.err
    rows = {row["QUEUE"]: row for row in table(ran.out)}
    assert (rows["mail"]["PENDING"], rows["mail"]["BY PRIORITY"]) == ("5", "10: 3, 0: 2")
    assert rows["one"]["BY PRIORITY"] == "-"  # one level: PENDING says it
    doc = cli("stats", "--json", "--url", sqlite_url).json()
    assert doc["queues"]["mail"]["pending_by_priority"] == [[10, 3], [0, 2]]
    assert doc["queues"]["one"]["pending_by_priority"] == [[0, 1]]


def test_options_are_checked(cli: Callable[..., Ran], sqlite_url: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli("purge-dead", "--older-than", "a week", "--url", sqlite_url)
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        cli("requeue", "--url", sqlite_url)  # neither an id nor --all-dead
    with pytest.raises(SystemExit):
        cli("jobs", "--status", "lost", "--url", sqlite_url)
    error = one_error(cli("requeue", str(uuid.uuid4()), "--queue", "q", "--url", sqlite_url), 2, "")
    assert "--queue goes with --all-dead" in error


def test_durations(cli: Callable[..., Ran], sqlite_url: str) -> None:
    from supervisor.commands import _duration  # noqa: PLC0415

    assert [_duration(t) for t in ("30s", "15m", "12h", "7d", "90", "1.5h")] == [
        30,
        900,
        43200,
        604800,
        90,
        5400,
    ]
    assert cli("purge-dead", "--older-than", "30s", "--url", sqlite_url).status == 0


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_an_unreachable_postgresql_server_is_named(scheme: str, cli: Callable[..., Ran]) -> None:
    url = f"{scheme}://postgres:hunter2@127.0.0.1:1/jobs?connect_timeout=2&schema=app"
    error = one_error(
        cli("stats", "--url", url), 1, "cannot reach PostgreSQL at 127.0.0.1:1 (database 'jobs')"
    )
    assert "hunter2" not in error


def test_a_missing_postgresql_schema_is_not_made(
    cli: Callable[..., Ran], pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    error = one_error(cli("stats", "--url", pg_url(dsn, schema)), 1, "no jobarbiter schema")
    assert repr(schema) in error
    with psycopg.connect(dsn) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
    assert found is None


def test_open_operations_closes_what_it_opened(sqlite_url: str) -> None:
    ops, close = open_operations(sqlite_url)
    assert ops.stats().queues == {}
    close()
    # Closed: the file has no owner now, so a host can take it.
    SqliteStorage(sqlite_url.removeprefix("sqlite:///")).open().close()


# -- a running service, over HTTP ------------------------------------------------------


APP = """
import os
from pathlib import Path

from supervisor import SqliteStorage, WorkerConfig
from tests.runtime.jobs import DIR_VAR, AlwaysFails, Record

def state(handle):
    # The first worker to start queues a job that dies: O_EXCL, as workers
    # of two queues start at once.
    try:
        os.close(os.open(Path(os.environ[DIR_VAR]) / "queued", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return None
    handle.queue(AlwaysFails(tag="served"))

config = (
    WorkerConfig(storage=SqliteStorage({path!r}), state=state)
    .register(Record)
    .register(AlwaysFails)
    .set_worker_count("default", 2)
)
"""


@pytest.mark.processes
def test_the_commands_on_a_running_service(
    cli: Callable[..., Ran], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``jobarbiter run --http`` serves the API; the commands work through it."""
    module = f"cliops_{uuid.uuid4().hex[:8]}"
    path = workdir / "jobs.db"
    (workdir / f"{module}.py").write_text(textwrap.dedent(APP.format(path=str(path))))
    token = "s3cret-token"
    service = subprocess.Popen(
        [*command(), "run", f"{module}:config", "--processes", "1", "--http", "127.0.0.1:0"],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT), "JOBARBITER_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert service.stdout is not None
        line = service.stdout.readline()
        prefix = "jobarbiter: serving the HTTP API at "
        assert line.startswith(prefix), line
        url = line.removeprefix(prefix).strip()
        served_story(cli, url, token, monkeypatch)
        # The file is the service's while it runs: the CLI says where to go.
        locked = one_error(cli("stats", "--url", f"sqlite:///{path}"), 1, "")
        assert locked.endswith("use the host's service: --url http://HOST:PORT")
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=TIMEOUT) == 0
    # Stopped: the file is free, and the stored pause of the story is in it.
    with closing(SqliteStorage(path).open()) as storage:
        assert storage.paused() == frozenset({"default"})


def served_story(
    cli: Callable[..., Ran], url: str, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOBARBITER_TOKEN", raising=False)
    # Reading needs no token; a change does.
    figures = cli("stats", "--url", url, "--json").json()["queues"]["default"]
    assert figures["workers"] == 2
    refused = one_error(cli("pause", "default", "--url", url), 1, "credentials required")
    assert refused.endswith(f"(HTTP 403 from {url}/api/queues/default/pause)")
    wrong = cli("pause", "default", "--url", url, "--token", "guess")
    one_error(wrong, 1, "wrong credentials")
    monkeypatch.setenv("JOBARBITER_TOKEN", token)

    # The job the service queued dies; requeued, it dies again; then purged.
    def dead() -> list[uuid.UUID]:
        return ids(cli("jobs", "--status", "dead", "--url", url, "--json").json()["jobs"])

    wait_until(dead, what="the served job to die")
    [job] = dead()
    record = cli("show", str(job), "--url", url).out.splitlines()
    assert shown("Last error", "ValueError: always fails: served") in record
    assert cli("requeue", str(job), "--url", url, "--json").json() == {"requeued": True}
    wait_until(lambda: dead() == [job], what="the requeued job to die again")
    assert cli("requeue", "--all-dead", "--url", url).out == "requeued 1 dead job\n"
    wait_until(lambda: dead() == [job], what="the requeued job to die once more")
    assert cli("purge-dead", "--url", url).out == "purged 1 dead job\n"
    one_error(cli("show", str(job), "--url", url), 1, f"no job {job}: never queued")

    # scale: the running arbiter takes a third slot.
    assert cli("scale", "default", "3", "--url", url).out == "default: 3 workers per arbiter\n"
    wait_until(
        lambda: cli("stats", "--url", url, "--json").json()["queues"]["default"]["slots"] == 3,
        what="the arbiter to have 3 slots",
    )
    queues, arbiters = cli("stats", "--url", url).out.split("\n\n")
    row = {row["QUEUE"]: row for row in table(queues)}["default"]
    assert (row["WORKERS"], row["SLOTS"], row["SUCCEEDED"]) == ("3", "3", "0")
    assert int(row["FAILED"]) >= 3  # this host's attempts that failed, since start
    [arbiter] = table(arbiters)
    assert (arbiter["ARBITER"], arbiter["STATE"]) == ("0", "running")

    # A pause of this host alone is not stored; a pause is.
    local = cli("pause", "default", "--local-only", "--url", url)
    assert local.out == "paused default on that service only\n"
    figures = cli("stats", "--url", url, "--json").json()["queues"]["default"]
    assert (figures["paused"], figures["paused_everywhere"]) == (True, False)
    assert cli("resume", "default", "--local-only", "--url", url).status == 0
    assert cli("pause", "default", "--url", url).status == 0
    paused = {row["QUEUE"]: row["PAUSED"] for row in table(cli("stats", "--url", url).out)}
    assert paused["default"] == "yes"


# -- the command line itself ----------------------------------------------------------


def test_help_lists_the_operator_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in ("stats", "jobs", "show", "requeue", "purge-dead", "pause", "resume", "scale"):
        assert f" {name} " in out
    assert "jobarbiter jobs --url sqlite:///jobs.db --status dead" in out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["jobs", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--url URL the storage or service: sqlite:///jobs.db" in out
    assert "(default: $JOBARBITER_URL)" in out
    assert "--token TOKEN" in out and "$JOBARBITER_TOKEN" in out
    assert "--status {pending,scheduled,waiting,running,dead,succeeded,cancelled}" in out


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":0", ("127.0.0.1", 0)),
        ("[::1]:9000", ("::1", 9000)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_http_addresses(text: str, address: tuple[str, int]) -> None:
    assert build_parser().parse_args(["run", "a:b", "--http", text]).http == address


@pytest.mark.parametrize("text", ["8080", "host:", "host:http", "host:70000"])
def test_a_bad_http_address_is_refused(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["run", "a:b", "--http", text])
    assert exit_.value.code == 2
    assert "expected HOST:PORT, e.g. 127.0.0.1:8080" in capsys.readouterr().err


@pytest.mark.processes
def test_run_stops_when_it_cannot_serve_http(workdir: Path) -> None:
    module = f"cliops_{uuid.uuid4().hex[:8]}"
    (workdir / f"{module}.py").write_text(textwrap.dedent(APP.format(path=str(workdir / "j.db"))))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*command(), "run", f"{module}:config", "--processes", "1", "--http", f":{port}"],
            cwd=workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"jobarbiter: cannot serve HTTP on 127.0.0.1:{port}: ")
    assert last.count("cannot serve HTTP") == 1
