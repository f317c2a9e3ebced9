"""Pieces shared by ``benchmarks.throughput``, ``benchmarks.tune`` and ``benchmarks.peers``.

Jobs here are importable by name (arbiters are spawned), so they live in a
module, not in a benchmark's ``__main__``:

* ``Spin``: CPU-bound, burns ``ms`` of its own thread's CPU time;
* ``Nap``: I/O-bound, sleeps ``ms``;
* ``Probe``: records how long after its enqueue stamp it started.

The rest is measuring plumbing: readiness of every worker, a warm-up batch,
median and spread of repeats, percentiles, CPU seconds, peak resident memory,
package versions and machine facts, ``MODULE:ATTR`` loading, a progress bar
and JSON output.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks.workloads import BenchState, make_state, ready_workers
from supervisor import Job, Manager

SPIN_CHUNK = 200  # loop iterations between two reads of the thread's CPU clock
POLL = 0.002  # seconds between two looks at whether a batch is done


def spin(ms: float) -> None:
    """Burn ``ms`` milliseconds of this thread's CPU time.

    CPU time, not wall time: a thread waiting for the GIL does not advance its
    clock, so every run does the same amount of work however many threads
    compete for the interpreter.
    """
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        for _ in range(SPIN_CHUNK):
            pass


@dataclass
class Spin(Job):
    """CPU-bound: ``ms`` of this thread's CPU time."""

    ms: float

    def run(self, state: Any) -> None:
        spin(self.ms)


@dataclass
class Nap(Job):
    """I/O-bound: sleeps ``ms`` milliseconds, holding no lock."""

    ms: float

    def run(self, state: Any) -> None:
        time.sleep(self.ms / 1000)


@dataclass
class Probe(Job):
    """Records its enqueue-to-start latency under ``out_dir``.

    Unlike ``benchmarks.workloads.Stamp`` it needs no particular state, so it
    can run beside a user's own job and state factory (queue it with
    ``queue=`` set to that job's queue).
    """

    QUEUE = "probe"  # its own, with no slots: it is always queued with queue=

    enqueued: float
    out_dir: str

    def run(self, state: Any) -> None:
        BenchState(self.out_dir).record(time.time() - self.enqueued)


@dataclass
class AsyncProbe(Job):
    """Probe, for an async queue (its job runs on the arbiter's event loop)."""

    QUEUE = "probe"

    enqueued: float
    out_dir: str

    async def run(self, state: Any) -> None:
        BenchState(self.out_dir).record(time.time() - self.enqueued)


def probe_state(out_dir: str, factory: Callable[[Any], Any] | None, handle: Any) -> Any:
    """A state factory (bind the first two arguments with functools.partial).

    Builds the user's state with ``factory`` (or a BenchState when it is None),
    then leaves the readiness marker that ``wait_for_workers`` counts.
    """
    if factory is None:
        return make_state(out_dir, handle)
    state = factory(handle)
    make_state(out_dir, handle)  # only for its marker: the user's state is what jobs get
    return state


def wait_for_workers(out_dir: str, expected: int, timeout: float) -> None:
    """Block until ``expected`` workers have built their state (see ``probe_state``)."""
    deadline = time.monotonic() + timeout
    while ready_workers(out_dir) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{ready_workers(out_dir)} of {expected} workers ready after {timeout:g} s"
            )
        time.sleep(0.01)


def wait_for_batch(
    manager: Manager,
    last: uuid.UUID,
    done: int | None,
    timeout: float,
    poll: float = POLL,
) -> None:
    """Block until the job ``last`` has succeeded and, unless ``done`` is None,
    ``done`` jobs have finished in all (see ``throughput.jobs_done``).

    Jobs start in queue order, so once the last one queued has finished the
    rest have (nearly) too: one ``info`` per ``poll`` seconds, then a count.
    Unlike ``join``, which checks for idleness at most every 50 ms, this sees
    the end within ``poll`` seconds.
    """
    deadline = time.monotonic() + timeout
    while manager.info(last) is not None or (done is not None and jobs_done(manager) < done):
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs still pending or running after {timeout:g} s")
        time.sleep(poll)


def warm_up(manager: Manager, jobs: Sequence[Job], timeout: float) -> list[int]:
    """Run ``jobs`` to the end; the pids of the arbiters, all of which must be alive."""
    manager.queue_many(jobs)
    manager.join(timeout=timeout)
    arbiters = manager.stats().arbiters
    if not all(a.alive and a.pid is not None for a in arbiters):
        raise RuntimeError(f"an arbiter is not alive: {arbiters}")
    return [a.pid for a in arbiters if a.pid is not None]


# -- figures -----------------------------------------------------------------------


def median_spread(values: Sequence[float]) -> tuple[float, float]:
    """The median, and the spread: (max - min) / median, 0 for a single value."""
    middle = statistics.median(values)
    spread = (max(values) - min(values)) / middle if middle else 0.0
    return middle, spread


def peak_rss(pid: int) -> int | None:
    """Peak resident memory of ``pid`` in bytes (Linux ``VmHWM``); None where unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory to its current size (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def versions(distributions: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each distribution, None when it is not installed."""
    found: dict[str, str | None] = {}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def load_attr(reference: str) -> Any:
    """The object named by ``"package.module:attr"`` (``attr`` may be dotted)."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:ATTR, got {reference!r}")
    thing: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        thing = getattr(thing, part)
    return thing


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


# -- plumbing shared with benchmarks.throughput -------------------------------------


class Progress:
    """A one-line progress bar on stderr (one line per update if not a tty)."""

    def __init__(self, total: int, width: int = 24) -> None:
        self._total = total
        self._width = width
        self._tty = sys.stderr.isatty()
        self._last = 0

    def show(self, done: int, label: str) -> None:
        filled = self._width * done // self._total
        line = f"[{'#' * filled}{'-' * (self._width - filled)}] {done}/{self._total} {label}"
        if self._tty:
            sys.stderr.write("\r" + line.ljust(self._last))
            self._last = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values``, for ``q`` in (0, 100]."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def jobs_done(manager: Manager) -> int:
    return sum(a.jobs_done for a in manager.stats().arbiters)


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "physical_cpus": psutil.cpu_count(logical=False),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def int_list(text: str) -> list[int]:
    """``--x 1,2,4``: positive integers."""
    return _ints(text, 1)


def count_list(text: str) -> list[int]:
    """``--x 0,1,2``: integers from 0."""
    return _ints(text, 0)


def _ints(text: str, minimum: int) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < minimum:
        raise argparse.ArgumentTypeError(f"expected integers >= {minimum}, got {text!r}")
    return values


def names(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names, each one of ``choices``, each once."""

    def parse(text: str) -> list[str]:
        picked = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        unknown = [p for p in picked if p not in choices]
        if unknown or not picked:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}; got {text!r}")
        return picked

    return parse
