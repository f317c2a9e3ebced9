"""Soak: a steady stream of jobs with failures, timeouts and SIGKILLs, for minutes.

A driver runs the host (a Manager) as a child process, which queues a steady
stream of jobs and notes each batch in a ledger once ``queue_many`` returned
(acknowledged). Some jobs fail their first attempt, some hang past their
TIMEOUT on their first attempt; every job that ends well notes its number.
Meanwhile the driver SIGKILLs a random arbiter every ``--kill-every`` seconds
and, on SQLite and PostgreSQL, the whole host every ``--host-kill-every``
seconds, starting it again (memory storage would lose its jobs with its host,
by design). Each minute it prints jobs acknowledged and done, how many ran
twice, kills, host restarts, and the host's RSS and open file descriptors.
At the end the host stops queueing and drains, and the driver counts the
acknowledged jobs that never finished: lost, which must be 0.

Run from the repository root (not in CI: it takes minutes):

    python -m benchmarks.soak --minutes 10 --storage memory
    python -m benchmarks.soak --minutes 10 --storage sqlite
    python -m benchmarks.soak --minutes 10 --storage postgres   # JOBARBITER_BENCH_PG
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from benchmarks.workloads import SOAK_DIR, SOAK_TIMEOUT, SoakJob, note
from supervisor import Manager, MemoryStorage, SqliteStorage, Storage, WorkerConfig

PG_DSN = os.environ.get("JOBARBITER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HANG_SHARE = 0.002  # jobs that hang past their TIMEOUT on their first attempt
FAIL_SHARE = 0.05  # jobs that fail their first attempt
TICK = 0.1  # seconds between two batches
_GAP = 100_000  # numbers skipped after a host kill


# -- the host (a child of the driver) ----------------------------------------------


def make_storage(kind: str, folder: Path, schema: str) -> Storage:
    if kind == "memory":
        return MemoryStorage()
    if kind == "sqlite":
        return SqliteStorage(folder / "jobs.db")
    from storage.postgres import PostgresStorage  # noqa: PLC0415 - the optional extra

    return PostgresStorage(PG_DSN, schema=schema)


def host(args: argparse.Namespace) -> int:
    folder = Path(os.environ[SOAK_DIR])
    # The host is the application here: its warnings (each timeout, kill and
    # restart) go to a file in the soak folder, not over the driver's report.
    logging.basicConfig(filename=folder / "host.log", level=logging.WARNING)
    config = (
        WorkerConfig(storage=make_storage(args.storage, folder, args.schema))
        .register(SoakJob)
        .set_worker_count("default", args.workers)
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    chance = random.Random(args.first)
    per_tick = max(1, round(args.rate * TICK))
    n = args.first
    with config.start(processes=args.processes) as manager:
        while not stopping.is_set():
            started = time.monotonic()
            queue_batch(manager, chance, range(n, n + per_tick))
            n += per_tick
            stopping.wait(max(0.0, TICK - (time.monotonic() - started)))
        manager.join(timeout=600)
    return 0


def queue_batch(manager: Manager, chance: random.Random, numbers: range) -> None:
    plain, hanging = [], []
    for n in numbers:
        roll = chance.random()
        ms = chance.uniform(1, 5)
        if roll < HANG_SHARE:
            hanging.append(SoakJob(n=n, ms=ms, hang=True))
        else:
            plain.append(SoakJob(n=n, ms=ms, fail=roll < HANG_SHARE + FAIL_SHARE))
    manager.queue_many(plain)
    for job in hanging:
        manager.queue(job, timeout=SOAK_TIMEOUT)
    # Only now are they acknowledged: a host killed before this line queued
    # jobs that nobody counts, never ones counted that it did not queue.
    note("ledger.log", "".join(f"{n}\n" for n in numbers))


# -- the driver ---------------------------------------------------------------------


def _numbers(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]


def _host_command(args: argparse.Namespace, first: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.soak",
        "--host",
        "--storage",
        args.storage,
        "--schema",
        args.schema,
        "--processes",
        str(args.processes),
        "--workers",
        str(args.workers),
        "--rate",
        str(args.rate),
        "--first",
        str(first),
    ]


def _kill_tree(process: psutil.Process) -> None:
    """SIGKILL a host and the arbiters it started (a host killed from outside)."""
    children = process.children(recursive=True)
    for victim in [process, *children]:
        try:
            victim.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs([process, *children], timeout=10)


def _arbiters(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [c for c in process.children() if "arbiter" in " ".join(c.cmdline())]
    except psutil.Error:
        return []


class _Soak:
    """The driver's side: the host it runs, the kills, the counting."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.folder = Path(tempfile.mkdtemp(prefix="jobarbiter-soak-"))
        (self.folder / "tried").mkdir()
        self.ledger, self.done_log = self.folder / "ledger.log", self.folder / "done.log"
        self.chance = random.Random(args.seed)
        self.kills = self.host_restarts = 0
        self.minutes: list[dict[str, Any]] = []
        self.hosted = self._start(0)

    def _start(self, first: int) -> psutil.Process:
        env = {**os.environ, SOAK_DIR: str(self.folder)}
        return psutil.Process(subprocess.Popen(_host_command(self.args, first), env=env).pid)

    def kill_an_arbiter(self) -> None:
        arbiters = _arbiters(self.hosted)
        if arbiters:
            try:
                self.chance.choice(arbiters).kill()
                self.kills += 1
            except psutil.NoSuchProcess:
                pass

    def restart_the_host(self) -> None:
        _kill_tree(self.hosted)
        # Past a gap: the killed host may have stored a batch it never noted.
        self.hosted = self._start(max(_numbers(self.ledger), default=-1) + 1 + _GAP)
        self.host_restarts += 1

    def report(self) -> None:
        acknowledged, done = _numbers(self.ledger), _numbers(self.done_log)
        try:
            rss, fds = self.hosted.memory_info().rss / 2**20, self.hosted.num_fds()
        except psutil.Error:
            rss, fds = 0.0, 0
        row = {
            "minute": len(self.minutes) + 1,
            "acknowledged": len(acknowledged),
            "done": len(set(done)),
            "ran_twice_or_more": len(done) - len(set(done)),
            "arbiter_kills": self.kills,
            "host_restarts": self.host_restarts,
            "host_rss_mb": round(rss, 1),
            "host_fds": fds,
        }
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        self.minutes.append(row)

    def finish(self) -> dict[str, Any]:
        """Stop queueing, let the host drain and leave; count."""
        self.hosted.send_signal(signal.SIGTERM)
        self.hosted.wait(timeout=900)
        acknowledged, done = set(_numbers(self.ledger)), _numbers(self.done_log)
        lost = sorted(acknowledged - set(done))
        summary: dict[str, Any] = {
            "storage": self.args.storage,
            "minutes": self.args.minutes,
            "acknowledged": len(acknowledged),
            "done": len(set(done)),
            "lost": len(lost),
            "ran_twice_or_more": len(done) - len(set(done)),
            "arbiter_kills": self.kills,
            "host_restarts": self.host_restarts,
        }
        if len(self.minutes) >= 2:
            first, last = self.minutes[0], self.minutes[-1]
            summary["rss_growth_after_minute_1"] = round(
                last["host_rss_mb"] / first["host_rss_mb"] - 1, 4
            )
            summary["fd_change_after_minute_1"] = last["host_fds"] - first["host_fds"]
        print(json.dumps(summary), flush=True)
        print(f"host log: {self.folder / 'host.log'}", flush=True)
        if lost:
            print(f"LOST: {lost[:20]}{' ...' if len(lost) > 20 else ''}", flush=True)
        summary["per_minute"] = self.minutes
        return summary


def drive(args: argparse.Namespace) -> dict[str, Any]:
    durable = args.storage != "memory"
    print(
        f"soak: {args.storage}, {args.minutes} min, {args.processes} x {args.workers}, "
        f"{args.rate} jobs/s, an arbiter killed every {args.kill_every} s"
        + (f", the host every {args.host_kill_every} s" if durable else ""),
        flush=True,
    )
    soak = _Soak(args)
    began = time.monotonic()
    next_kill = began + args.kill_every
    # Host kills fall half a minute off the per-minute reports, so that no
    # report reads a host that has just been started.
    next_host_kill = began + args.host_kill_every - 30
    next_report = began + 60
    while (now := time.monotonic()) < began + args.minutes * 60:
        if now >= next_kill:
            next_kill += args.kill_every
            soak.kill_an_arbiter()
        if durable and now >= next_host_kill:
            next_host_kill += args.host_kill_every
            soak.restart_the_host()
        if now >= next_report:
            next_report += 60
            soak.report()
        time.sleep(0.05)
    soak.report()  # the last minute's figures, before the drain
    return soak.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--storage", choices=("memory", "sqlite", "postgres"), default="memory")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=int, default=500, help="jobs queued per second")
    parser.add_argument(
        "--kill-every", type=float, default=5.0, help="seconds between arbiter kills"
    )
    parser.add_argument(
        "--host-kill-every", type=float, default=120.0, help="seconds (sqlite and postgres)"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the summary here")
    parser.add_argument("--host", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--schema", default="", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host:
        return host(args)
    if args.storage == "postgres" and not args.schema:
        args.schema = f"jobarbiter_soak_{uuid.uuid4().hex[:8]}"
    try:
        summary = drive(args)
    finally:
        if args.storage == "postgres":
            import psycopg  # noqa: PLC0415 - the optional extra

            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
