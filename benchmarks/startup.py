"""How long an arbiter takes to start, beside what multiprocessing's spawn costs.

jobarbiter starts each arbiter as a fresh interpreter on its own entry point
(``actors.arbiter.main``), which imports only what its spec names. The
baseline, measured in the same run, is what the arbiters used to be: a
``multiprocessing`` spawn child that imports the same modules. Both count from
the start of the process to the moment it can work:

* jobarbiter: ``config.start()`` until every arbiter says it is ready (its
  workers have built their state), the StorageActor's start included;
* spawn: ``Process.start()`` until the child, having imported
  ``actors.arbiter`` and the job module, writes a byte to a pipe.

Run from the repository root:

    python -m benchmarks.startup                  # 1 and 2 arbiters, 10 rounds
    python -m benchmarks.startup --processes 1,2,4 --rounds 20
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import multiprocessing.connection
import statistics
import sys
import time
from collections.abc import Sequence

from benchmarks.common import int_list, machine
from benchmarks.workloads import Noop
from supervisor import WorkerConfig

READY_TIMEOUT = 60.0


def _spawned_child(conn: multiprocessing.connection.Connection) -> None:
    # What an arbiter needs before it can work, imported in a spawn child.
    importlib.import_module("actors.arbiter")
    importlib.import_module("benchmarks.workloads")
    conn.send_bytes(b"r")
    conn.close()


def spawn_seconds(processes: int) -> float:
    """Seconds until ``processes`` spawn children have imported what an arbiter needs."""
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    pipes, children = [], []
    for _ in range(processes):
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(target=_spawned_child, args=(writer,), daemon=True)
        child.start()
        writer.close()
        pipes.append(reader)
        children.append(child)
    for reader in pipes:
        if not reader.poll(READY_TIMEOUT):
            raise TimeoutError("a spawn child did not report")
        reader.recv_bytes()
    seconds = time.perf_counter() - started
    for child in children:
        child.join(5)
    return seconds


def jobarbiter_seconds(processes: int) -> float:
    """Seconds from ``config.start()`` until every arbiter is ready."""
    config = WorkerConfig().register(Noop).set_worker_count("default", 4)
    started = time.perf_counter()
    manager = config.start(processes=processes)
    try:
        deadline = started + READY_TIMEOUT
        while sum(a.state == "running" for a in manager.stats().arbiters) < processes:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"arbiters not ready after {READY_TIMEOUT} s")
            time.sleep(0.001)
        return time.perf_counter() - started
    finally:
        manager.stop(timeout=5)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.startup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--processes", type=int_list, default=[1, 2], help="default 1,2")
    parser.add_argument("--rounds", type=int, default=10, help="starts per point (default 10)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    info = machine()
    print(f"arbiter start-up, median of {args.rounds} rounds; {info['cpu_count']} CPUs")
    print(f"{'processes':>9}  {'jobarbiter ms':>13}  {'spawn ms':>8}  {'ratio':>6}")
    for processes in args.processes:
        ours, spawned = [], []
        for _ in range(args.rounds):  # interleaved, so that noise hits both alike
            ours.append(jobarbiter_seconds(processes))
            spawned.append(spawn_seconds(processes))
        mine, base = statistics.median(ours), statistics.median(spawned)
        print(f"{processes:>9}  {mine * 1000:>13.1f}  {base * 1000:>8.1f}  {mine / base:>5.2f}x")
    print("ratio: jobarbiter's start-up over the spawn baseline's (below 1: faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
