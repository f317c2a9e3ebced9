"""Stalls: the watch on executors that hold jobs back from idle workers.

Contract: a ThreadExecutor whose jobs are tiny lets its running workers take
what arrives from the buffer instead of waking an idle worker per job (each
wake is a thread hand-off that costs more than such a job). It then asks to
be watched (``watch``). While any executor is watched, the watch looks at
each every ``STALL_AFTER`` seconds and calls its ``unstall``, which hands the
buffer to idle workers if no job ended since the last look: a job that turns
out slow never keeps the others waiting for long. With nothing watched, its
thread sleeps until ``watch`` is called.
"""

from __future__ import annotations

import threading
from typing import Protocol

STALL_AFTER = 0.002  # seconds without progress before idle workers are woken


class Unstallable(Protocol):
    def unstall(self) -> bool:
        """Hand the buffer out if no job ended since the last call; whether
        to be watched again."""
        ...


class Stalls:
    def __init__(self, every: float = STALL_AFTER) -> None:
        self._every = every
        self._lock = threading.Lock()
        self._watched: set[Unstallable] = set()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, executor: Unstallable) -> None:
        with self._lock:
            if executor in self._watched:
                return
            self._watched.add(executor)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jobarbiter-stalls", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                # Sleeps with the GIL released: no cost while jobs stream by.
                threading.Event().wait(self._every)
                with self._lock:
                    watched = list(self._watched)
                kept = [executor for executor in watched if executor.unstall()]
                with self._lock:
                    for executor in watched:
                        if executor not in kept:
                            self._watched.discard(executor)
                    if not self._watched:
                        break
