"""Four hosts on one schema, killed and started again over and over.

Every host takes over the claims of the ones that died (their heartbeat is
0.2 s, so a claim goes stale after 1 s) while settling its own, the path on
which two hosts could wait for each other's row locks. Nothing may be lost,
and no host may log a deadlock (PostgreSQL would break one by rolling a
transaction back, and its work would be redone).
"""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path

import pytest

from .pg_host import fresh_schema, require_postgres
from .test_postgres_crash import Host, _numbers

pytestmark = pytest.mark.processes

JOBS = 30_000
HOSTS = 4
KILL_EVERY = 0.5
KILL_FOR = 8.0


def test_hosts_that_keep_dying_take_over_each_other_without_deadlock(tmp_path: Path) -> None:
    dsn = require_postgres()
    out = tmp_path / "marks.log"
    chance = random.Random()
    hosts: list[Host] = []
    with fresh_schema(dsn) as schema:

        def start(*extra: str) -> Host:
            host = Host(dsn, schema, out, tmp_path / f"host{len(hosts)}.go", *extra)
            hosts.append(host)
            host.expect("started", 60)
            return host

        try:
            live = [start("--queue", str(JOBS))] + [start() for _ in range(HOSTS - 1)]
            for host in live:
                (tmp_path / f"host{hosts.index(host)}.go").touch()
            live[0].expect("queued", 60)
            kills = 0
            stop_at = time.monotonic() + KILL_FOR
            while time.monotonic() < stop_at and len(_numbers(out)) < JOBS:
                time.sleep(KILL_EVERY)
                victim = chance.choice(live)
                victim.kill()
                kills += 1
                live.remove(victim)
                fresh = start()
                (tmp_path / f"host{hosts.index(fresh)}.go").touch()
                live.append(fresh)
            for host in live:
                host.expect("done", 120)
        finally:
            for host in hosts:
                host.end()

    counts = collections.Counter(_numbers(out))
    logs = "".join(host.log.read_text() for host in hosts)
    print(
        f"\npostgres takeover: {kills} hosts killed, {len(counts)} distinct of {JOBS}, "
        f"{sum(n - 1 for n in counts.values())} duplicate runs"
    )
    assert set(counts) == set(range(JOBS))
    assert kills >= 3
    assert "deadlock" not in logs.lower()
