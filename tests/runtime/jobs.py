"""Jobs and state factories for the real-process tests.

Arbiters are spawned, so everything here is imported by name in a fresh
interpreter. Jobs report what they did by appending lines to files in the
directory named by JOBARBITER_TEST_DIR (set by the test before start; spawned
processes inherit the environment). One short write with O_APPEND is atomic,
so lines from many processes never interleave.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor import Backoff, Job, MaxRetries, QueueHandle

DIR_VAR = "JOBARBITER_TEST_DIR"


def note(file: str, *fields: object) -> None:
    line = " ".join(str(f) for f in fields) + "\n"
    fd = os.open(Path(os.environ[DIR_VAR]) / file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def lines(directory: Path, file: str) -> list[list[str]]:
    path = directory / file
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines()]


def counting_state(handle: QueueHandle) -> dict[str, Any]:
    note("state.log", os.getpid(), threading.get_ident())
    return {"handle": handle}


@dataclass
class Record(Job):
    """Notes one run: tag, pid, time."""

    tag: str

    def run(self, state: Any) -> None:
        note("runs.log", self.tag, os.getpid(), time.time())


@dataclass
class Sleepy(Job):
    """Notes its start and its end, with a sleep between."""

    BACKOFF = Backoff.linear(0.1)

    tag: str
    seconds: float

    def run(self, state: Any) -> None:
        note("sleepy.log", "start", self.tag, os.getpid(), time.time())
        time.sleep(self.seconds)
        note("sleepy.log", "end", self.tag, os.getpid(), time.time())


@dataclass
class Flaky(Job):
    """Fails its first ``failures`` runs, then succeeds."""

    MAX_RETRIES = MaxRetries.count(5)
    BACKOFF = Backoff.linear(0.3)

    tag: str
    failures: int

    def run(self, state: Any) -> None:
        note("flaky.log", self.tag, time.time())
        runs = sum(1 for f in lines(Path(os.environ[DIR_VAR]), "flaky.log") if f[0] == self.tag)
        if runs <= self.failures:
            raise RuntimeError(f"flaky failure {runs}")


@dataclass
class AlwaysFails(Job):
    MAX_RETRIES = MaxRetries.count(2)
    BACKOFF = Backoff.linear(0.05)

    tag: str

    def run(self, state: Any) -> None:
        note("fails.log", self.tag)
        raise ValueError(f"always fails: {self.tag}")


@dataclass
class Spawner(Job):
    """Queues a Record through the QueueHandle its state carries."""

    tag: str

    def run(self, state: Any) -> None:
        state["handle"].queue(Record(tag=f"child-of-{self.tag}"))


@dataclass
class Unregistered(Job):
    """Never registered with any WorkerConfig in the tests."""

    tag: str

    def run(self, state: Any) -> None:
        note("runs.log", "unregistered-ran", self.tag)
