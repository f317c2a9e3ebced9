"""Helpers for the real-process tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import psutil

from supervisor import Manager, Status, WorkerConfig


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def all_running(manager: Manager, processes: int) -> bool:
    arbiters = manager.stats().arbiters
    return sum(a.alive and a.state == "running" for a in arbiters) == processes


def start(managers: list[Manager], config: WorkerConfig, processes: int) -> Manager:
    """Start ``config``, stop it at teardown (``managers``), and wait for its arbiters."""
    manager = config.start(processes=processes)
    managers.append(manager)
    wait_until(lambda: all_running(manager, processes), what="arbiters running")
    return manager


def succeeded(manager: Manager, job_id: uuid.UUID) -> bool:
    """Whether the job's kept record says it succeeded."""
    info = manager.info(job_id)
    return info is not None and info.status is Status.SUCCEEDED


def holding(manager: Manager) -> dict[str, tuple[int, int, int]]:
    """The queues that still hold a job: (pending, running, dead) for each."""
    return {
        name: (q.pending, q.running, q.dead)
        for name, q in manager.stats().queues.items()
        if q.pending or q.running or q.dead
    }


def listening_on(port: int) -> set[str]:
    """The addresses this process listens on at ``port``: read from the
    kernel's socket table, so a test can tell what a server is bound to
    without sending traffic to any address but loopback."""
    return {
        c.laddr.ip
        for c in psutil.Process().net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
