"""jobarbiter beside Celery, Dramatiq, RQ, Huey, procrastinate, PgQueuer and a bare
ProcessPoolExecutor: the same jobs on the same machine, in one run.

Workloads (``--workloads``):

* noop: 20,000 jobs that do nothing (each only counts itself done);
* sleep: 2,000 jobs of ``time.sleep(0.010)`` (``asyncio.sleep`` for the async
  libraries): few enough that the libraries running one job at a time per
  process finish in seconds;
* crash: one job whose process is killed with SIGKILL mid-job: does it run again?

Every library runs 2 worker processes (``--processes``) started and stopped by
this run; within a process each uses its own default concurrency for noop and
crash, and 8 jobs at once (``--concurrency``) for sleep where it has a knob.
The Redis libraries each get a Redis database of their own (11 to 14, flushed
before each trial); procrastinate and PgQueuer get the database
``jobarbiter_peers``, dropped and created again before each trial. jobs/s
counts from the first job queued to the last one finished, with the harness
queueing while the workers run (jobarbiter's host is the harness process).

Run from the repository root, with Redis and PostgreSQL on this machine:

    python -m benchmarks.peers
    python -m benchmarks.peers --libraries jobarbiter,celery --workloads noop
    python -m benchmarks.peers --redis redis://127.0.0.1:6379 --pg postgresql://postgres@127.0.0.1:5432
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.common import Progress, machine, names, versions, write_json
from benchmarks.peers import LIBRARIES, marks, report
from benchmarks.peers.harness import Limits, Peer, Spec, run_trial

WORKLOADS = ["noop", "sleep", "crash"]
DEFAULT_JSON = Path(__file__).resolve().parents[1] / "results" / "peers.json"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--libraries",
        type=names(list(LIBRARIES)),
        default=list(LIBRARIES),
        help=f"comma-separated, from {','.join(LIBRARIES)} (default all)",
    )
    parser.add_argument(
        "--workloads",
        type=names(WORKLOADS),
        default=WORKLOADS,
        help="comma-separated, from noop,sleep,crash (default all)",
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="noop jobs (default 20000)")
    parser.add_argument("--sleep-jobs", type=int, default=2_000, help="sleep jobs (default 2000)")
    parser.add_argument("--sleep-ms", type=float, default=10.0, help="per sleep job (default 10)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="jobs at once per process for sleep (default 8)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per library and workload (120)"
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=60.0, help="seconds for workers to start (60)"
    )
    parser.add_argument(
        "--crash-timeout", type=float, default=30.0, help="seconds to wait for a re-run (30)"
    )
    parser.add_argument("--redis", default=marks.DEFAULT_REDIS, help="Redis server URL, no db")
    parser.add_argument("--pg", default=marks.DEFAULT_PG, help="PostgreSQL DSN, no database")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="default benchmarks/results/peers.json"
    )
    args = parser.parse_args(argv)
    if min(args.jobs, args.sleep_jobs, args.processes, args.concurrency) < 1:
        parser.error("--jobs, --sleep-jobs, --processes and --concurrency must be >= 1")
    return args


def loader(library: str) -> Callable[[], Peer]:
    def load() -> Peer:
        module, _, attr = LIBRARIES[library].partition(":")
        peer_class: type[Peer] = getattr(importlib.import_module(module), attr)
        return peer_class()

    return load


def spec_for(workload: str, args: argparse.Namespace) -> Spec:
    return Spec(
        workload=workload,
        jobs=args.sleep_jobs if workload == "sleep" else args.jobs,
        sleep_ms=args.sleep_ms,
        processes=args.processes,
        concurrency=args.concurrency if workload == "sleep" else None,
        crash_hold=args.crash_timeout + 30,
    )


def server_versions() -> dict[str, str | None]:
    """Redis and PostgreSQL server versions, None where unreachable or not installed."""
    found: dict[str, str | None] = {"redis-server": None, "postgresql": None}
    try:
        import redis  # noqa: PLC0415 - optional: the report says None without it

        client = redis.Redis.from_url(marks.redis_url(0), socket_timeout=5)
        found["redis-server"] = str(client.info("server")["redis_version"])
        client.close()
    except Exception:
        pass
    try:
        import psycopg  # noqa: PLC0415 - optional, as above

        with psycopg.connect(marks.pg_dsn("postgres"), connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            found["postgresql"] = None if row is None else str(row[0])
    except Exception:
        pass
    return found


def library_facts(libraries: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per library: broker, reliability settings and versions (when it can be imported)."""
    facts: dict[str, dict[str, Any]] = {}
    for library in libraries:
        module, _, attr = LIBRARIES[library].partition(":")
        try:
            peer_class: type[Peer] = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            facts[library] = {"error": f"not installed: {exc}"}
            continue
        facts[library] = {
            "name": peer_class.name,
            "broker": peer_class.broker,
            "reliability": peer_class.reliability,
            "versions": versions(peer_class.distributions),
        }
    return facts


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    # The library's warnings (an arbiter killed on purpose) go to stderr.
    logging.basicConfig(level=logging.WARNING)
    os.environ[marks.REDIS_ENV] = args.redis
    os.environ[marks.PG_ENV] = args.pg
    limits = Limits(ready=args.ready_timeout, run=args.timeout, crash=args.crash_timeout)
    plan = [(w, lib) for w in args.workloads for lib in args.libraries]
    progress = Progress(len(plan))
    trials = []
    started = time.monotonic()
    try:
        for done, (workload, library) in enumerate(plan):
            progress.show(done, f"{library} {workload}")
            trials.append(run_trial(loader(library), library, spec_for(workload, args), limits))
        progress.show(len(plan), f"done in {time.monotonic() - started:.0f}s")
    finally:
        progress.close()
    elapsed = time.monotonic() - started

    info = machine()
    facts = library_facts(args.libraries)
    servers = server_versions()
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "benchmarks.peers", *given])
    print(f"$ {command}")
    print(
        f"machine: {info['cpu_count']} CPUs, {info['implementation']} {info['python']}; "
        f"Redis {servers['redis-server']}, PostgreSQL {servers['postgresql']}; "
        f"{elapsed:.0f} s in all"
    )
    print(
        f"no-op: {args.jobs:,} jobs; sleep: {args.sleep_jobs:,} jobs of {args.sleep_ms:g} ms; "
        f"{args.processes} worker processes per library"
    )
    labels = {lib: fact.get("name", lib) for lib, fact in facts.items()}
    print(report.summary(trials, args.libraries, args.workloads, args.sleep_ms, labels))
    print(
        "jobs/s: from the first job queued to the last one finished, queueing included;\n"
        "(timeout): not all done within --timeout; the rate counts the jobs that finished.\n"
        "vs jobarbiter: that library's jobs/s divided by jobarbiter's."
    )
    print("\nsettings for at-least-once, and versions:")
    for library, fact in facts.items():
        if "error" in fact:
            print(f"  {library}: {fact['error']}")
            continue
        pinned = ", ".join(f"{k} {v}" for k, v in fact["versions"].items())
        print(f"  {fact['name']} ({pinned or 'standard library'}; {fact['broker']}):")
        print(f"    {fact['reliability']}")
    print("\nwhat ran:")
    print(report.details(trials, labels))
    write_json(
        args.json,
        {
            "benchmark": "peers",
            "command": command,
            "machine": info,
            "servers": servers,
            "elapsed_s": elapsed,
            "settings": {
                "jobs": args.jobs,
                "sleep_jobs": args.sleep_jobs,
                "sleep_ms": args.sleep_ms,
                "processes": args.processes,
                "sleep_concurrency": args.concurrency,
                "timeout_s": args.timeout,
                "crash_timeout_s": args.crash_timeout,
            },
            "libraries": facts,
            "trials": [asdict(t) for t in trials],
        },
    )
    print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
