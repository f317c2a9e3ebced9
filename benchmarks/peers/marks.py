"""What every library's jobs do, and how the harness sees them finish.

Each library wraps these bodies in its own task type; they run inside that
library's worker processes. A finished job appends one byte to ``done`` in the
run directory (``O_APPEND``: atomic across processes, a couple of
microseconds), so the harness counts completions the same way for every
library by reading one file size, without asking any broker.

The crash probe appends ``"<pid> <time>"`` to ``starts`` when it begins. On
its first run it then sleeps (the harness kills its process meanwhile); once
``starts`` already holds a line, it is a re-run and finishes at once.

Settings reach worker processes through the environment, read when needed:
the run directory, the Redis base URL and the PostgreSQL server DSN.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DIR_ENV = "JOBARBITER_PEERS_DIR"
REDIS_ENV = "JOBARBITER_PEERS_REDIS"
PG_ENV = "JOBARBITER_PEERS_PG"
DEFAULT_REDIS = "redis://127.0.0.1:6379"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
PG_DATABASE = "jobarbiter_peers"

DONE = "done"
STARTS = "starts"

_lock = threading.Lock()
_done_fd: tuple[int, int] | None = None  # (pid that opened it, fd): forked children reopen


def run_dir() -> Path:
    return Path(os.environ[DIR_ENV])


def redis_url(db: int) -> str:
    """The Redis URL of database ``db`` on the configured server."""
    return f"{os.environ.get(REDIS_ENV, DEFAULT_REDIS).rstrip('/')}/{db}"


def pg_dsn(database: str = PG_DATABASE) -> str:
    """The DSN of ``database`` on the configured PostgreSQL server."""
    return f"{os.environ.get(PG_ENV, DEFAULT_PG).rstrip('/')}/{database}"


def mark() -> None:
    """Count one finished job."""
    global _done_fd
    pid = os.getpid()
    opened = _done_fd
    if opened is None or opened[0] != pid:
        with _lock:
            opened = _done_fd
            if opened is None or opened[0] != pid:
                fd = os.open(run_dir() / DONE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                opened = _done_fd = (pid, fd)
    os.write(opened[1], b".")


def noop() -> None:
    mark()


def nap(ms: float) -> None:
    time.sleep(ms / 1000)
    mark()


async def nap_async(ms: float) -> None:
    await asyncio.sleep(ms / 1000)
    mark()


def _start_crash_probe() -> bool:
    """Record this start; True when it is the first one (the run to be killed)."""
    path = run_dir() / STARTS
    first = not path.exists() or path.stat().st_size == 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()} {time.time()!r}\n".encode())
    finally:
        os.close(fd)
    return first


def crash_probe(hold: float) -> None:
    if _start_crash_probe():
        time.sleep(hold)
    mark()


async def crash_probe_async(hold: float) -> None:
    if _start_crash_probe():
        await asyncio.sleep(hold)
    mark()


# -- the harness's side --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    pid: int
    at: float  # time.time()


def done_count(directory: Path) -> int:
    try:
        return (directory / DONE).stat().st_size
    except FileNotFoundError:
        return 0


def starts(directory: Path) -> list[Start]:
    try:
        text = (directory / STARTS).read_text()
    except FileNotFoundError:
        return []
    found = []
    for line in text.splitlines():
        try:
            pid, at = line.split()
            found.append(Start(int(pid), float(at)))
        except ValueError:  # a line being written as we read
            continue
    return found
