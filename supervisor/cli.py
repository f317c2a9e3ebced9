"""The ``jobarbiter`` command: run a WorkerConfig from user code, or the demo."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

import structlog

from supervisor.config import WorkerConfig


def configure_logging(*, json: bool, level: str) -> None:
    """The CLI's logging; the library itself configures none."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def load_config(target: str) -> WorkerConfig:
    """``MODULE:ATTR``: a WorkerConfig, or a callable returning one."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"jobarbiter: expected MODULE:ATTR, got {target!r}")
    # Like other runners, find the user's modules from the current directory.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: object = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"jobarbiter: cannot load {target}: {exc}") from exc
    if callable(found) and not isinstance(found, WorkerConfig):
        found = found()
    if not isinstance(found, WorkerConfig):
        raise SystemExit(f"jobarbiter: {target} is a {type(found).__name__}, not a WorkerConfig")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobarbiter", description=__doc__)
    parser.add_argument("--log-json", action="store_true", help="log JSON lines")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a WorkerConfig until SIGTERM or SIGINT")
    run.add_argument("target", metavar="MODULE:ATTR")
    run.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    run.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds running jobs get to finish on stop (default 30)",
    )

    demo = commands.add_parser("demo", help="20,000 jobs, 2 arbiters, one killed mid-run")
    demo.add_argument("--jobs", type=int, default=20_000)
    demo.add_argument("--processes", type=int, default=2)
    demo.add_argument("--workers", type=int, default=4)

    args = parser.parse_args(argv)
    configure_logging(json=args.log_json, level=args.log_level)

    if args.command == "run":
        config = load_config(args.target)
        config.start(processes=args.processes).run_forever(grace=args.grace)
        return 0

    from supervisor.demo import run_demo  # noqa: PLC0415 - only the demo needs it

    print(
        f"jobarbiter demo: {args.jobs:,} jobs, {args.processes} arbiters x "
        f"{args.workers} workers, memory storage",
        flush=True,
    )
    report = run_demo(jobs=args.jobs, processes=args.processes, workers=args.workers)
    print("\n".join(report.lines()), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
