"""Throughput and latency of no-op jobs, over a grid of arbiter processes x workers.

For each grid point it starts a Manager, waits until every worker of every
arbiter has built its state and a warm-up batch has run, then measures:

* enqueue jobs/s: N no-op jobs through one ``queue_many`` call;
* processed jobs/s: N / (``join`` returned - ``queue_many`` started);
  drain jobs/s is N / (``join`` returned - ``queue_many`` returned), i.e.
  processing alone (jobs reach the workers only once the whole batch is stored);
* enqueue-to-start latency with idle workers: K jobs queued one at a time,
  each joined before the next; each records ``time.time()`` at its start
  minus the stamp taken just before ``queue``;
* CPU seconds of the host and of all arbiters during the throughput phase.

With ``--against``, after the grid each named peer library (see
``benchmarks.peers``) runs one no-op trial of the same N jobs through the peers
harness, on as many worker processes as the grid's largest ``--processes``, on
the PostgreSQL server of ``JOBARBITER_BENCH_PG`` (in its database
``jobarbiter_peers``); a second table sets jobarbiter's processed jobs/s beside
theirs. It is meant for ``--storage postgres``: the same server for all.

Run from the repository root:

    python -m benchmarks.throughput                  # default grid, 20000 jobs
    python -m benchmarks.throughput --quick          # smoke run
    python -m benchmarks.throughput --processes 2 --workers 4 --json out.json
    python -m benchmarks.throughput --processes 2 --workers 4,32 --repeats 4 \\
        --logging unconfigured,warning             # logging's cost, side by side
    python -m benchmarks.throughput --processes 2 --workers 4 --repeats 4 \\
        --metrics off,on                           # /metrics scraped, side by side
    python -m benchmarks.throughput --storage postgres --processes 2 --workers 4,32 \\
        --against procrastinate,pgqueuer
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import logging
import multiprocessing
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Progress,
    count_list,
    cpu_seconds,
    int_list,
    jobs_done,
    machine,
    names,
    percentile,
)
from benchmarks.peers import LIBRARIES, marks, report
from benchmarks.peers.harness import Limits, Spec, Trial, run_trial
from benchmarks.workloads import (
    AsyncNoop,
    AsyncSleep,
    AsyncStamp,
    Noop,
    Stamp,
    make_state,
    pool_noop,
    read_samples,
    ready_workers,
)
from supervisor import Job, Manager, MemoryStorage, SqliteStorage, Storage, WorkerConfig
from supervisor.config import DEFAULT_PREFETCH

DEFAULT_JSON = Path(__file__).parent / "results" / "throughput.json"
QUICK_JOBS = 2000
QUICK_SAMPLES = 50
READY_TIMEOUT = 60.0
JOIN_TIMEOUT = 120.0


def sqlite_storage() -> Storage:
    # A fresh file per grid point; the folder is left to the OS's temp cleanup.
    return SqliteStorage(Path(tempfile.mkdtemp(prefix="jobarbiter-bench-")) / "jobs.db")


# The PostgreSQL server to measure against (a local one by default).
PG_DSN = os.environ.get("JOBARBITER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def postgres_storage() -> Storage:
    """A fresh schema per grid point, dropped when the benchmark exits."""
    import psycopg  # noqa: PLC0415 - the postgres extra is optional

    from storage.postgres import PostgresStorage  # noqa: PLC0415

    schema = f"jobarbiter_bench_{uuid.uuid4().hex[:8]}"

    def drop() -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    atexit.register(drop)
    return PostgresStorage(PG_DSN, schema=schema)


STORAGES: dict[str, Callable[[], Storage]] = {
    "memory": MemoryStorage,
    "sqlite": sqlite_storage,
    "postgres": postgres_storage,
}

# --against: one no-op trial per peer library through the peers harness.
PEER_LIMITS = Limits(ready=60.0, run=300.0, crash=30.0)  # crash: unused by no-op trials
PEER_SLEEP_MS = 10.0  # unused by no-op trials
PEER_CRASH_HOLD = 60.0  # unused by no-op trials
PG_SERVER_KEYS = {"host", "port", "user", "password"}


def peers_server(dsn: str) -> str:
    """The server of a PostgreSQL DSN as the peers take it: ``postgresql://user@host:port``.

    The peers append ``/<database>`` to it, so it has neither a database nor
    parameters; ValueError for a DSN whose other parameters would be lost.
    """
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urllib.parse.urlsplit(dsn)
        extra = sorted(urllib.parse.parse_qs(parts.query, keep_blank_values=True))
        scheme, netloc = parts.scheme, parts.netloc
    else:  # key=value form
        from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415 - postgres extra

        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
        extra = sorted(set(params) - PG_SERVER_KEYS - {"dbname"})
        host, port = params.get("host", ""), params.get("port", "")
        if "," in host or "," in port:
            raise ValueError("names several hosts; give it in URL form")
        user = urllib.parse.quote(params.get("user", ""), safe="")
        if "password" in params:
            user += ":" + urllib.parse.quote(params["password"], safe="")
        scheme = "postgresql"
        netloc = (f"{user}@" if user else "") + urllib.parse.quote(host, safe="")
        netloc += f":{port}" if port else ""
    if extra:
        raise ValueError(f"has parameters the peers cannot take: {', '.join(extra)}")
    if not netloc:
        raise ValueError("names no host; the peers need one")
    return f"{scheme}://{netloc}"


@dataclass(frozen=True, slots=True)
class Result:
    processes: int
    workers: int
    storage: str
    workload: str  # see WORKLOADS
    prefetch: int  # WorkerConfig(prefetch=...)
    logging: str  # how the host's logging was configured: see LOGGING
    metrics: str  # "on": serve_http, /metrics scraped every SCRAPE_EVERY s; "off": neither
    jobs: int
    startup_s: float
    enqueue_s: float
    process_s: float  # queue_many started -> join returned
    enqueue_jobs_per_s: float
    processed_jobs_per_s: float  # N / process_s: enqueue included
    drain_jobs_per_s: float  # N / (process_s - enqueue_s): enqueue excluded
    host_cpu_s: float  # the host process over the throughput phase
    host_us_per_job: float  # host_cpu_s per job, in µs
    arbiter_cpu_s: float  # all arbiters over the throughput phase
    latency_samples: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    pool_jobs_per_s: float  # the baseline after this point (median of POOL_RUNS), same N
    vs_pool: float  # processed_jobs_per_s / pool_jobs_per_s


# -- measuring ---------------------------------------------------------------------


# --workload: what each job does (its job class), and the job that stamps latency.
WORKLOADS: dict[str, tuple[Callable[[int, float], Job], type[Job]]] = {
    "noop": (lambda n, ms: Noop(n), Stamp),
    "async-noop": (lambda n, ms: AsyncNoop(n), AsyncStamp),
    "async-sleep": (AsyncSleep, AsyncStamp),
}


def wait_ready(
    manager: Manager, out_dir: str, workers: int, processes: int, make: Callable[[int], Job]
) -> list[int]:
    """Wait until every worker built its state, run a warm-up batch; the arbiters' pids."""
    deadline = time.monotonic() + READY_TIMEOUT
    # An async queue builds its state once per arbiter, not once per slot.
    expected = processes if type(make(0)).is_async() else workers * processes
    while ready_workers(out_dir) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"arbiters not ready after {READY_TIMEOUT} s")
        time.sleep(0.01)
    manager.queue_many([make(i) for i in range(4 * workers * processes)])
    manager.join(timeout=JOIN_TIMEOUT)
    arbiters = manager.stats().arbiters
    if not all(a.alive and a.pid is not None for a in arbiters):
        raise RuntimeError(f"an arbiter is not alive: {arbiters}")
    return [a.pid for a in arbiters if a.pid is not None]


# Pool runs per point; the baseline is their median. One run of it moved by
# 2x between neighbouring points on a shared machine, more than jobarbiter.
POOL_RUNS = 3


def pool_rate(processes: int, jobs: int) -> float:
    """The baseline: calls/s of ``multiprocessing.Pool(processes).imap_unordered``
    of a no-op over ``jobs`` items, chunksize 1: the bare cost of shipping one
    call to another process and its result back. The median of POOL_RUNS runs
    on one pool."""
    rates = []
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for _ in pool.imap_unordered(pool_noop, range(100), chunksize=1):
            pass  # warm: the workers are up
        for _ in range(POOL_RUNS):
            started = time.perf_counter()
            for _ in pool.imap_unordered(pool_noop, range(jobs), chunksize=1):
                pass
            rates.append(jobs / (time.perf_counter() - started))
    return statistics.median(rates)


def configure_logging(mode: str) -> None:
    """Set the host's logging as a user's service might have it (see LOGGING)."""
    root, ours = logging.getLogger(), logging.getLogger("jobarbiter")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    ours.setLevel(logging.NOTSET)
    if mode == "warning":
        logging.basicConfig(level=logging.WARNING)
    elif mode == "debug":
        # Every event formatted and written, to a sink that costs no terminal.
        sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives until exit
        sink.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(sink)
        ours.setLevel(logging.DEBUG)


# Host logging modes: "unconfigured" (nothing set up, as in a plain script),
# "warning" (logging.basicConfig at WARNING), "debug" (the library's debug
# events formatted and written to /dev/null: the cost of per-job events).
LOGGING = ("unconfigured", "warning", "debug")


SCRAPE_EVERY = 1.0  # s between two scrapes with --metrics on (Prometheus' default is 15)


class Scraper:
    """Fetches ``/metrics`` every SCRAPE_EVERY s in a thread, as Prometheus would."""

    def __init__(self, url: str) -> None:
        self._url = f"{url}/metrics"
        self._stop = threading.Event()
        self.scrapes = 0
        self._thread = threading.Thread(target=self._run, name="bench-scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with urllib.request.urlopen(self._url, timeout=10) as answer:
                answer.read()
            self.scrapes += 1
            if self._stop.wait(SCRAPE_EVERY):
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        if not self.scrapes:
            raise RuntimeError(f"{self._url} was never scraped")


def run_point(
    processes: int,
    workers: int,
    *,
    jobs: int,
    samples: int,
    storage: str,
    prefetch: int,
    log_mode: str,
    workload: str,
    sleep_ms: float,
    metrics: str,
    phase: Callable[[str], None],
) -> Result:
    build, stamp = WORKLOADS[workload]

    def make(n: int) -> Job:
        return build(n, sleep_ms)

    configure_logging(log_mode)
    with tempfile.TemporaryDirectory(prefix="jobarbiter-bench-") as out_dir:
        config = (
            WorkerConfig(
                storage=STORAGES[storage](),
                state=functools.partial(make_state, out_dir),
                prefetch=prefetch,
            )
            .register(type(make(0)))
            .register(stamp)
            .set_worker_count("default", workers)
        )
        phase("starting")
        started = time.perf_counter()
        with config.start(processes=processes) as manager:
            pids = wait_ready(manager, out_dir, workers, processes, make)
            startup_s = time.perf_counter() - started
            scraper = Scraper(manager.serve_http()) if metrics == "on" else None

            phase(f"{jobs} jobs")
            batch = [make(i) for i in range(jobs)]
            done_before = jobs_done(manager)
            host = [os.getpid()]
            host_cpu, arbiter_cpu = cpu_seconds(host), cpu_seconds(pids)
            t0 = time.perf_counter()
            manager.queue_many(batch)
            t1 = time.perf_counter()
            manager.join(timeout=JOIN_TIMEOUT)
            t2 = time.perf_counter()
            host_cpu = cpu_seconds(host) - host_cpu
            arbiter_cpu = cpu_seconds(pids) - arbiter_cpu
            if scraper is not None:
                scraper.close()
            done = jobs_done(manager) - done_before
            if done != jobs:
                raise RuntimeError(f"{done} jobs done, expected {jobs}")

            phase(f"latency x{samples}")
            for _ in range(samples):
                manager.queue(stamp(time.time()))
                manager.join(timeout=JOIN_TIMEOUT)
            phase("stopping")
        latencies = read_samples(out_dir)
    pool = pool_rate(processes, jobs)
    if len(latencies) != samples:
        raise RuntimeError(f"{len(latencies)} latency samples, expected {samples}")
    ms = [s * 1000 for s in latencies]
    return Result(
        processes=processes,
        workers=workers,
        storage=storage,
        workload=workload,
        prefetch=prefetch,
        logging=log_mode,
        metrics=metrics,
        jobs=jobs,
        startup_s=startup_s,
        enqueue_s=t1 - t0,
        process_s=t2 - t0,
        enqueue_jobs_per_s=jobs / (t1 - t0),
        processed_jobs_per_s=jobs / (t2 - t0),
        drain_jobs_per_s=jobs / (t2 - t1),
        host_cpu_s=host_cpu,
        host_us_per_job=host_cpu / jobs * 1e6,
        arbiter_cpu_s=arbiter_cpu,
        latency_samples=len(latencies),
        latency_p50_ms=statistics.median(ms),
        latency_p99_ms=percentile(ms, 99),
        latency_max_ms=max(ms),
        pool_jobs_per_s=pool,
        vs_pool=(jobs / (t2 - t0)) / pool,
    )


# -- reporting ---------------------------------------------------------------------

COLUMNS: list[tuple[str, str, str]] = [  # (header, Result field, format)
    ("proc", "processes", "d"),
    ("workers", "workers", "d"),
    ("workload", "workload", "s"),
    ("prefetch", "prefetch", "d"),
    ("logging", "logging", "s"),
    ("metrics", "metrics", "s"),
    ("enqueue jobs/s", "enqueue_jobs_per_s", ",.0f"),
    ("processed jobs/s", "processed_jobs_per_s", ",.0f"),
    ("drain jobs/s", "drain_jobs_per_s", ",.0f"),
    ("vs Pool", "vs_pool", ".2f"),
    ("p50 ms", "latency_p50_ms", ".2f"),
    ("p99 ms", "latency_p99_ms", ".2f"),
    ("host cpu s", "host_cpu_s", ".2f"),
    ("host µs/job", "host_us_per_job", ".0f"),
    ("arbiter cpu s", "arbiter_cpu_s", ".2f"),
]


LEGEND = """\
processed = N / (join returned - queue_many started); drain = N / (join returned - queue_many
returned): jobs reach workers only once the whole batch is stored, so drain is processing alone.
p50/p99: enqueue-to-start with idle workers. cpu s: over the enqueue + processing phase.
vs Pool: processed jobs/s over multiprocessing.Pool(proc).imap_unordered(noop, range(N),
chunksize=1), the median of 3 runs right after the point: the bare cost of one call to another
process."""


def table(results: Sequence[Result]) -> str:
    rows = [[h for h, _, _ in COLUMNS]]
    rows += [[format(getattr(r, f), spec) for _, f, spec in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


PEERS_LEGEND = """\
vs <peer>: jobarbiter's processed jobs/s divided by that peer's jobs/s.
jobarbiter: processed = N / (join returned - queue_many started); peers: from the first job
queued to the last one finished; both include the queueing. A peer that failed or timed out
shows its status (a timeout its partial rate) and gets no ratio."""


def ratio_table(results: Sequence[Result], attr: str, values: Sequence[str]) -> str:
    """Each point's median processed jobs/s for each value of ``attr`` (logging
    or workload), and its ratio to the first value's."""
    runs: dict[tuple[int, int, int], dict[str, list[float]]] = {}
    for r in results:
        point = runs.setdefault((r.processes, r.workers, r.prefetch), {})
        point.setdefault(getattr(r, attr), []).append(r.processed_jobs_per_s)
    rows = [["proc", "workers", "prefetch", *values, *(f"{v} / {values[0]}" for v in values[1:])]]
    for (processes, workers, prefetch), by_value in runs.items():
        rates = {v: statistics.median(r) for v, r in by_value.items()}
        base = rates[values[0]]
        rows.append(
            [
                str(processes),
                str(workers),
                str(prefetch),
                *(f"{rates[v]:,.0f}" for v in values),
                *(f"{rates[v] / base:.2f}x" for v in values[1:]),
            ]
        )
    return report.grid(rows, [True] * len(rows[0]))


def run_peers(
    libraries: Sequence[str], spec: Spec, show: Callable[[int, str], None]
) -> list[Trial]:
    """One trial per library; a failure is recorded in its Trial, never raised."""
    from benchmarks.peers.__main__ import loader  # noqa: PLC0415 - it imports this module

    trials = []
    for done, library in enumerate(libraries):
        show(done, f"{library} {spec.workload}")
        try:
            trial = run_trial(loader(library), library, spec, PEER_LIMITS)
        except Exception as exc:  # a peer module that fails to import other than ImportError
            trial = Trial(library, spec.workload, spec.jobs, status="failed")
            trial.detail = f"{type(exc).__name__}: {exc}"
        trials.append(trial)
    return trials


def ratio_cell(result: Result, trial: Trial) -> str:
    """jobarbiter's processed jobs/s over a peer's, for a peer trial that completed."""
    if trial.status != "ok" or not trial.jobs_per_s:
        return ""
    return f"{result.processed_jobs_per_s / trial.jobs_per_s:.2f}x"


def peers_table(results: Sequence[Result], trials: Sequence[Trial], processes: int) -> str:
    header = ["library", "proc", "workers", "jobs/s", *(f"vs {t.library}" for t in trials)]
    rows = [header]
    for r in results:
        rates = [str(r.processes), str(r.workers), f"{r.processed_jobs_per_s:,.0f}"]
        rows.append(["jobarbiter", *rates, *(ratio_cell(r, t) for t in trials)])
    for t in trials:
        rows.append([t.library, str(processes), "-", report.rate_cell(t), *([""] * len(trials))])
    return report.grid(rows, [False, *([True] * (len(header) - 1))])


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, help="no-op jobs per grid point (default 20000)")
    parser.add_argument("--processes", type=int_list, default=[1, 2], help="default 1,2")
    parser.add_argument(
        "--workers",
        type=int_list,
        default=[2, 4, 8],
        help="worker actors per queue per arbiter (default 2,4,8)",
    )
    parser.add_argument(
        "--latency-samples", type=int, help="jobs queued one at a time (default 300)"
    )
    parser.add_argument("--storage", choices=sorted(STORAGES), default="memory")
    parser.add_argument(
        "--workload",
        type=names(list(WORKLOADS)),
        default=["noop"],
        metavar="NAMES",
        help=f"what each job does, one run per name: {','.join(WORKLOADS)} (default noop; "
        "async ones run on the arbiters' event loop)",
    )
    parser.add_argument(
        "--sleep-ms", type=float, default=100.0, help="async-sleep's sleep (default 100)"
    )
    parser.add_argument(
        "--prefetch",
        type=count_list,
        default=[DEFAULT_PREFETCH],
        help="jobs each queue of an arbiter claims beyond its workers, one run per value "
        f"(default {DEFAULT_PREFETCH})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs per grid point; the logging modes alternate their order (default 1)",
    )
    parser.add_argument(
        "--logging",
        type=names(list(LOGGING)),
        default=["unconfigured"],
        metavar="MODES",
        help=(
            "the host's logging, one run per mode at each grid point, side by side: "
            f"{','.join(LOGGING)} (default unconfigured; "
            "unconfigured,warning prints the ratio of the two)"
        ),
    )
    parser.add_argument(
        "--metrics",
        type=names(["off", "on"]),
        default=["off"],
        metavar="MODES",
        help=(
            "one run per mode at each grid point: off, or on (Manager.serve_http with "
            f"/metrics scraped every {SCRAPE_EVERY:g} s); off,on prints the ratio (default off)"
        ),
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help="where to write the figures (default benchmarks/results/throughput.json)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_JOBS} jobs, {QUICK_SAMPLES} latency samples unless given",
    )
    parser.add_argument(
        "--against",
        type=names(list(LIBRARIES)),
        default=[],
        metavar="LIBS",
        help=(
            "after the grid, run the same no-op jobs through these peer libraries "
            f"(comma-separated, from {','.join(LIBRARIES)}) on the PostgreSQL server of "
            "JOBARBITER_BENCH_PG; meant for --storage postgres (default none)"
        ),
    )
    args = parser.parse_args(argv)
    args.peers_pg = None
    if args.against:
        try:
            args.peers_pg = peers_server(PG_DSN)
        except ValueError as exc:
            parser.error(f"--against: JOBARBITER_BENCH_PG {exc}")
    if args.jobs is None:
        args.jobs = QUICK_JOBS if args.quick else 20000
    if args.latency_samples is None:
        args.latency_samples = QUICK_SAMPLES if args.quick else 300
    if args.jobs < 1 or args.latency_samples < 1 or args.repeats < 1:
        parser.error("--jobs, --latency-samples and --repeats must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    # Each repeat of a point runs the logging modes in the other order, so that
    # whatever favours the first (or second) run of a point hits every mode.
    grid = [
        (p, w, f, m, k, x)
        for p in args.processes
        for w in args.workers
        for f in args.prefetch
        for r in range(args.repeats)
        for m in (args.logging if r % 2 == 0 else args.logging[::-1])
        for k in (args.workload if r % 2 == 0 else args.workload[::-1])
        for x in (args.metrics if r % 2 == 0 else args.metrics[::-1])
    ]
    progress = Progress(len(grid))
    results: list[Result] = []
    try:
        for done, (processes, workers, prefetch, log_mode, workload, metrics) in enumerate(grid):
            point = (
                f"p={processes} w={workers} prefetch={prefetch} {workload} "
                f"logging={log_mode} metrics={metrics}"
            )

            def phase(what: str, done: int = done, point: str = point) -> None:
                progress.show(done, f"{point} {what}")

            result = run_point(
                processes,
                workers,
                jobs=args.jobs,
                samples=args.latency_samples,
                storage=args.storage,
                prefetch=prefetch,
                log_mode=log_mode,
                workload=workload,
                sleep_ms=args.sleep_ms,
                metrics=metrics,
                phase=phase,
            )
            results.append(result)
        progress.show(len(grid), "done")
    finally:
        progress.close()
    print(f"{args.jobs} no-op jobs per point, {args.latency_samples} latency samples")
    print(table(results))
    print(LEGEND)
    if len(args.logging) > 1:
        print(
            f"\nmedian processed jobs/s of {args.repeats} run(s) per mode, "
            f"against logging={args.logging[0]}, same run:"
        )
        print(ratio_table(results, "logging", args.logging))
    if len(args.metrics) > 1:
        print(
            f"\nmedian processed jobs/s of {args.repeats} run(s) per metrics mode, "
            f"against metrics={args.metrics[0]}, same run:"
        )
        print(ratio_table(results, "metrics", args.metrics))
    if len(args.workload) > 1:
        print(
            f"\nmedian processed jobs/s of {args.repeats} run(s) per workload, "
            f"against {args.workload[0]}, same run:"
        )
        print(ratio_table(results, "workload", args.workload))
    trials: list[Trial] = []
    if args.against:
        os.environ[marks.PG_ENV] = args.peers_pg  # the server the grid used
        spec = Spec(
            workload="noop",
            jobs=args.jobs,
            sleep_ms=PEER_SLEEP_MS,
            processes=max(args.processes),
            concurrency=None,
            crash_hold=PEER_CRASH_HOLD,
        )
        progress = Progress(len(args.against))
        try:
            trials = run_peers(args.against, spec, progress.show)
            progress.show(len(args.against), "done")
        finally:
            progress.close()
        where = (
            "same PostgreSQL, same run"
            if args.storage == "postgres"
            else f"same run, jobarbiter on {args.storage} storage"
        )
        print(
            f"\n{where}: no-op jobs/s (peers: {spec.processes} worker "
            f"process{'es' if spec.processes > 1 else ''} each, their default concurrency)"
        )
        print(peers_table(results, trials, spec.processes))
        print(PEERS_LEGEND)
        print("\npeer trials:")
        print(report.details(trials, {}))
    given = sys.argv[1:] if argv is None else list(argv)
    figures: dict[str, Any] = {
        "benchmark": "throughput",
        "command": shlex.join(["python", "-m", "benchmarks.throughput", *given]),
        "machine": machine(),
        "jobs": args.jobs,
        "latency_samples": args.latency_samples,
        "storage": args.storage,
        "results": [asdict(r) for r in results],
    }
    if args.against:
        figures["peers"] = [asdict(t) for t in trials]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
