"""Dramatiq on Redis: acknowledges after the actor ran (its default).

``heartbeat_timeout`` and ``maintenance_chance`` are tightened from 60 s and
1000 per million so that a dead worker's messages are requeued within
seconds, not minutes, and the crash case fits its time limit.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.peers import marks
from benchmarks.peers.harness import Peer, Spec, flush_redis, python_module, task_for

DB = 12
HEARTBEAT_TIMEOUT_MS = 5000
MAINTENANCE_CHANCE = 100_000  # per million broker commands
DEFAULT_THREADS = 8  # dramatiq's own default

broker = RedisBroker(
    url=marks.redis_url(DB),
    namespace="jobarbiter-peers",
    heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
    maintenance_chance=MAINTENANCE_CHANCE,
)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="peers_noop", queue_name="peers")
def noop_actor() -> None:
    marks.noop()


@dramatiq.actor(actor_name="peers_nap", queue_name="peers")
def nap_actor(ms: float) -> None:
    marks.nap(ms)


@dramatiq.actor(actor_name="peers_crash", queue_name="peers")
def crash_actor(hold: float) -> None:
    marks.crash_probe(hold)


ACTORS: dict[str, Any] = {"noop": noop_actor, "sleep": nap_actor, "crash": crash_actor}


class DramatiqPeer(Peer):
    name = "dramatiq"
    distributions = ("dramatiq", "redis")
    broker = f"Redis db {DB}"
    reliability = (
        "defaults (ack after the actor ran); RedisBroker(heartbeat_timeout=5000, "
        "maintenance_chance=100000) so a dead worker's messages are requeued within seconds"
    )

    def reset(self) -> None:
        flush_redis(DB)

    def worker_commands(self, spec: Spec) -> list[list[str]]:
        threads = spec.concurrency or DEFAULT_THREADS
        return [
            python_module(
                "dramatiq",
                __name__,
                "--processes",
                str(spec.processes),
                "--threads",
                str(threads),
                "--queues",
                "peers",
            )
        ]

    def enqueue(self, workload: str, count: int, spec: Spec) -> None:
        actor, args = task_for(workload, spec, ACTORS)
        for _ in range(count):
            actor.send(*args)

    def close(self) -> None:
        broker.close()
