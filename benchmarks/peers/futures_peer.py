"""concurrent.futures.ProcessPoolExecutor: the bare floor, no broker at all.

One ``submit`` per job, so one pickle and one pipe round trip each; its
processes run one job at a time. It has no retry: a killed worker breaks the
pool (BrokenProcessPool).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from benchmarks.peers import marks
from benchmarks.peers.harness import Peer, Spec, task_for

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "noop": marks.noop,
    "sleep": marks.nap,
    "crash": marks.crash_probe,
}


class FuturesPeer(Peer):
    name = "ProcessPoolExecutor"
    distributions = ()
    broker = "pipes to its processes"
    reliability = "none: a killed process breaks the pool; nothing is retried"

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def describe(self, spec: Spec) -> list[str]:
        return [f"ProcessPoolExecutor(max_workers={spec.processes}), one submit() per job"]

    @contextlib.contextmanager
    def in_process(self, spec: Spec) -> Iterator[Callable[[], list[int]]]:
        older = {p.pid for p in multiprocessing.active_children()}
        pool = self._pool = ProcessPoolExecutor(max_workers=spec.processes)

        def mine() -> list[multiprocessing.process.BaseProcess]:
            return [p for p in multiprocessing.active_children() if p.pid not in older]

        try:
            yield lambda: [p.pid for p in mine() if p.pid is not None]
        finally:
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            for child in mine():  # a crash probe may still be sleeping in one
                child.kill()
                child.join(timeout=5)

    def enqueue(self, workload: str, count: int, spec: Spec) -> None:
        assert self._pool is not None, "enqueue outside in_process"
        function, args = task_for(workload, spec, FUNCTIONS)
        for _ in range(count):
            self._pool.submit(function, *args)
