"""Scaling a queue's slots live: no restart, retired slots finish their job."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from supervisor import Manager, WorkerConfig
from supervisor.arbiters import ScaleQueue

from .jobs import Sleepy, lines
from .support import start, wait_until


def spans(workdir: Path) -> dict[str, tuple[float, float, str]]:
    """Each Sleepy's (start, end, pid) by tag."""
    starts = {f[1]: (float(f[3]), f[2]) for f in lines(workdir, "sleepy.log") if f[0] == "start"}
    ends = {f[1]: float(f[3]) for f in lines(workdir, "sleepy.log") if f[0] == "end"}
    return {t: (s, ends[t], pid) for t, (s, pid) in starts.items() if t in ends}


def most_at_once(runs: list[tuple[float, float, str]]) -> int:
    edges = sorted([(s, 1) for s, _, _ in runs] + [(e, -1) for _, e, _ in runs])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def config(workers: int) -> WorkerConfig:
    return WorkerConfig(prefetch=0).register(Sleepy).set_worker_count("default", workers)


def test_scaling_up_adds_slots_without_a_restart(workdir: Path, managers: list[Manager]) -> None:
    manager = start(managers, config(1), processes=1)
    pid = manager.stats().arbiters[0].pid
    manager._actor.ask(ScaleQueue("default", 3))
    manager.queue_many(Sleepy(tag=f"s{i}", seconds=1.0) for i in range(3))
    manager.join(timeout=30)
    runs = list(spans(workdir).values())
    assert most_at_once(runs) == 3
    assert {r[2] for r in runs} == {str(pid)}
    assert manager.stats().arbiters[0].restarts == 0


def test_scaling_down_lets_running_jobs_finish_then_runs_fewer(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, config(3), processes=1)
    pid = manager.stats().arbiters[0].pid
    manager.queue_many(Sleepy(tag=f"a{i}", seconds=1.0) for i in range(3))
    wait_until(lambda: len(lines(workdir, "sleepy.log")) == 3, what="three running")
    manager._actor.ask(ScaleQueue("default", 1))
    manager.queue_many(Sleepy(tag=f"b{i}", seconds=0.3) for i in range(3))
    manager.join(timeout=30)
    done = spans(workdir)
    assert len(done) == 6  # the three running when it scaled down finished
    later = [done[f"b{i}"] for i in range(3)]
    assert most_at_once(later) == 1
    assert {r[2] for r in done.values()} == {str(pid)}
    assert manager.stats().arbiters[0].restarts == 0


def test_a_queue_scaled_to_zero_holds_its_jobs_until_scaled_up(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, config(1), processes=1)
    manager._actor.ask(ScaleQueue("default", 0))
    time.sleep(0.5)  # the arbiter hears it asynchronously; nothing tells when
    job = manager.queue(Sleepy(tag="held", seconds=0))
    time.sleep(0.5)
    assert lines(workdir, "sleepy.log") == []
    info = manager.info(job)
    assert info is not None and info.retry_count == 0
    manager._actor.ask(ScaleQueue("default", 2))
    manager.join(timeout=30)
    assert [f[1] for f in lines(workdir, "sleepy.log")] == ["held", "held"]


def test_a_restarted_arbiter_keeps_the_scaled_count(workdir: Path, managers: list[Manager]) -> None:
    manager = start(managers, config(1), processes=1)
    manager._actor.ask(ScaleQueue("default", 3))
    victim = manager.stats().arbiters[0].pid
    assert victim is not None
    psutil.Process(victim).kill()
    wait_until(lambda: manager.stats().arbiters[0].restarts == 1, what="the restart")
    wait_until(lambda: manager.stats().arbiters[0].state == "running", what="it to be ready")
    manager.queue_many(Sleepy(tag=f"s{i}", seconds=1.0) for i in range(3))
    manager.join(timeout=30)
    assert most_at_once(list(spans(workdir).values())) == 3


def test_a_started_config_is_frozen(workdir: Path, managers: list[Manager]) -> None:
    built = config(1)
    manager = start(managers, built, processes=1)
    built.set_worker_count("default", 3)  # reaches no running Manager, even on restart
    victim = manager.stats().arbiters[0].pid
    assert victim is not None
    psutil.Process(victim).kill()
    wait_until(lambda: manager.stats().arbiters[0].restarts == 1, what="the restart")
    wait_until(lambda: manager.stats().arbiters[0].state == "running", what="it to be ready")
    manager.queue_many(Sleepy(tag=f"s{i}", seconds=0.3) for i in range(3))
    manager.join(timeout=30)
    assert most_at_once(list(spans(workdir).values())) == 1
