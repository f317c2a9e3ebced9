"""Storage throughput and memory: MemoryStorage directly and through the StorageActor.

Measures:

* push jobs/s and pop+complete jobs/s on a MemoryStorage called directly;
* pop+complete jobs/s through a StorageActor, one ask per operation ("single")
  and batched: each message is a Batch of the previous batch's completions
  fused with one Pop for the next ``--batch`` jobs;
* memory per queued job at ``--memory-jobs`` jobs with 100-byte arguments,
  as bytes beyond the 100 argument bytes. Each figure comes from a fresh
  subprocess: once by tracemalloc (every Python allocation the storage keeps:
  the bytes object with its header, the entry, id and index keys, dict and
  index slots) and once by the process's RSS growth (what the OS pays,
  allocator overhead included);
* memory per kept record (succeeded, kept for the default result_ttl) the
  same two ways: ``--memory-jobs`` jobs are queued, then popped and
  completed, and the figure is what the storage holds at the end divided by
  the jobs, beyond their argument bytes. Once for ``run`` returning None
  (no value), once for a small value (``encode({"ok": True, "n": i})``,
  about 10 bytes of msgpack: its bytes object is counted).

Run from the repository root:

    python -m benchmarks.storage
    python -m benchmarks.storage --jobs 50000 --memory-jobs 100000 --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from actors.ops import Batch, Complete, Pop, Push, Stats
from actors.storage_actor import StorageActor
from storage import Backoff, JobResult, MaxRetries, MemoryStorage, NewJob, Policy
from storage.codec import encode

QUEUE = "default"
ARG_BYTES = 100
POLICY = Policy(MaxRetries.count(5), Backoff.exponential(2), heartbeat_interval=5.0, timeout=None)
SUCCESS = JobResult.success()

# name -> (target, "min" or "max")
TARGETS: dict[str, tuple[float, str]] = {
    "direct_push_per_s": (200_000, "min"),
    "direct_pop_complete_per_s": (100_000, "min"),
    "actor_batched_pop_complete_per_s": (30_000, "min"),
    "bytes_per_job_tracemalloc": (250, "max"),
    "bytes_per_job_rss": (250, "max"),
}
# What a kept record returns, for the memory figures: none, or a small value.
VALUES = ("none", "small")


def new_jobs(count: int) -> list[NewJob]:
    """Jobs with distinct 100-byte arguments, sharing one name, queue and policy
    (as jobs of one class do)."""
    return [
        NewJob("benchmarks.Job", QUEUE, i.to_bytes(ARG_BYTES, "big"), POLICY) for i in range(count)
    ]


def timed(work: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# -- direct -----------------------------------------------------------------------------


def direct(count: int) -> dict[str, float]:
    jobs = new_jobs(count)
    storage = MemoryStorage()

    def push_all() -> None:
        push = storage.push
        for job in jobs:
            push(job)

    def pop_complete_all() -> None:
        pop, complete = storage.pop, storage.complete
        for _ in range(count):
            (job,) = pop(QUEUE, "r1")
            complete(job.id, "r1", SUCCESS)

    push_s = timed(push_all)
    pop_s = timed(pop_complete_all)
    assert storage.stats() == {}
    return {"direct_push_per_s": count / push_s, "direct_pop_complete_per_s": count / pop_s}


# -- through the actor ------------------------------------------------------------------


def _filled_actor(count: int) -> Any:
    ref = StorageActor.start(MemoryStorage())
    jobs = new_jobs(count)
    for start in range(0, count, 10_000):
        ref.ask(Push(tuple(jobs[start : start + 10_000])))
    return ref


def actor_single(count: int) -> float:
    ref = _filled_actor(count)
    try:

        def run() -> None:
            for _ in range(count):
                (job,) = ref.ask(Pop(QUEUE, "r1", 1))
                ref.ask(Complete(job.id, "r1", SUCCESS))

        seconds = timed(run)
        assert ref.ask(Stats()) == {}
    finally:
        ref.stop()
    return count / seconds


def actor_batched(count: int, batch: int) -> float:
    ref = _filled_actor(count)
    try:

        def run() -> None:
            done = 0
            jobs: list[Any] = []
            while done < count:
                ops: list[object] = [Complete(job.id, "r1", SUCCESS) for job in jobs]
                ops.append(Pop(QUEUE, "r1", batch))
                answers = ref.ask(Batch(tuple(ops)))
                done += len(jobs)
                jobs = answers[-1]
                if not jobs and done < count:
                    raise RuntimeError("the queue ran dry early")

        seconds = timed(run)
        assert ref.ask(Stats()) == {}
    finally:
        ref.stop()
    return count / seconds


# -- memory -----------------------------------------------------------------------------


def memory_child(count: int, method: str, kept: str | None = None) -> float:
    """Bytes per queued job beyond its argument bytes; with ``kept`` ("none"
    or "small": what ``run`` returned), per succeeded record kept instead.
    Runs in a fresh process."""
    policy = POLICY  # shared by every job, as for jobs of one class
    name, queue = "benchmarks.Job", QUEUE
    gc.collect()
    if method == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = psutil.Process().memory_info().rss
    storage = MemoryStorage()
    push = storage.push
    for i in range(count):
        push(NewJob(name, queue, i.to_bytes(ARG_BYTES, "big"), policy))
    if kept is not None:
        pop, complete = storage.pop, storage.complete
        for i in range(count):
            (job,) = pop(queue, "r1")
            # A small value's bytes are made here, as they arrive from a
            # worker: the record keeps them, so they count.
            value = None if kept == "none" else encode({"ok": True, "n": i})
            complete(job.id, "r1", JobResult.success(value))
        del job, value
    gc.collect()
    if method == "tracemalloc":
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    else:
        after = psutil.Process().memory_info().rss
    if kept is None:
        assert storage.stats()[QUEUE].pending == count
    else:
        assert storage.stats() == {}
        assert len(storage.list(limit=count + 1)) == count  # every record still kept
    return (after - before) / count - ARG_BYTES


def memory(count: int, method: str, kept: str | None = None) -> float:
    command = [sys.executable, "-m", "benchmarks.storage", "--memory-child", method, str(count)]
    if kept is not None:
        command += ["--kept", kept]
    child = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(child.stdout.strip().splitlines()[-1])


# -- main -------------------------------------------------------------------------------


def _verdict(name: str, value: float) -> str:
    target = TARGETS.get(name)
    if target is None:
        return ""
    limit, kind = target
    ok = value >= limit if kind == "min" else value <= limit
    sign = ">=" if kind == "min" else "<="
    return f"  [{'ok' if ok else 'MISSED'}: target {sign} {limit:,.0f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage", description=__doc__)
    parser.add_argument("--jobs", type=int, default=200_000, help="jobs per throughput run")
    parser.add_argument(
        "--single-jobs", type=int, default=20_000, help="jobs for the one-ask-per-op actor run"
    )
    parser.add_argument("--batch", type=int, default=100, help="jobs per Batch message")
    parser.add_argument(
        "--memory-jobs", type=int, default=1_000_000, help="queued jobs for the memory figure"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--memory-child", nargs=2, metavar=("METHOD", "JOBS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--kept", choices=VALUES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        method, count = args.memory_child
        print(memory_child(int(count), method, args.kept))
        return 0

    print(
        f"jobarbiter storage benchmark: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )
    figures: dict[str, float] = {}

    def report(name: str, label: str, value: float, unit: str) -> None:
        figures[name] = value
        print(f"  {label:<44} {value:>12,.0f} {unit}{_verdict(name, value)}")

    print(f"MemoryStorage, called directly ({args.jobs:,} jobs)")
    for name, value in direct(args.jobs).items():
        label = "push" if "push" in name else "pop+complete"
        report(name, label, value, "jobs/s")

    print("StorageActor")
    report(
        "actor_single_pop_complete_per_s",
        f"pop+complete, one ask per op ({args.single_jobs:,} jobs)",
        actor_single(args.single_jobs),
        "jobs/s",
    )
    report(
        "actor_batched_pop_complete_per_s",
        f"pop+complete, Batch of {args.batch} ({args.jobs:,} jobs)",
        actor_batched(args.jobs, args.batch),
        "jobs/s",
    )

    print(f"Memory per queued job ({args.memory_jobs:,} jobs, {ARG_BYTES}-byte args)")
    for method in ("tracemalloc", "rss"):
        report(
            f"bytes_per_job_{method}",
            f"beyond the argument bytes, by {method}",
            memory(args.memory_jobs, method),
            "bytes",
        )

    print(
        f"Memory per kept record ({args.memory_jobs:,} succeeded jobs, {ARG_BYTES}-byte args,"
        f" result_ttl {POLICY.result_ttl:g} s)"
    )
    for kept in VALUES:
        returned = "None" if kept == "none" else "a small value"
        for method in ("tracemalloc", "rss"):
            report(
                f"bytes_per_record_{kept}_{method}",
                f"run returned {returned}, by {method}",
                memory(args.memory_jobs, method, kept),
                "bytes",
            )

    if args.json:
        meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "batch": args.batch}
        args.json.write_text(json.dumps({"figures": figures, "meta": meta}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
