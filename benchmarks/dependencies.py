"""What dependencies cost a storage: a chain of jobs against as many free ones.

For each storage (memory, SQLite, PostgreSQL), in the same run:

* release: ``--jobs`` jobs queued as a chain (each ``after`` the one before)
  and run one by one (pop, complete, commit), against as many jobs with no
  parents run the same way: the ratio is what waiting and releasing adds;
* cancel: the first job of a chain dies and the rest are cancelled in its
  transaction (one walk of the subtree), against cancelling as many pending
  jobs one ``cancel`` each: the ratio is the cascade's cost against doing it
  by hand.

Run from the repository root:

    python -m benchmarks.dependencies
    python -m benchmarks.dependencies --jobs 1000 --storage memory,sqlite
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import names
from benchmarks.throughput import postgres_storage
from storage import JobResult, MaxRetries, MemoryStorage, NewJob, Policy, SqliteStorage, Storage
from storage.policy import Backoff

QUEUE = "bench"
POLICY = Policy(MaxRetries.count(0), Backoff.linear(1.0), 5.0, None)
FREE = NewJob("bench.Job", QUEUE, b"\x80", POLICY)


@contextmanager
def opened(kind: str) -> Iterator[Storage]:
    if kind == "memory":
        yield MemoryStorage().open()
        return
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            storage = SqliteStorage(Path(directory) / "jobs.db").open()
            try:
                yield storage
            finally:
                storage.close()
        return
    storage = postgres_storage().open()
    try:
        yield storage
    finally:
        storage.close()


def chain(n: int) -> list[NewJob]:
    return [FREE, *(FREE._replace(after=(i,)) for i in range(n - 1))]


def drain(storage: Storage, n: int) -> None:
    """Run ``n`` jobs one at a time, as a runner with one slot would."""
    for _ in range(n):
        (claim,) = storage.pop(QUEUE, "bench", 1)
        storage.complete(claim.id, "bench", JobResult.success())
        storage.commit()


def timed(work: Callable[[], None]) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def release(storage: Storage, n: int) -> tuple[float, float]:
    storage.push_many([FREE] * n)
    storage.commit()
    free = timed(lambda: drain(storage, n))
    storage.push_many(chain(n))
    storage.commit()
    chained = timed(lambda: drain(storage, n))
    return free, chained


def cancel(storage: Storage, n: int) -> tuple[float, float]:
    ids = storage.push_many([FREE] * n)
    storage.commit()

    def by_hand() -> None:
        for job_id in ids:
            storage.cancel(job_id, "by hand")
        storage.commit()

    one_by_one = timed(by_hand)
    first = storage.push_many(chain(n))[0]
    storage.commit()
    (claim,) = storage.pop(QUEUE, "bench", 1)
    assert claim.id == first

    def cascade() -> None:
        storage.complete(first, "bench", JobResult.failure("dies"))
        storage.commit()

    cascaded = timed(cascade)
    told = storage.dependents()
    assert len(told.cancelled) == n - 1, told
    return one_by_one, cascaded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dependencies", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per chain (default 1000)")
    parser.add_argument(
        "--storage",
        type=names(("memory", "sqlite", "postgres")),
        default=["memory", "sqlite", "postgres"],
        help="comma-separated: memory, sqlite, postgres (default all)",
    )
    args = parser.parse_args(argv)
    n = args.jobs
    print(f"{n} jobs: a chain against free jobs, on each storage (ratio: chain / free)")
    print(f"{'storage':<10} {'free s':>8} {'chain s':>8} {'ratio':>6}   "
          f"{'cancel 1 by 1 s':>15} {'cascade s':>9} {'ratio':>6}")  # fmt: skip
    for kind in args.storage:
        with opened(kind) as storage:
            free, chained = release(storage, n)
            one_by_one, cascaded = cancel(storage, n)
        print(
            f"{kind:<10} {free:>8.3f} {chained:>8.3f} {chained / free:>6.2f}   "
            f"{one_by_one:>15.3f} {cascaded:>9.3f} {cascaded / one_by_one:>6.2f}"
        )


if __name__ == "__main__":
    main()
