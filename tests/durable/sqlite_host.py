"""A host process on a SqliteStorage file, for the crash test.

    python -m tests.durable.sqlite_host DB OUT_DIR COUNT [PROCESSES]

Queues ``Mark(0) .. Mark(COUNT - 1)`` (none when COUNT is 0), prints "queued"
once queue_many has returned (so they are committed), then runs until the
storage is idle, prints "idle" and exits. Each run of a Mark appends its
number to OUT_DIR/marks.log.

Arbiters are spawned and import this module by name to find ``Mark``: its top
level defines things and does nothing else.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.sqlite import SqliteStorage
from supervisor import Backoff, Job, MaxRetries, WorkerConfig

OUT_VAR = "JOBARBITER_DURABLE_OUT"  # inherited by the spawned arbiters
MARKS = "marks.log"


@dataclass
class Mark(Job):
    """Notes its number, then takes about a millisecond."""

    MAX_RETRIES = MaxRetries.infinite()
    BACKOFF = Backoff.linear(0.05)

    n: int

    def run(self, state: Any) -> None:
        # One short write with O_APPEND: lines from many processes never mix.
        fd = os.open(Path(os.environ[OUT_VAR]) / MARKS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, b"%d\n" % self.n)
        finally:
            os.close(fd)
        time.sleep(0.001)


def main(argv: Sequence[str]) -> int:
    db, out, count = argv[0], argv[1], int(argv[2])
    processes = int(argv[3]) if len(argv) > 3 else 2
    os.environ[OUT_VAR] = out
    config = WorkerConfig(storage=SqliteStorage(db)).register(Mark)
    manager = config.set_worker_count("default", 4).start(processes=processes)
    try:
        if count:
            manager.queue_many(Mark(n) for n in range(count))
        print("queued", flush=True)
        manager.join(timeout=120)
        print("idle", flush=True)
    finally:
        manager.stop(timeout=10)
    return 0


if __name__ == "__main__":
    # Run the copy imported by its real name, not __main__'s: Mark's NAME and
    # the arbiters' import both go by "tests.durable.sqlite_host".
    from tests.durable.sqlite_host import main as real_main

    sys.exit(real_main(sys.argv[1:]))
