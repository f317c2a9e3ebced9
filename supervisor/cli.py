"""The jobarbiter command: run a WorkerConfig from user code, or the demo."""

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
from supervisor.config import WorkerConfig
from supervisor.errors import CrashLoopError

DESCRIPTION = """\
Run background jobs: start the arbiter processes of a WorkerConfig from your
code and supervise them until SIGTERM or SIGINT, or run the bundled demo."""

EPILOG = """\
example:
  jobarbiter run myapp.service:config --processes 2"""

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
        raise TargetError(f"cannot import {module_name}: {_one_line(exc)}", status) from None
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
            raise TargetError(f"{target}() raised {_one_line(exc)}", 1) from None
        if not isinstance(made, WorkerConfig):
            raise TargetError(f"{target}() returned {_a(made)}, not a WorkerConfig", 2)
        return made
    if not isinstance(found, WorkerConfig):
        raise TargetError(f"{target} is {_a(found)}, not a WorkerConfig: {fix}", 2)
    return found


def _is_prefix(name: str | None, module_name: str) -> bool:
    return name is not None and (module_name + ".").startswith(name + ".")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


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


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        message = f"must be a whole number, at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
        epilog=EPILOG,
        formatter_class=formatter,
        parents=[sub_options],
    )
    run.add_argument("target", metavar="MODULE:ATTR", type=_target, help=TARGET_HELP)
    run.add_argument(
        "--processes",
        type=_at_least_one,
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

    demo = commands.add_parser(
        "demo",
        help="20,000 jobs, 2 arbiters, one killed mid-run",
        description="Queue jobs, SIGKILL one arbiter mid-run, and report that no job\n"
        "was lost and that the arbiter came back.",
        formatter_class=formatter,
        parents=[sub_options],
    )
    demo.add_argument("--jobs", type=_at_least_one, default=20_000, help="default: 20,000")
    demo.add_argument("--processes", type=_at_least_one, default=2, help="default: 2")
    demo.add_argument(
        "--workers", type=_at_least_one, default=4, help="workers per arbiter (default: 4)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(json=args.log_json, level=args.log_level)
    if args.command == "run":
        return _run(
            args.target,
            processes=args.processes,
            grace=args.grace,
            crash_loop_exit=args.crash_loop_exit,
        )
    return _demo(jobs=args.jobs, processes=args.processes, workers=args.workers)


def _run(target: str, *, processes: int, grace: float, crash_loop_exit: float) -> int:
    try:
        config = load_config(target)
    except TargetError as exc:
        return _fail(str(exc), exc.status)
    try:
        manager = config.start(processes=processes)
    except Exception as exc:
        # Not ready (no job registered), or its storage cannot open: the
        # message names the file or the database.
        return _fail(f"cannot start {target}: {_one_line(exc)}", 1)
    try:
        manager.run_forever(grace=grace, crash_loop_exit=crash_loop_exit)
    except CrashLoopError as exc:
        return _fail(str(exc), 1)
    return 0


def _fail(message: str, status: int) -> int:
    print(f"jobarbiter: {message}", file=sys.stderr)
    return status


def _demo(*, jobs: int, processes: int, workers: int) -> int:
    from supervisor.demo import run_demo  # noqa: PLC0415 - only the demo needs it

    header = (
        f"jobarbiter demo: {jobs:,} jobs, {processes} arbiters x {workers} workers, memory storage"
    )
    if not _print(header):
        return 1
    report = run_demo(jobs=jobs, processes=processes, workers=workers)
    if not _print("\n".join(report.lines())):
        return 1
    return 0 if report.ok else 1


def _print(text: str) -> bool:
    """Print to stdout; False if its reader went away (``jobarbiter demo | head -1``)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python flushes stdout again at exit, which would fail and print a
        # warning: point the descriptor at devnull instead.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
