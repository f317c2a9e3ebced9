"""The jobarbiter command: run a WorkerConfig, operate a storage or a service, the demo.

``run MODULE:ATTR`` starts a WorkerConfig from user code and supervises it
until SIGTERM or SIGINT (``--http HOST:PORT`` also serves its JSON API).

The operator commands (stats, jobs, show, requeue, purge-dead, pause,
resume, scale, cancel; supervisor/commands.py) work on ``--url`` (or
$JOBARBITER_URL): a SQLite file or a PostgreSQL database opened directly
(``supervisor.storage_ops``), or a running service's API (``http://``,
with ``--token`` or $JOBARBITER_TOKEN). They print aligned tables for
people, or with ``--json`` one JSON document for scripts, in the API's own
format (``supervisor.jsonview``).

Errors are one line on stderr, ``jobarbiter: <why>``, and the exit status
says whose they are: 2 for a wrong request (a URL of no known form, a
malformed id, a command the storage cannot do), 1 for one that could not be
done (no such job, not dead, a refused or unreachable service, a storage
that cannot open).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import math
import os
import sys
from collections.abc import Sequence

import structlog

from storage import Job
from storage.events import EventLog
from supervisor.commands import add_operator_commands, operate
from supervisor.config import WorkerConfig
from supervisor.errors import CrashLoopError
from supervisor.terminal import TOKEN_VAR, at_least_one, emit, fail, first_line, one_line

DESCRIPTION = """\
Run background jobs: start the arbiter processes of a WorkerConfig from your
code and supervise them until SIGTERM or SIGINT; look at and change the jobs
of a storage or a running service; or run the bundled demo."""

RUN_EPILOG = """\
examples:
  jobarbiter run myapp.service:config --processes 2
  jobarbiter run myapp.service:config --http 127.0.0.1:8080 --http-token SECRET"""

EPILOG = """\
examples:
  jobarbiter run myapp.service:config --processes 2 --http 127.0.0.1:8080
  jobarbiter jobs --url sqlite:///jobs.db --status dead
  jobarbiter requeue --all-dead --url http://127.0.0.1:8080"""

DEFAULT_HTTP_HOST = "127.0.0.1"
log = EventLog("cli")

TARGET_HELP = "a WorkerConfig, or a function returning one, as module:attribute"
EXAMPLE_TARGET = "myapp.service:config"
LEVELS = ("debug", "info", "warning", "error")


class TargetError(Exception):
    """MODULE:ATTR could not give a WorkerConfig; the message says why, in one line."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def configure_logging(*, json: bool, level: str) -> None:
    """The CLI's logging; the library itself configures none.

    The library logs through stdlib loggers named ``jobarbiter.<area>`` with its
    fields in ``extra``; structlog's ProcessorFormatter renders those records,
    and any structlog loggers are routed through stdlib to the same handler.
    """
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(default=str)  # job ids as plain strings
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # ConsoleRenderer formats exceptions itself, and better; JSON needs a string.
    exceptions: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info] if json else []
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            # Copies the fields, and record.event (the bare event name) over the
            # "event key=value" message.
            structlog.stdlib.ExtraAdder(),
            _drop_formatted,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exceptions,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    # Other libraries' INFO chatter (pykka's, say) only when debugging.
    root.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    logging.getLogger("jobarbiter").setLevel(level.upper())
    # A closed stderr must not print "--- Logging error ---" for every record.
    logging.raiseExceptions = False
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        # Drops what is below the level before any processor runs; the stdlib
        # logger's own level then decides per logger.
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def _drop_formatted(
    logger: object, method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    # Set on the record by any handler that formatted it before ours; the
    # library renames a field of these names, so they are never its fields.
    event_dict.pop("message", None)
    event_dict.pop("asctime", None)
    return event_dict


def load_config(target: str) -> WorkerConfig:
    """``MODULE:ATTR``: a WorkerConfig, or a callable returning one."""
    module_name, _, attr = target.partition(":")
    # Like other runners, find the user's modules from the current directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        # A missing module is a wrong target; anything else is the module's fault.
        wrong = isinstance(exc, ModuleNotFoundError) and _is_prefix(exc.name, module_name)
        status = 2 if wrong else 1
        raise TargetError(f"cannot import {module_name}: {one_line(exc)}", status) from None
    try:
        found: object = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"module {module_name} has no attribute {attr!r}", 2) from None
    fix = f"point at the WorkerConfig, e.g. {EXAMPLE_TARGET}"
    if isinstance(found, type):
        # A class is callable, but calling it would not give a configured WorkerConfig.
        if issubclass(found, WorkerConfig):
            what = "the WorkerConfig class"
        else:
            what = f"a class ({'a Job' if issubclass(found, Job) else found.__name__})"
        raise TargetError(f"{target} is {what}, not a WorkerConfig: {fix}", 2)
    if callable(found):
        try:
            made: object = found()
        except Exception as exc:
            raise TargetError(f"{target}() raised {one_line(exc)}", 1) from None
        if not isinstance(made, WorkerConfig):
            raise TargetError(f"{target}() returned {_a(made)}, not a WorkerConfig", 2)
        return made
    if not isinstance(found, WorkerConfig):
        raise TargetError(f"{target} is {_a(found)}, not a WorkerConfig: {fix}", 2)
    return found


def _is_prefix(name: str | None, module_name: str) -> bool:
    return name is not None and (module_name + ".").startswith(name + ".")


def _a(value: object) -> str:
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


def _target(text: str) -> str:
    module_name, colon, attr = text.partition(":")
    if not (module_name and colon and attr):
        raise argparse.ArgumentTypeError(
            f"expected module:attribute, e.g. {EXAMPLE_TARGET}, got {text!r}"
        )
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, got {text!r}")
    return value


def _version() -> str:
    try:
        return importlib.metadata.version("jobarbiter")
    except importlib.metadata.PackageNotFoundError:  # a source tree, not installed
        return "unknown"


def _log_options(*, defaults: bool) -> argparse.ArgumentParser:
    """The log options, accepted before and after the subcommand.

    The subcommands' copy has no defaults: argparse copies a subparser's
    defaults over the namespace, which would undo ``--log-json run ...``.
    """
    json_default: object = False if defaults else argparse.SUPPRESS
    level_default: object = "info" if defaults else argparse.SUPPRESS
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("logging (on stderr)")
    group.add_argument(
        "--log-json", action="store_true", default=json_default, help="log JSON lines"
    )
    group.add_argument(
        "--log-level",
        choices=LEVELS,
        default=level_default,
        help="debug also shows every job's events (default: info)",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="jobarbiter",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=formatter,
        parents=[_log_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"jobarbiter {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub_options = _log_options(defaults=False)

    run = commands.add_parser(
        "run",
        help="run a WorkerConfig until SIGTERM or SIGINT",
        description="Start the WorkerConfig's arbiters and supervise them until\n"
        "SIGTERM or SIGINT, then stop, giving running jobs --grace seconds.",
        epilog=RUN_EPILOG,
        formatter_class=formatter,
        parents=[sub_options],
    )
    run.add_argument("target", metavar="MODULE:ATTR", type=_target, help=TARGET_HELP)
    run.add_argument(
        "--processes",
        type=at_least_one,
        default=os.cpu_count() or 1,
        help="arbiter processes (default: the number of CPUs)",
    )
    run.add_argument(
        "--grace",
        type=_seconds,
        default=30.0,
        help="seconds running jobs get to finish on stop, then they are put back (default: 30)",
    )
    run.add_argument(
        "--crash-loop-exit",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="exit with status 1 once every arbiter has been in a crash loop this long, "
        "so that systemd or Kubernetes sees the failure (default: 10)",
    )
    run.add_argument(
        "--http",
        type=_address,
        metavar="HOST:PORT",
        help="also serve the JSON API that the operator commands use (--url http://...) "
        "there; port 0 picks a free one (the URL is printed)",
    )
    run.add_argument(
        "--http-token",
        metavar="TOKEN",
        help=f"the bearer token the API asks of every change (default: ${TOKEN_VAR}; "
        "without one the API is read-only)",
    )

    demo = commands.add_parser(
        "demo",
        help="20,000 jobs, 2 arbiters, one killed mid-run",
        description="Queue jobs, SIGKILL one arbiter mid-run, and report that no job\n"
        "was lost and that the arbiter came back.",
        formatter_class=formatter,
        parents=[sub_options],
    )
    demo.add_argument("--jobs", type=at_least_one, default=20_000, help="default: 20,000")
    demo.add_argument("--processes", type=at_least_one, default=2, help="default: 2")
    demo.add_argument(
        "--workers", type=at_least_one, default=4, help="workers per arbiter (default: 4)"
    )
    add_operator_commands(commands, sub_options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(json=args.log_json, level=args.log_level)
    if args.command == "run":
        token = args.http_token if args.http_token is not None else os.environ.get(TOKEN_VAR)
        return _run(
            args.target,
            processes=args.processes,
            grace=args.grace,
            crash_loop_exit=args.crash_loop_exit,
            http=args.http,
            http_token=token or None,
        )
    if args.command == "demo":
        return _demo(jobs=args.jobs, processes=args.processes, workers=args.workers)
    return operate(args)


def _run(
    target: str,
    *,
    processes: int,
    grace: float,
    crash_loop_exit: float,
    http: tuple[str, int] | None = None,
    http_token: str | None = None,
) -> int:
    try:
        config = load_config(target)
    except TargetError as exc:
        return fail(str(exc), exc.status)
    try:
        manager = config.start(processes=processes)
    except Exception as exc:
        # Not ready (no job registered), or its storage cannot open: the
        # message names the file or the database.
        return fail(f"cannot start {target}: {one_line(exc)}", 1)
    if http is not None:
        host, port = http
        try:
            url = manager.serve_http(host, port, auth=http_token)
        except Exception as exc:
            # A port in use, or the http extra missing: a service asked to
            # serve its API must not run without it.
            manager.stop(timeout=grace)
            return fail(_http_failure(exc, host, port), 1)
        if http_token is None:
            log.info("the HTTP API is read-only: --http-token allows changes", url=url)
        emit(f"jobarbiter: serving the HTTP API at {url}")
    try:
        manager.run_forever(grace=grace, crash_loop_exit=crash_loop_exit)
    except CrashLoopError as exc:
        return fail(str(exc), 1)
    return 0


def _demo(*, jobs: int, processes: int, workers: int) -> int:
    from supervisor.demo import run_demo  # noqa: PLC0415 - only the demo needs it

    header = (
        f"jobarbiter demo: {jobs:,} jobs, {processes} arbiters x {workers} workers, memory storage"
    )
    if not emit(header):
        return 1
    report = run_demo(jobs=jobs, processes=processes, workers=workers)
    if not emit("\n".join(report.lines())):
        return 1
    return 0 if report.ok else 1


def _address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[::1]:PORT`` or ``:PORT`` (the loopback address)."""
    host, colon, port_text = text.rpartition(":")
    if not colon or not port_text.isdigit() or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free one), got {text!r}"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # an IPv6 address, bracketed as in a URL
    return host or DEFAULT_HTTP_HOST, int(port_text)


def _http_failure(exc: Exception, host: str, port: int) -> str:
    # serve() names the address in an OSError's text already: not twice.
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)
    if reason.startswith("cannot serve HTTP"):
        return first_line(reason)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"cannot serve HTTP on {shown}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
