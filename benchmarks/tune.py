"""Pick arbiter processes and workers per queue for a job: sweep, measure, recommend.

The workload is a no-op job, a CPU-bound job (``--workload cpu --ms 1``: that
much CPU time per job), an I/O-bound job (``--workload sleep --ms 10``) or your
own job class (``--job myapp.jobs:SendEmail --args '{"to": "x"}'``, with
``--state myapp.jobs:make_state`` if it needs its state factory; it must be
importable by name, and it really runs, many times).

Every grid point (processes x worker actors per queue) is measured
``--repeats`` times in round-robin passes, so that a burst of load elsewhere on
the machine spreads over several points instead of spoiling one. Each
measurement starts a fresh system and:

1. waits until every worker has built its state, then runs a warm-up batch;
2. on the first pass, sizes a batch to last about ``--seconds`` (at least 20
   jobs per worker, so ramp-up and tail stay small);
3. queues the batch in one ``queue_many`` and times the drain, from
   ``queue_many`` returned to the last job finished (polled every 2 ms, not
   ``join``, which checks at most every 50 ms): jobs/s is processing alone;
4. queues ``--latency-samples`` probes one at a time, each after the last
   finished: enqueue-to-start latency with idle workers.

Reported per point: median jobs/s and the spread of the repeats ((max - min) /
median), p50/p99 latency over all repeats' probes, host and arbiter CPU as a
percentage of one core over the drain (arbiters summed), peak RSS of the host
and of the largest arbiter. The recommendation is the smallest configuration,
fewest processes first, then fewest workers, whose median is within
``--tolerance`` percent of the best.

Run from the repository root:

    python -m benchmarks.tune                          # no-op, default grid (~2 min on 2 cores)
    python -m benchmarks.tune --workload cpu --ms 1
    python -m benchmarks.tune --workload sleep --ms 10
    python -m benchmarks.tune --processes 1,2 --workers 2,8,32 --repeats 5 --seconds 2
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    AsyncProbe,
    Nap,
    Probe,
    Progress,
    Spin,
    cpu_seconds,
    int_list,
    jobs_done,
    load_attr,
    machine,
    median_spread,
    peak_rss,
    percentile,
    probe_state,
    reset_peak_rss,
    versions,
    wait_for_batch,
    wait_for_workers,
    warm_up,
    write_json,
)
from benchmarks.workloads import Noop, read_samples
from supervisor import Job, Manager, WorkerConfig

RESULTS = Path(__file__).parent / "results"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0
CALIBRATION_S = 0.25  # a calibration batch must last this long to be trusted
MIN_JOBS_PER_WORKER = 20
MAX_JOBS = 1_000_000
MB = 1024 * 1024

DEFAULT_PROCESSES = [1, 2, 4]
SHORT_JOB_WORKERS = [1, 2, 4, 8, 16, 32, 64, 128]  # no-op and CPU-bound jobs
WAITING_JOB_WORKERS = [1, 2, 4, 8, 16, 32, 64, 128, 256]  # sleep and user jobs may wait


# -- workloads ---------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What each measured job is: a Job class, its arguments and its state factory."""

    name: str  # short, used in file names: noop, cpu-1ms, sleep-10ms, job
    label: str  # for the table and the chart
    job: type[Job]
    args: dict[str, Any] = field(default_factory=dict)
    state: Callable[[Any], Any] | None = None

    @property
    def queue(self) -> str:
        return self.job.QUEUE

    def batch(self, count: int) -> list[Job]:
        if self.job is Noop:
            return [Noop(i) for i in range(count)]
        one = self.job(**self.args)
        return [one] * count  # each is encoded on its own by queue_many


def workload_from(args: argparse.Namespace) -> Workload:
    if args.job is not None:
        try:
            job = load_attr(args.job)
            kwargs = json.loads(args.args)
            state = None if args.state is None else load_attr(args.state)
        except (ImportError, AttributeError, ValueError) as exc:
            raise SystemExit(f"--job/--args/--state: {type(exc).__name__}: {exc}") from None
        if not (isinstance(job, type) and issubclass(job, Job)):
            raise SystemExit(f"--job {args.job}: not a Job subclass")
        if not isinstance(kwargs, dict):
            raise SystemExit("--args must be a JSON object of the job's fields")
        try:
            job(**kwargs).encode_args()  # refuse bad arguments before starting anything
        except TypeError as exc:
            raise SystemExit(f"--args for {args.job}: {exc}") from None
        return Workload("job", f"{args.job} with {args.args}", job, kwargs, state)
    if args.workload == "noop":
        return Workload("noop", "no-op", Noop)
    ms = args.ms if args.ms is not None else {"cpu": 1.0, "sleep": 10.0}[args.workload]
    if args.workload == "cpu":
        return Workload(f"cpu-{ms:g}ms", f"CPU-bound {ms:g} ms", Spin, {"ms": ms})
    return Workload(f"sleep-{ms:g}ms", f"sleep {ms:g} ms", Nap, {"ms": ms})


# -- measuring ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One measurement of one grid point."""

    jobs: int
    enqueue_s: float
    drain_s: float  # queue_many returned -> last job finished
    host_cpu_s: float
    arbiter_cpu_s: float  # all arbiters
    host_peak_rss: int | None  # bytes, since this run started (Linux), else None
    arbiter_peak_rss: int | None  # bytes, the largest arbiter
    latencies_ms: tuple[float, ...]

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.drain_s


@dataclass
class Point:
    """A grid point: its batch size (set by the first pass) and its runs."""

    processes: int
    workers: int
    jobs: int | None = None
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        return f"p={self.processes} w={self.workers}"


@dataclass(frozen=True, slots=True)
class Summary:
    processes: int
    workers: int
    repeats: int
    jobs: int
    jobs_per_s: float  # median
    jobs_per_s_min: float
    jobs_per_s_max: float
    spread: float  # (max - min) / median
    latency_p50_ms: float
    latency_p99_ms: float
    host_cpu_pct: float  # median, of one core
    arbiter_cpu_pct: float  # median, all arbiters, of one core
    host_peak_mb: float | None
    arbiter_peak_mb: float | None


def timed_batch(manager: Manager, jobs: Sequence[Job], timeout: float) -> tuple[float, float]:
    """Queue ``jobs`` in one call and wait for them: (enqueue seconds, drain seconds)."""
    done = jobs_done(manager) + len(jobs)
    t0 = time.perf_counter()
    ids = manager.queue_many(jobs)
    t1 = time.perf_counter()
    wait_for_batch(manager, ids[-1], done, timeout)
    return t1 - t0, time.perf_counter() - t1


def probe_latency(
    manager: Manager, workload: Workload, out_dir: str, count: int, timeout: float
) -> None:
    """Queue ``count`` probes one at a time, each once the one before has finished."""
    kind = probe_for(workload)
    for _ in range(count):
        probe = manager.queue(kind(time.time(), out_dir), queue=workload.queue)
        wait_for_batch(manager, probe, None, timeout, poll=0.0005)


def probe_for(workload: Workload) -> type[Job]:
    """The latency probe that runs beside the workload's job, of its kind."""
    return AsyncProbe if workload.job.is_async() else Probe


def calibrate(
    manager: Manager, workload: Workload, slots: int, seconds: float, timeout: float
) -> int:
    """A batch size that drains in about ``seconds``, at least MIN_JOBS_PER_WORKER per worker."""
    count = 4 * slots
    while True:
        _, drain = timed_batch(manager, workload.batch(count), timeout)
        if drain >= CALIBRATION_S or count >= MAX_JOBS:
            break
        grow = CALIBRATION_S * 1.5 / max(drain, 1e-3)
        count = min(MAX_JOBS, max(2 * count, math.ceil(count * grow)))
    wanted = math.ceil(count / drain * seconds)
    return min(MAX_JOBS, max(wanted, MIN_JOBS_PER_WORKER * slots))


def peak_mb(value: int | None) -> float | None:
    return None if value is None else value / MB


def measure(
    workload: Workload,
    point: Point,
    *,
    seconds: float,
    latency_samples: int,
    join_timeout: float,
    phase: Callable[[str], None],
) -> Run:
    """Start a system for ``point``, measure it once, stop it."""
    slots = point.processes * point.workers
    with tempfile.TemporaryDirectory(prefix="jobarbiter-tune-") as out_dir:
        config = (
            WorkerConfig(state=functools.partial(probe_state, out_dir, workload.state))
            .register(workload.job)
            .register(probe_for(workload))
            .set_worker_count(workload.queue, point.workers)
            .set_worker_count(Probe.QUEUE, 0)  # it runs on the workload's queue
        )
        phase("starting")
        host_peak_known = reset_peak_rss()
        manager = config.start(processes=point.processes)
        try:
            # An async queue builds its state once per arbiter, not per slot.
            ready = point.processes if workload.job.is_async() else slots
            wait_for_workers(out_dir, ready, READY_TIMEOUT)
            pids = warm_up(manager, workload.batch(2 * slots), join_timeout)
            if point.jobs is None:
                phase("sizing the batch")
                point.jobs = calibrate(manager, workload, slots, seconds, join_timeout)
            phase(f"{point.jobs:,} jobs")
            batch = workload.batch(point.jobs)
            host, arbiters = cpu_seconds([os.getpid()]), cpu_seconds(pids)
            enqueue_s, drain_s = timed_batch(manager, batch, join_timeout)
            host_cpu = cpu_seconds([os.getpid()]) - host
            arbiter_cpu = cpu_seconds(pids) - arbiters
            phase("latency")
            probe_latency(manager, workload, out_dir, latency_samples, join_timeout)
            arbiter_peaks = [p for p in map(peak_rss, pids) if p is not None]
            host_peak = peak_rss(os.getpid()) if host_peak_known else None
        finally:
            phase("stopping")
            manager.stop(timeout=STOP_TIMEOUT)
        latencies = read_samples(out_dir)
    return Run(
        jobs=point.jobs,
        enqueue_s=enqueue_s,
        drain_s=drain_s,
        host_cpu_s=host_cpu,
        arbiter_cpu_s=arbiter_cpu,
        host_peak_rss=host_peak,
        arbiter_peak_rss=max(arbiter_peaks) if arbiter_peaks else None,
        latencies_ms=tuple(s * 1000 for s in latencies),
    )


def summarize(point: Point) -> Summary | None:
    if not point.runs:
        return None
    rates = [r.jobs_per_s for r in point.runs]
    rate, spread = median_spread(rates)
    latencies = [ms for r in point.runs for ms in r.latencies_ms] or [math.nan]
    host_peaks = [r.host_peak_rss for r in point.runs if r.host_peak_rss is not None]
    arbiter_peaks = [r.arbiter_peak_rss for r in point.runs if r.arbiter_peak_rss is not None]
    return Summary(
        processes=point.processes,
        workers=point.workers,
        repeats=len(point.runs),
        jobs=point.runs[0].jobs,
        jobs_per_s=rate,
        jobs_per_s_min=min(rates),
        jobs_per_s_max=max(rates),
        spread=spread,
        latency_p50_ms=statistics.median(latencies),
        latency_p99_ms=percentile(latencies, 99),
        host_cpu_pct=statistics.median(100 * r.host_cpu_s / r.drain_s for r in point.runs),
        arbiter_cpu_pct=statistics.median(100 * r.arbiter_cpu_s / r.drain_s for r in point.runs),
        host_peak_mb=peak_mb(max(host_peaks)) if host_peaks else None,
        arbiter_peak_mb=peak_mb(max(arbiter_peaks)) if arbiter_peaks else None,
    )


def recommend(summaries: Sequence[Summary], tolerance: float) -> tuple[Summary, Summary]:
    """(best, chosen): chosen is the smallest point within ``tolerance`` of the best median.

    Smallest means fewest processes (each costs memory and a core), then
    fewest workers (threads are cheap, but each holds a state and a claim).
    """
    best = max(summaries, key=lambda s: s.jobs_per_s)
    near = [s for s in summaries if s.jobs_per_s >= (1 - tolerance) * best.jobs_per_s]
    return best, min(near, key=lambda s: (s.processes, s.workers))


def within_noise(
    summaries: Sequence[Summary], best: Summary, chosen: Summary, tolerance: float
) -> list[Summary]:
    """Points smaller than ``chosen`` whose best run, not median, came within reach."""
    bar = (1 - tolerance) * best.jobs_per_s
    smaller = [
        s for s in summaries if (s.processes, s.workers) < (chosen.processes, chosen.workers)
    ]
    return [s for s in smaller if s.jobs_per_s_max >= bar]


# -- reporting ---------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


def table(summaries: Sequence[Summary], chosen: Summary | None) -> str:
    header = [
        "proc",
        "workers",
        "jobs/s",
        "spread",
        "p50 ms",
        "p99 ms",
        "host cpu %",
        "arbiter cpu %",
        "host MB",
        "arbiter MB",
        "",
    ]
    rows = [header]
    for s in summaries:
        rows.append(
            [
                str(s.processes),
                str(s.workers),
                fmt(s.jobs_per_s, ",.0f"),
                f"±{s.spread * 50:.1f}%",
                fmt(s.latency_p50_ms, ".2f"),
                fmt(s.latency_p99_ms, ".2f"),
                fmt(s.host_cpu_pct, ".0f"),
                fmt(s.arbiter_cpu_pct, ".0f"),
                fmt(s.host_peak_mb, ".0f"),
                fmt(s.arbiter_peak_mb, ".0f"),
                "<- recommended" if s is chosen else "",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.rjust(w) for c, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths[:-1]))
    return "\n".join(line.rstrip() for line in lines)


LEGEND = """\
jobs/s: median over the repeats of N / (last job finished - queue_many returned), i.e. draining
a backlog; spread: ±half of (max - min) / median. p50/p99: enqueue-to-start of a probe queued
alone, idle workers, all repeats pooled. cpu %: of one core over the drain (arbiters summed).
MB: peak RSS of the host process and of the largest arbiter."""


def chart(
    summaries: Sequence[Summary],
    chosen: Summary,
    path: Path,
    title: str,
    subtitle: str,
) -> bool:
    """jobs/s against workers per queue, one line per process count; False without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 - optional: without it, no chart

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for processes in sorted({s.processes for s in summaries}):
        line = sorted((s for s in summaries if s.processes == processes), key=lambda s: s.workers)
        xs = [s.workers for s in line]
        ys = [s.jobs_per_s for s in line]
        errors = [
            [s.jobs_per_s - s.jobs_per_s_min for s in line],
            [s.jobs_per_s_max - s.jobs_per_s for s in line],
        ]
        ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=plural(processes, "process"))
    ax.scatter(
        [chosen.workers],
        [chosen.jobs_per_s],
        s=220,
        facecolors="none",
        edgecolors="black",
        linewidths=1.5,
        zorder=5,
        label=f"recommended: {chosen.processes} x {chosen.workers}",
    )
    workers = sorted({s.workers for s in summaries})
    ax.set_xscale("log", base=2)
    ax.set_xticks(workers, [str(w) for w in workers])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.set_xlabel("worker actors per queue, in each arbiter process")
    ax.set_ylabel("jobs/s (median; bars: min to max)")
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def job_reference(job: type[Job]) -> str:
    return f"{job.__module__}:{job.__qualname__}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}es"


def describe_machine(info: dict[str, Any]) -> str:
    return (
        f"{info['cpu_count']} CPUs, {info['implementation']} {info['python']}, {info['platform']}"
    )


# -- command line ------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kind = parser.add_argument_group("workload")
    kind.add_argument("--workload", choices=["noop", "cpu", "sleep"], default="noop")
    kind.add_argument(
        "--ms", type=float, help="per job, for cpu (default 1) and sleep (default 10)"
    )
    kind.add_argument("--job", metavar="MODULE:ATTR", help="your own Job subclass instead")
    kind.add_argument("--args", default="{}", help="its fields, as a JSON object (default {})")
    kind.add_argument("--state", metavar="MODULE:ATTR", help="its state factory, if it needs one")
    grid = parser.add_argument_group("grid and duration")
    grid.add_argument(
        "--processes",
        type=int_list,
        default=DEFAULT_PROCESSES,
        help=f"arbiter processes (default {','.join(map(str, DEFAULT_PROCESSES))})",
    )
    grid.add_argument(
        "--workers",
        type=int_list,
        help="worker actors per queue per arbiter (default "
        f"{','.join(map(str, SHORT_JOB_WORKERS))} for noop and cpu, "
        f"{','.join(map(str, WAITING_JOB_WORKERS))} for sleep and --job)",
    )
    grid.add_argument("--repeats", type=int, default=3, help="measurements per point (default 3)")
    grid.add_argument(
        "--seconds", type=float, default=1.0, help="target drain time per measurement (default 1)"
    )
    grid.add_argument("--jobs", type=int, help="a fixed batch size instead of --seconds")
    grid.add_argument(
        "--latency-samples", type=int, default=30, help="probes per measurement (default 30)"
    )
    grid.add_argument("--join-timeout", type=float, default=300.0, help="seconds (default 300)")
    grid.add_argument("--quick", action="store_true", help="smoke run: 1,2 x 1,4, 1 repeat, 0.2 s")
    out = parser.add_argument_group("output")
    out.add_argument("--tolerance", type=float, default=5.0, help="percent of the best (default 5)")
    out.add_argument("--json", type=Path, help="default benchmarks/results/tune-WORKLOAD.json")
    out.add_argument("--chart", type=Path, help="default benchmarks/results/tune-WORKLOAD.png")
    args = parser.parse_args(argv)
    if args.quick:
        args.processes, args.workers, args.repeats, args.seconds = [1, 2], [1, 4], 1, 0.2
    if args.repeats < 1 or args.seconds <= 0 or args.latency_samples < 0:
        parser.error("--repeats and --seconds must be positive, --latency-samples >= 0")
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be >= 1")
    if not 0 <= args.tolerance < 100:
        parser.error("--tolerance is a percentage in [0, 100)")
    if args.workers is None:
        waiting = args.job is not None or args.workload == "sleep"
        args.workers = WAITING_JOB_WORKERS if waiting else SHORT_JOB_WORKERS
    return args


def sweep(args: argparse.Namespace, workload: Workload) -> list[Point]:
    """Measure every point ``args.repeats`` times, in round-robin passes."""
    points = [
        Point(p, w, jobs=args.jobs) for p in sorted(args.processes) for w in sorted(args.workers)
    ]
    total = len(points) * args.repeats
    progress = Progress(total)
    started = time.monotonic()
    done = 0
    try:
        for repeat in range(args.repeats):
            for point in points:
                if point.error is not None:
                    done += 1
                    continue
                left = total - done
                eta = f" eta {(time.monotonic() - started) / done * left:.0f}s" if done else ""
                where = f"pass {repeat + 1}/{args.repeats} {point.label}"

                def phase(what: str, done: int = done, where: str = where, eta: str = eta) -> None:
                    progress.show(done, f"{where} {what}{eta}")

                try:
                    point.runs.append(
                        measure(
                            workload,
                            point,
                            seconds=args.seconds,
                            latency_samples=args.latency_samples,
                            join_timeout=args.join_timeout,
                            phase=phase,
                        )
                    )
                except Exception as exc:  # one bad point must not lose the others
                    point.error = f"{type(exc).__name__}: {exc}"
                done += 1
        progress.show(total, f"done in {time.monotonic() - started:.0f}s")
    finally:
        progress.close()
    return points


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    # The library's warnings (an arbiter killed on purpose) go to stderr.
    logging.basicConfig(level=logging.WARNING)
    workload = workload_from(args)
    info = machine()
    started = time.monotonic()
    points = sweep(args, workload)
    elapsed = time.monotonic() - started
    for point in points:
        if point.error is not None:
            print(f"{point.label}: failed: {point.error}", file=sys.stderr)
    summaries = [s for s in map(summarize, points) if s is not None]
    if not summaries:
        print("no grid point could be measured", file=sys.stderr)
        return 1
    tolerance = args.tolerance / 100
    best, chosen = recommend(summaries, tolerance)
    sizing = f"{args.jobs:,} jobs" if args.jobs else f"~{args.seconds:g} s"
    where = "" if workload.name == "job" else f" ({job_reference(workload.job)})"
    print(
        f"workload: {workload.label}{where}; "
        f"{args.repeats} repeats of {sizing} per point; {elapsed:.0f} s in all"
    )
    print(f"machine: {describe_machine(info)}")
    print(table(summaries, chosen))
    print(LEGEND)
    print(
        f"recommendation: {plural(chosen.processes, 'process')} x {chosen.workers} workers "
        "per queue: "
        f"{chosen.jobs_per_s:,.0f} jobs/s, within {args.tolerance:g}% of the best "
        f"({best.processes} x {best.workers}: {best.jobs_per_s:,.0f} jobs/s)"
    )
    print(
        f"  WorkerConfig(...).set_worker_count({workload.queue!r}, {chosen.workers}), "
        f"config.start(processes={chosen.processes})"
    )
    reachable = within_noise(summaries, best, chosen, tolerance)
    if reachable:
        listed = ", ".join(
            f"{s.processes} x {s.workers} ({s.jobs_per_s:,.0f}, best run {s.jobs_per_s_max:,.0f})"
            for s in reachable
        )
        print(
            f"  note: smaller configurations had a run within {args.tolerance:g}% of the best "
            f"median: {listed}. The repeats disagree more than the tolerance; more --repeats, "
            "longer --seconds or a quieter machine would settle it."
        )
    if best.workers == max(args.workers) or best.processes == max(args.processes):
        print(
            "  note: the best point is on the edge of the grid; larger --workers or "
            "--processes may do better still"
        )
    json_path = args.json or RESULTS / f"tune-{workload.name}.json"
    chart_path = args.chart or RESULTS / f"tune-{workload.name}.png"
    subtitle = f"{info['cpu_count']} CPUs, Python {info['python']}; {args.repeats} repeats"
    if chart(summaries, chosen, chart_path, f"jobarbiter: {workload.label} jobs", subtitle):
        print(f"chart written to {chart_path}")
    else:
        print("matplotlib is not installed: no chart (pip install '.[bench]')")
    given = sys.argv[1:] if argv is None else list(argv)
    write_json(
        json_path,
        {
            "benchmark": "tune",
            "command": shlex.join(["python", "-m", "benchmarks.tune", *given]),
            "machine": info,
            "versions": versions(["jobarbiter", "pykka", "msgpack"]),
            "workload": {
                "name": workload.name,
                "label": workload.label,
                "job": job_reference(workload.job),
                "args": workload.args,
                "queue": workload.queue,
            },
            "repeats": args.repeats,
            "seconds": args.seconds,
            "jobs": args.jobs,
            "latency_samples": args.latency_samples,
            "tolerance": tolerance,
            "elapsed_s": elapsed,
            "recommended": {"processes": chosen.processes, "workers": chosen.workers},
            "best": {"processes": best.processes, "workers": best.workers},
            "summary": [asdict(s) for s in summaries],
            "points": [
                {
                    "processes": p.processes,
                    "workers": p.workers,
                    "error": p.error,
                    "runs": [asdict(r) | {"jobs_per_s": r.jobs_per_s} for r in p.runs],
                }
                for p in points
            ],
        },
    )
    print(f"figures written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
