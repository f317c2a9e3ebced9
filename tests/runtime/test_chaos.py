"""Chaos: SIGKILL a random arbiter every 200 ms for 10 s while 5,000 jobs run.

Run it alone with ``pytest -m chaos -s`` to see its figures.
"""

from __future__ import annotations

import collections
import os
import random
import time
from pathlib import Path

import psutil
import pytest

from supervisor import Manager, WorkerConfig

from .jobs import Chaotic, lines
from .support import all_running, wait_until

JOBS = 5_000
KILL_EVERY = 0.2
KILL_FOR = 10.0


@pytest.mark.chaos
def test_no_job_lost_under_repeated_sigkill(workdir: Path, managers: list[Manager]) -> None:
    seed = int(os.environ.get("JOBARBITER_CHAOS_SEED", time.time_ns() % 2**32))
    chance = random.Random(seed)
    config = WorkerConfig().register(Chaotic).set_worker_count("default", 4)
    manager = config.start(processes=2)
    managers.append(manager)
    wait_until(lambda: all_running(manager, 2), what="arbiters running")

    manager.queue_many(Chaotic(n=n) for n in range(JOBS))
    kills = in_flight_at_kills = 0
    stop_at = time.monotonic() + KILL_FOR
    while time.monotonic() < stop_at:
        time.sleep(KILL_EVERY)
        stats = manager.stats()
        alive = [a for a in stats.arbiters if a.alive and a.pid is not None]
        if not alive:
            continue
        victim = chance.choice(alive)
        # Every held job counts: an upper bound on what the victim was running.
        in_flight_at_kills += sum(q.running for q in stats.queues.values())
        try:
            psutil.Process(victim.pid).kill()
        except psutil.NoSuchProcess:
            continue
        kills += 1
    manager.join(timeout=180)

    finished = collections.Counter(int(f[0]) for f in lines(workdir, "chaos.log"))
    lost = JOBS - len(finished)
    duplicates = sum(count - 1 for count in finished.values())
    restarts = sum(a.restarts for a in manager.stats().arbiters)
    print(
        f"\nchaos seed={seed}: jobs done {len(finished)}, lost {lost}, "
        f"duplicates {duplicates}, kills {kills}, restarts {restarts}, "
        f"in flight at kills {in_flight_at_kills}"
    )
    assert lost == 0
    assert set(finished) == set(range(JOBS))
    assert duplicates <= in_flight_at_kills
    assert kills >= 10
    assert restarts >= kills
    assert manager.stats().queues == {}
