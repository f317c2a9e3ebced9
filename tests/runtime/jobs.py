"""Jobs and state factories for the real-process tests.

Arbiters are spawned, so everything here is imported by name in a fresh
interpreter. Jobs report what they did by appending lines to files in the
directory named by JOBARBITER_TEST_DIR (set by the test before start; spawned
processes inherit the environment). One short write with O_APPEND is atomic,
so lines from many processes never interleave.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import NewJob
from supervisor import (
    ArbiterDied,
    Backoff,
    Job,
    JobContext,
    JobInterrupted,
    JobOutcome,
    MaxRetries,
    MemoryStorage,
    Middleware,
    QueueHandle,
    current_job,
)

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
class Urgent(Record):
    """A Record whose class claims a higher priority than the default."""

    PRIORITY = 5


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


_HOARD: list[bytes] = []


@dataclass
class Hog(Job):
    """Keeps ``megabytes`` of memory alive in its process (a leak)."""

    megabytes: int

    def run(self, state: Any) -> None:
        _HOARD.append(b"x" * (self.megabytes * 1024 * 1024))
        note("hog.log", os.getpid())


@dataclass
class Poison(Job):
    """Kills its own process: "exit", "signal" or "segfault"."""

    MAX_RETRIES = MaxRetries.count(2)
    BACKOFF = Backoff.linear(0.05)

    how: str

    def run(self, state: Any) -> None:
        note("poison.log", self.how, os.getpid())
        if self.how == "exit":
            os._exit(7)
        elif self.how == "signal":
            os.kill(os.getpid(), signal.SIGABRT)
        elif self.how == "segfault":
            ctypes.string_at(0)
        time.sleep(5)  # a signal is delivered asynchronously


def failing_state(handle: QueueHandle) -> None:
    raise RuntimeError("cannot reach the database")


def killing_state(handle: QueueHandle) -> None:
    """A start-up that dies without a word: a signal, no error to report."""
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Garbage(Job):
    """Writes bytes that break the protocol onto its arbiter's link."""

    how: str

    def run(self, state: Any) -> None:
        link = next(o for o in gc.get_objects() if isinstance(o, socket.socket))
        if self.how == "oversized":
            link.sendall((1 << 31).to_bytes(4, "big"))
        else:
            link.sendall((5).to_bytes(4, "big") + b"hello")
        time.sleep(5)


class ExplodingStorage(MemoryStorage):
    """Memory storage whose push raises for jobs whose arguments say "explode"."""

    def push_many(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        if any(b"explode" in job.args for job in jobs):
            raise OSError("disk on fire")
        return super().push_many(jobs)


@dataclass
class Stuck(Sleepy):
    """Sleeps far past its TIMEOUT; no retries, so one timeout makes it dead."""

    MAX_RETRIES = MaxRetries.count(0)
    TIMEOUT = 20.0


@dataclass
class Chaotic(Job):
    """A short job that retries forever, quickly: chaos must not make it dead."""

    MAX_RETRIES = MaxRetries.infinite()
    BACKOFF = Backoff.linear(0.05)

    n: int

    def run(self, state: Any) -> None:
        time.sleep(0.01)
        note("chaos.log", self.n)


@dataclass
class Exits(Job):
    """Calls sys.exit in the job: a failed attempt, never a dead worker."""

    MAX_RETRIES = MaxRetries.count(0)

    code: int

    def run(self, state: Any) -> None:
        note("runs.log", "exits", os.getpid(), time.time())
        sys.exit(self.code)


@dataclass
class Quick(Sleepy):
    """A short Sleepy with a TIMEOUT: it must count from its start, not its claim."""

    TIMEOUT = 1.0


@dataclass
class Beating(Sleepy):
    """A Sleepy whose claims go stale fast: 5 missed 0.2 s heartbeats."""

    HEARTBEAT_INTERVAL = 0.2


@dataclass
class Spinner(Job):
    """Runs in short Python steps until stopped: it stops at the exception."""

    MAX_RETRIES = MaxRetries.count(0)
    TIMEOUT = 20.0

    tag: str

    def run(self, state: Any) -> None:
        note("spinner.log", "start", self.tag, os.getpid(), time.time())
        while True:
            time.sleep(0.01)


@dataclass
class Nap(Job):
    """An async job: notes its start, awaits a sleep, notes its end."""

    QUEUE = "async"
    BACKOFF = Backoff.linear(0.1)

    tag: str
    seconds: float

    async def run(self, state: Any) -> None:
        note("nap.log", "start", self.tag, os.getpid(), threading.get_ident(), id(state))
        await asyncio.sleep(self.seconds)
        note("nap.log", "end", self.tag, os.getpid(), time.time())


@dataclass
class LoopHog(Job):
    """An async job that blocks its loop: only killing its arbiter stops it."""

    QUEUE = "async"
    MAX_RETRIES = MaxRetries.count(0)

    seconds: float

    async def run(self, state: Any) -> None:
        note("nap.log", "hog", os.getpid())
        time.sleep(self.seconds)


async def async_state(handle: QueueHandle) -> dict[str, Any]:
    """An async state factory: once per async queue per arbiter."""
    await asyncio.sleep(0)
    note("state.log", "async", os.getpid(), threading.get_ident())
    return {"handle": handle}


# -- results, cancellation, context, middleware ------------------------------------


@dataclass
class Returns(Job):
    """Returns what it was given, after an optional sleep."""

    value: Any
    seconds: float = 0.0

    def run(self, state: Any) -> Any:
        time.sleep(self.seconds)
        return self.value


@dataclass
class Unstorable(Job):
    """Returns what msgpack cannot encode: the attempt fails."""

    MAX_RETRIES = MaxRetries.count(0)

    def run(self, state: Any) -> Any:
        return threading.Lock()


@dataclass
class Cooperative(Job):
    """Runs until cancelled; at the interruption it checks its context and ends."""

    tag: str

    def run(self, state: Any) -> str:
        note("coop.log", "start", self.tag, os.getpid())
        try:
            while True:
                time.sleep(0.01)
        except JobInterrupted:
            note("coop.log", "interrupted", self.tag, current_job().cancelled)
            return "stopped cleanly"  # a cancel was asked: it ends cancelled anyway


@dataclass
class IgnoresCancel(Job):
    """Swallows every interruption: only its arbiter's death stops it."""

    tag: str

    def run(self, state: Any) -> None:
        note("ignorer.log", "start", self.tag, os.getpid(), time.time())
        while True:
            try:
                time.sleep(0.01)
            except JobInterrupted:
                note("ignorer.log", "ignored", self.tag, time.time())


@dataclass
class Introspects(Job):
    """Writes its context as JSON."""

    TIMEOUT = 30.0

    tag: str

    def run(self, state: Any) -> None:
        ctx = current_job()
        fields = {
            "id": str(ctx.id),
            "name": ctx.name,
            "queue": ctx.queue,
            "attempt": ctx.attempt,
            "enqueued_at": ctx.enqueued_at.timestamp(),
            "deadline": None if ctx.deadline is None else ctx.deadline.timestamp(),
            "cancelled": ctx.cancelled,
            "now": time.time(),
        }
        note("context.log", json.dumps(fields, separators=(",", ":")))


class Recorder(Middleware):
    """Notes every hook it sees, in the arbiter and in the host."""

    def before_job(self, ctx: JobContext) -> None:
        note("hooks.log", "before", ctx.name.rsplit(".", 1)[-1], ctx.id)

    def after_job(self, ctx: JobContext, outcome: JobOutcome) -> None:
        note("hooks.log", "after", ctx.name.rsplit(".", 1)[-1], ctx.id, outcome.status.name)

    def arbiter_died(self, event: ArbiterDied) -> None:
        note("died.log", event.arbiter, event.exit.replace(" ", "_"), *event.job_ids)


class Broken(Middleware):
    """Every hook raises: logged, and never loses a job or skips the others."""

    def before_job(self, ctx: JobContext) -> None:
        raise RuntimeError("broken before_job")

    def after_job(self, ctx: JobContext, outcome: JobOutcome) -> None:
        raise RuntimeError("broken after_job")


@dataclass
class Overruns(Spinner):
    """A Spinner past a short TIMEOUT: stopped at the exception."""

    TIMEOUT = 0.5


@dataclass
class AsyncReturns(Job):
    """An async job that returns a value, after an await."""

    QUEUE = "async"

    value: Any

    async def run(self, state: Any) -> Any:
        await asyncio.sleep(0.01)
        return self.value


@dataclass
class AsyncCooperative(Job):
    """An async job that runs until cancelled, and notes what it saw."""

    QUEUE = "async"

    tag: str

    async def run(self, state: Any) -> None:
        note("acoop.log", "start", self.tag)
        try:
            while True:
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            note("acoop.log", "cancelled", self.tag, current_job().cancelled)
            raise


@dataclass
class OverrunsOnce(Spinner):
    """A Spinner past a short TIMEOUT, with one retry: timed out, then dead."""

    MAX_RETRIES = MaxRetries.count(1)
    BACKOFF = Backoff.linear(0.05)
    TIMEOUT = 0.3


@dataclass
class Forgotten(Cooperative):
    """A Cooperative whose record is not kept once it ends."""

    RESULT_TTL = 0


# -- dependencies ----------------------------------------------------------------------


@dataclass
class Gather(Job):
    """A join: returns its parents' ids and values, read from inside it
    (current_job().parents, and a wait on each through its handle)."""

    def run(self, state: Any) -> dict[str, Any]:
        parents = current_job().parents
        handle: QueueHandle = state["handle"]
        return {
            "parents": [str(parent) for parent in parents],
            "values": [handle.wait(parent, timeout=5) for parent in parents],
        }


@dataclass
class RemoteGather(Gather):
    """A Gather on a queue of its own, for a host that runs only those."""

    QUEUE = "joins"


@dataclass
class QueuesAfter(Job):
    """Queues a Returns after ``parent`` from inside a job: the child's id,
    or the name of the error the queueing raised."""

    parent: str

    def run(self, state: Any) -> str:
        handle: QueueHandle = state["handle"]
        try:
            return str(handle.queue(Returns(value="child"), after=[self.parent]))
        except LookupError as exc:
            return f"{type(exc).__name__}: {exc}"
