"""Jobs for the dashboard's browser tests.

Arbiters are spawned and import this module by name, so it holds only job
classes and what they need. Each job has a queue of its own, so that one
test's queue stays still while another's moves.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor import Job, MaxRetries

# What a page must show as text and never run: script, and an attribute
# that would run if the markup were parsed.
PAYLOAD = "<script>alert(1)</script><img src=x onerror=alert(1)>"

# Held waits for its gate file here, and FailsOnce notes its first run here
# (spawned arbiters inherit it).
DIR_VAR = "JOBARBITER_BROWSER_DIR"
# How long a Held job waits for its gate before it gives up (a failed test).
HOLD_LIMIT = 60.0


def gate(name: str) -> Path:
    return Path(os.environ[DIR_VAR]) / f"{name}.open"


@dataclass
class Held(Job):
    """Runs until the test opens its gate: seen running for as long as the
    test looks, however slow the machine."""

    QUEUE = "mail"

    name: str

    def run(self, state: Any) -> str:
        deadline = time.monotonic() + HOLD_LIMIT
        while not gate(self.name).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {self.name!r} never opened")
            time.sleep(0.02)
        return self.name


@dataclass
class Slow(Job):
    """Sleeps, so a test sees it running."""

    QUEUE = "mail"

    seconds: float

    def run(self, state: Any) -> float:
        time.sleep(self.seconds)
        return self.seconds


@dataclass
class Quick(Job):
    """Returns its number at once."""

    QUEUE = "reports"

    n: int

    def run(self, state: Any) -> int:
        return self.n


@dataclass
class Tally(Job):
    """Sums a region's orders: a report with a result worth showing."""

    QUEUE = "reports"

    region: str
    orders: list[int]

    def run(self, state: Any) -> dict[str, Any]:
        return {"region": self.region, "orders": len(self.orders), "total": sum(self.orders)}


@dataclass
class FailsOnce(Job):
    """Dead after its first run (no retries); runs clean once requeued."""

    QUEUE = "imports"
    MAX_RETRIES = MaxRetries.count(0)

    tag: str

    def run(self, state: Any) -> str:
        mark = Path(os.environ[DIR_VAR]) / f"{self.tag}.ran"
        if not mark.exists():
            mark.touch()
            raise RuntimeError(f"import {self.tag} failed: the upstream file is missing")
        return f"imported {self.tag}"


@dataclass
class Hostile(Job):
    """Its queue, its argument and its error are all the payload."""

    QUEUE = PAYLOAD
    MAX_RETRIES = MaxRetries.count(0)

    text: str

    def run(self, state: Any) -> None:
        raise ValueError(self.text)
