"""Jobs and the state factory the throughput benchmark runs in its arbiters.

They live in an importable module, not in the benchmark's ``__main__``,
because arbiters are spawned and find job classes and factories by name.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import Backoff, Job, MaxRetries

_READY = "ready-"
_SAMPLES = ".lat"


class BenchState:
    """One worker actor's state: where its latency samples go."""

    def __init__(self, out_dir: str) -> None:
        self._path = Path(out_dir) / f"{os.getpid()}-{threading.get_ident()}{_SAMPLES}"

    def record(self, seconds: float) -> None:
        # Opened per sample: latency jobs run one at a time, after their stamp.
        with self._path.open("a") as out:
            out.write(f"{seconds!r}\n")


def make_state(out_dir: str, handle: Any) -> BenchState:
    """The state factory, bound to ``out_dir`` with functools.partial.

    It leaves a marker per worker, so the benchmark can tell when every worker
    of every arbiter has built its state and is about to ask for work.
    """
    state = BenchState(out_dir)
    (Path(out_dir) / f"{_READY}{os.getpid()}-{threading.get_ident()}").touch()
    return state


def ready_workers(out_dir: str) -> int:
    """How many workers have built their state so far."""
    return sum(1 for _ in Path(out_dir).glob(f"{_READY}*"))


def read_samples(out_dir: str) -> list[float]:
    """Every latency sample (seconds) recorded under ``out_dir``."""
    samples: list[float] = []
    for path in Path(out_dir).glob(f"*{_SAMPLES}"):
        samples += (float(line) for line in path.read_text().split())
    return samples


@dataclass
class Noop(Job):
    """Does nothing: its cost is the system's per-job overhead."""

    n: int

    def run(self, state: BenchState) -> None:
        pass


@dataclass
class Stamp(Job):
    """Records how long after ``enqueued`` (``time.time()`` in the host) it started."""

    enqueued: float

    def run(self, state: BenchState) -> None:
        state.record(time.time() - self.enqueued)


def pool_noop(n: int) -> None:
    """The baseline's call: ``multiprocessing.Pool.imap_unordered`` of this."""
    return None


@dataclass
class AsyncNoop(Job):
    """Does nothing, on the arbiter's event loop: an async slot's overhead."""

    n: int

    async def run(self, state: BenchState) -> None:
        pass


@dataclass
class AsyncSleep(Job):
    """Awaits a sleep: what many async slots at once are for."""

    n: int
    ms: float

    async def run(self, state: BenchState) -> None:
        await asyncio.sleep(self.ms / 1000)


@dataclass
class AsyncStamp(Job):
    """Stamp, on the event loop."""

    enqueued: float

    async def run(self, state: BenchState) -> None:
        state.record(time.time() - self.enqueued)


# -- benchmarks.soak ----------------------------------------------------------------

SOAK_DIR = "JOBARBITER_SOAK_DIR"  # where soak jobs note their ends (arbiters inherit it)
SOAK_TIMEOUT = 0.5  # the TIMEOUT a hanging soak job is queued with


def note(file: str, line: str) -> None:
    """Append ``line`` to ``file`` in the soak folder: one short O_APPEND write
    is atomic, so lines from many processes never mix."""
    fd = os.open(Path(os.environ[SOAK_DIR]) / file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _first_attempt(n: int) -> bool:
    """True the first time a misbehaving job asks (a marker file per job)."""
    try:
        os.close(os.open(Path(os.environ[SOAK_DIR]) / "tried" / str(n), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


@dataclass
class SoakJob(Job):
    """A few ms of sleep; ``fail`` or ``hang`` (past its TIMEOUT) on its first
    attempt only; notes its number once it ended well."""

    MAX_RETRIES = MaxRetries.infinite()
    BACKOFF = Backoff.linear(0.2)

    n: int
    ms: float
    fail: bool = False
    hang: bool = False

    def run(self, state: Any) -> None:
        if (self.fail or self.hang) and _first_attempt(self.n):
            if self.fail:
                raise RuntimeError(f"soak job {self.n} fails its first attempt")
            # Busy in Python, so JobInterrupted stops it at its TIMEOUT and its
            # arbiter lives (a sleep in C would cost the arbiter: see README).
            give_up = time.monotonic() + SOAK_TIMEOUT * 10
            while time.monotonic() < give_up:
                time.sleep(0.005)
        time.sleep(self.ms / 1000)
        note("done.log", f"{self.n}\n")
