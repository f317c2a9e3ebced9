"""The jobarbiter command: arguments, loading the target, its logging, the demo's output."""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

import supervisor.demo
from storage.events import EventLog
from supervisor import WorkerConfig
from supervisor.cli import build_parser, configure_logging, load_config, main
from tests.runtime.jobs import DIR_VAR
from tests.runtime.support import wait_until

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(text: str) -> str:
    """Help text as one line, whatever width argparse wrapped it to."""
    return " ".join(text.split())


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Writes a user module into the current directory, where ``run`` looks first."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"cliapp_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def json_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# -- arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "json_logs", "level"),
    [
        (["run", "m:c"], False, "info"),
        (["--log-json", "--log-level", "debug", "run", "m:c"], True, "debug"),
        (["run", "m:c", "--log-json", "--log-level", "debug"], True, "debug"),
        (["--log-json", "run", "m:c", "--log-level", "warning"], True, "warning"),
        (["--log-level", "debug", "run", "m:c", "--processes", "2"], False, "debug"),
        (["demo", "--log-json"], True, "info"),
        (["--log-level", "warning", "demo", "--jobs", "5"], False, "warning"),
    ],
)
def test_log_options_work_before_and_after_the_subcommand(
    argv: list[str], json_logs: bool, level: str
) -> None:
    args = build_parser().parse_args(argv)
    assert (args.log_json, args.log_level) == (json_logs, level)


def test_log_json_after_run_is_accepted_by_the_command() -> None:
    # Stops at the target, before any arbiter: only the parsing is under test.
    result = cli("run", "tests.runtime.jobs:DIR_VAR", "--processes", "2", "--log-json")
    assert "unrecognized arguments" not in result.stderr
    assert result.stderr.startswith("jobarbiter: tests.runtime.jobs:DIR_VAR is a str")


@pytest.mark.parametrize(
    ("argv", "option", "complaint"),
    [
        (["run", "m:c", "--processes", "0"], "--processes", "must be at least 1, got 0"),
        (["run", "m:c", "--processes", "-3"], "--processes", "must be at least 1, got -3"),
        (["run", "m:c", "--processes", "two"], "--processes", "at least 1, got 'two'"),
        (["run", "m:c", "--grace", "-1"], "--grace", "0 or more, got '-1'"),
        (["run", "m:c", "--grace", "nan"], "--grace", "0 or more, got 'nan'"),
        (["run", "m:c", "--grace", "soon"], "--grace", "0 or more, got 'soon'"),
        (["demo", "--jobs", "0"], "--jobs", "must be at least 1"),
        (["demo", "--processes", "0"], "--processes", "must be at least 1"),
        (["demo", "--workers", "-1"], "--workers", "must be at least 1"),
    ],
)
def test_bad_numbers_are_usage_errors(
    argv: list[str], option: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"jobarbiter {argv[0]}: error: argument {option}: ")
    assert complaint in last


@pytest.mark.parametrize("grace", ["0", "2.5"])
def test_grace_of_zero_or_more_is_accepted(grace: str) -> None:
    assert build_parser().parse_args(["run", "m:c", "--grace", grace]).grace == float(grace)


def test_processes_zero_from_the_command_line_is_a_usage_error_not_a_traceback() -> None:
    result = cli("run", "m:c", "--processes", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "jobarbiter run: error: argument --processes: must be at least 1, got 0"
    )


def test_a_target_without_a_colon_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "myapp.service"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: jobarbiter run")
    assert "argument MODULE:ATTR: expected module:attribute" in err


# -- the target -------------------------------------------------------------------


def test_pointing_at_a_job_class_says_what_to_point_at() -> None:
    result = cli("run", "tests.runtime.jobs:Sleepy")
    assert result.returncode == 2
    assert result.stderr == (
        "jobarbiter: tests.runtime.jobs:Sleepy is a class (a Job), not a WorkerConfig: "
        "point at the WorkerConfig, e.g. myapp.service:config\n"
    )


@pytest.mark.parametrize(
    ("target", "found"),
    [
        ("storage:ManualClock", "a class (ManualClock)"),
        ("supervisor:WorkerConfig", "the WorkerConfig class"),
        ("tests.runtime.jobs:DIR_VAR", "a str"),
        ("tests.runtime:jobs", "a module"),
    ],
)
def test_a_target_that_is_not_a_worker_config_is_named(
    target: str, found: str, cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", target]) == 2
    assert capsys.readouterr().err == (
        f"jobarbiter: {target} is {found}, not a WorkerConfig: "
        "point at the WorkerConfig, e.g. myapp.service:config\n"
    )


def test_a_function_returning_a_worker_config_is_called(app: Any) -> None:
    module = app(
        """
        from supervisor import WorkerConfig

        def make():
            return WorkerConfig(max_jobs_per_arbiter=7)
        """
    )
    config = load_config(f"{module}:make")
    assert isinstance(config, WorkerConfig)
    assert config.max_jobs_per_arbiter == 7


@pytest.mark.parametrize(
    "case",
    [
        (
            "def make():\n    raise RuntimeError('no DATABASE_URL\\nsecond line')\n",
            "make",
            1,
            "{module}:make() raised RuntimeError: no DATABASE_URL",
        ),
        (
            "def make():\n    return 3\n",
            "make",
            2,
            "{module}:make() returned an int, not a WorkerConfig",
        ),
        ("x = 1\n", "config", 2, "module {module} has no attribute 'config'"),
        (
            "raise OSError('settings.toml not found')\n",
            "config",
            1,
            "cannot import {module}: OSError: settings.toml not found",
        ),
        (
            "import nosuchdependency_cli\n",
            "config",
            1,
            "cannot import {module}: ModuleNotFoundError: No module named 'nosuchdependency_cli'",
        ),
        ("config = (\n", "config", 1, "cannot import {module}: SyntaxError: "),
    ],
)
def test_a_target_that_fails_gives_one_line_and_no_traceback(
    case: tuple[str, str, int, str], app: Any, cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source, attr, status, message = case
    module = app(source)
    assert main(["run", f"{module}:{attr}"]) == status
    err = capsys.readouterr().err
    assert err.startswith("jobarbiter: " + message.format(module=module))
    assert err.count("\n") == 1


def test_a_missing_module_is_named(cli_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "nosuchapp_cli.service:config"]) == 2
    assert capsys.readouterr().err == (
        "jobarbiter: cannot import nosuchapp_cli.service: "
        "ModuleNotFoundError: No module named 'nosuchapp_cli'\n"
    )


def test_a_config_that_cannot_start_is_an_error_not_a_traceback(
    app: Any, cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    module = app("from supervisor import WorkerConfig\nconfig = WorkerConfig()\n")
    assert main(["run", f"{module}:config"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"jobarbiter: cannot start {module}:config: ValueError: register at least one job"
    )
    assert err.count("\n") == 1


CRASHING_APP = """
from dataclasses import dataclass
from supervisor import Job, WorkerConfig

@dataclass
class Nothing(Job):
    def run(self, state):
        pass

def broken_state(handle):
    raise ConnectionRefusedError("smtp.example is down")

config = WorkerConfig(state=broken_state).register(Nothing)
"""


RUN = [sys.executable, "-m", "supervisor.cli", "run"]


@pytest.mark.processes
def test_a_crash_loop_ends_the_command_with_its_message(app: Any, tmp_path: Path) -> None:
    module = app(CRASHING_APP)
    started = time.monotonic()
    done = subprocess.run(
        [*RUN, f"{module}:config", "--processes", "2", "--crash-loop-exit", "0.5"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert time.monotonic() - started < 30  # a few restart periods, not a hang
    assert done.stderr.splitlines()[-1] == (
        "jobarbiter: every arbiter (2) is in a crash loop, dying at start-up: "
        "ConnectionRefusedError: smtp.example is down"
    )
    assert "arbiter in a crash loop" in done.stderr  # logged at error on the way


# -- help and version -------------------------------------------------------------


def test_help_is_plain_text_with_an_example() -> None:
    result = cli("--help")
    assert result.returncode == 0
    assert "``" not in result.stdout
    assert "jobarbiter run myapp.service:config --processes 2" in result.stdout
    assert "run a WorkerConfig until SIGTERM or SIGINT" in result.stdout


def test_run_help_explains_every_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["run", "--help"])
    assert exit_.value.code == 0
    out = one_line(capsys.readouterr().out)
    assert "``" not in out
    assert "MODULE:ATTR a WorkerConfig, or a function returning one, as module:attribute" in out
    assert "--processes PROCESSES arbiter processes (default: the number of CPUs)" in out
    assert "--grace GRACE seconds running jobs get to finish on stop" in out
    assert "--log-json log JSON lines" in out
    assert "--log-level {debug,info,warning,error} debug also shows every job's events" in out


def test_demo_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    out = one_line(capsys.readouterr().out)
    for option in ("--jobs JOBS default", "--processes PROCESSES default", "--workers WORKERS"):
        assert option in out


def test_version_is_the_installed_distributions() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"jobarbiter {importlib.metadata.version('jobarbiter')}\n"


# -- logging ----------------------------------------------------------------------


def test_library_records_are_json_events_with_their_fields(
    cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json=True, level="info")
    log = EventLog("clitest")
    log.info("arbiter started", arbiter=0, pid=123, note="a b")
    log.debug("job started", job_id="j1")  # below --log-level info
    logging.getLogger("otherlib").info("chatter")  # other libraries: warnings only
    logging.getLogger("otherlib").warning("disk almost full")
    events = json_events(capsys.readouterr().err)
    assert [e["event"] for e in events] == ["arbiter started", "disk almost full"]
    started = events[0]
    assert {k: started[k] for k in ("arbiter", "pid", "note", "level", "logger")} == {
        "arbiter": 0,
        "pid": 123,
        "note": "a b",
        "level": "info",
        "logger": "jobarbiter.clitest",
    }
    assert started["timestamp"].endswith("Z")
    assert "message" not in started


def test_debug_level_shows_per_job_events(
    cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json=True, level="debug")
    EventLog("clitest").debug("job started", job_id="j1")
    EventLog("clitest").debug("job succeeded", job_id="j1")
    events = json_events(capsys.readouterr().err)
    assert [(e["event"], e["job_id"], e["level"]) for e in events] == [
        ("job started", "j1", "debug"),
        ("job succeeded", "j1", "debug"),
    ]


def test_structlog_loggers_go_to_the_same_output(
    cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json=True, level="info")
    log = structlog.get_logger("jobarbiter.clitest")
    log.debug("hidden")
    log.warning("job failed, will retry", job_id="j2")
    [event] = json_events(capsys.readouterr().err)
    assert (event["event"], event["job_id"], event["level"]) == (
        "job failed, will retry",
        "j2",
        "warning",
    )
    assert event["logger"] == "jobarbiter.clitest"


def test_exceptions_are_rendered_into_the_json_line(
    cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json=True, level="info")
    try:
        raise ValueError("bad frame")
    except ValueError as exc:
        EventLog("clitest").error("storage operation failed", op="Push", exc_info=exc)
    [event] = json_events(capsys.readouterr().err)
    assert event["op"] == "Push"
    assert "Traceback" in event["exception"]
    assert "ValueError: bad frame" in event["exception"]


def test_console_lines_show_the_event_once_and_its_fields(
    cli_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json=False, level="info")
    EventLog("clitest").warning("arbiter died", arbiter=1, exit="signal SIGKILL")
    [line] = capsys.readouterr().err.splitlines()
    assert line.count("arbiter died") == 1
    assert "arbiter=1" in line
    assert "exit='signal SIGKILL'" in line
    assert "[warning" in line


def test_a_closed_stderr_is_not_reported_by_logging(
    cli_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = io.StringIO()
    monkeypatch.setattr(sys, "stderr", closed)
    configure_logging(json=True, level="info")
    closed.close()
    # Where stdlib's handleError would print "--- Logging error ---".
    seen = io.StringIO()
    monkeypatch.setattr(sys, "stderr", seen)
    EventLog("clitest").warning("arbiter died", arbiter=1)
    structlog.get_logger("jobarbiter.clitest").warning("arbiter died", arbiter=1)
    assert seen.getvalue() == ""


# -- demo -------------------------------------------------------------------------


def fake_report(ok: bool = True) -> supervisor.demo.DemoReport:
    return supervisor.demo.DemoReport(
        queued=10,
        done=10,
        dead=0,
        lost=0 if ok else 2,
        restarts=1,
        killed_pid=4242,
        killed_after=4,
        seconds=0.5,
    )


@pytest.mark.parametrize("ok", [True, False])
def test_demo_prints_its_report(
    ok: bool,
    cli_logging: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, int]] = []

    def run_demo(**kwargs: int) -> supervisor.demo.DemoReport:
        calls.append(kwargs)
        return fake_report(ok)

    monkeypatch.setattr(supervisor.demo, "run_demo", run_demo)
    assert main(["demo", "--jobs", "10", "--processes", "3", "--workers", "2"]) == (0 if ok else 1)
    assert calls == [{"jobs": 10, "processes": 3, "workers": 2}]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "jobarbiter demo: 10 jobs, 3 arbiters x 2 workers, memory storage"
    assert out[1:] == fake_report(ok).lines()


DEMO_WAITING_FOR_STDIN = """
import sys
import supervisor.demo
from supervisor.cli import main

def run_demo(**kwargs):
    sys.stdin.readline()  # until the test has closed our stdout
    return supervisor.demo.DemoReport(10, 10, 0, 0, 1, 4242, 4, 0.5)

supervisor.demo.run_demo = run_demo
sys.exit(main(["demo"]))
"""


def test_demo_into_a_closed_pipe_exits_quietly() -> None:
    # As in `jobarbiter demo | head -1`: the reader takes the first line and goes.
    with subprocess.Popen(
        [sys.executable, "-c", DEMO_WAITING_FOR_STDIN],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as demo:
        assert demo.stdin is not None and demo.stdout is not None and demo.stderr is not None
        assert demo.stdout.readline().startswith("jobarbiter demo: ")
        demo.stdout.close()
        demo.stdin.write("go\n")
        demo.stdin.close()
        err = demo.stderr.read()
        assert demo.wait(timeout=30) == 1
    assert err == ""


# -- a real run -------------------------------------------------------------------


@pytest.mark.processes
def test_run_logs_json_events_with_the_options_after_the_subcommand(tmp_path: Path) -> None:
    env = {
        **os.environ,
        DIR_VAR: str(tmp_path),
        "JOBARBITER_TEST_SLEEP": "0.1",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable,
        "-m",
        "supervisor.cli",
        "run",
        "tests.runtime.app:config",
        "--processes",
        "1",
        "--log-json",
        "--log-level",
        "debug",
    ]
    err_path = tmp_path / "stderr"
    # A file, not a pipe: debug output could fill a pipe nobody reads yet.
    with err_path.open("w") as err, subprocess.Popen(command, stderr=err, env=env, cwd=ROOT) as run:
        wait_until(lambda: "job succeeded" in err_path.read_text(), what="the job to succeed")
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 0
    events = json_events(err_path.read_text())
    by_name = {e["event"]: e for e in events}
    assert by_name["arbiter started"]["arbiter"] == 0
    assert by_name["arbiter started"]["logger"] == "jobarbiter.manager"
    assert by_name["job succeeded"]["level"] == "debug"
    assert "arbiter stopped" in by_name
