"""Chaos: SIGKILL a random arbiter every 200 ms for 10 s while 5,000 jobs run.

An arbiter killed from outside, up or starting, is restarted at once, so
most attempts find the one they pick alive; nothing is lost,
and no more jobs run twice than were running when their arbiter was killed.

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
from .support import all_running, holding, wait_until

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
    attempts = kills = in_flight_at_kills = 0
    stop_at = time.monotonic() + KILL_FOR
    while time.monotonic() < stop_at:
        time.sleep(KILL_EVERY)
        stats = manager.stats()
        attempts += 1
        victim = chance.choice(stats.arbiters)  # alive or not: a kill from outside
        if not victim.alive or victim.pid is None:
            continue
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
        f"duplicates {duplicates}, kills {kills} of {attempts} attempts "
        f"({kills / attempts:.0%} found their arbiter alive), restarts {restarts}, "
        f"in flight at kills {in_flight_at_kills}"
    )
    assert lost == 0
    assert set(finished) == set(range(JOBS))
    assert duplicates <= in_flight_at_kills
    assert kills >= 0.8 * attempts
    assert restarts >= kills
    assert holding(manager) == {}
