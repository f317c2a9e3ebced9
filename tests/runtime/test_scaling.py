"""Scaling a queue's slots live (``set_worker_count``): no restart, retired
slots finish their job, stats() shows the desired and the actual count."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from supervisor import Manager, WorkerConfig

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
    manager.set_worker_count("default", 3)
    manager.queue_many(Sleepy(tag=f"s{i}", seconds=1.0) for i in range(3))
    manager.join(timeout=30)
    runs = list(spans(workdir).values())
    assert most_at_once(runs) == 3
    assert {r[2] for r in runs} == {str(pid)}
    assert manager.stats().arbiters[0].restarts == 0


def test_scaling_one_to_ten_slots_runs_forty_half_second_jobs_twenty_at_once(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, config(1), processes=2)
    pids = {a.pid for a in manager.stats().arbiters}
    manager.set_worker_count("default", 10)
    wait_until(lambda: manager.stats().queues["default"].slots == 20, what="20 slots")
    figures = manager.stats().queues["default"]
    assert (figures.workers, figures.slots) == (10, 20)
    began = time.monotonic()
    manager.queue_many(Sleepy(tag=f"s{i}", seconds=0.5) for i in range(40))
    manager.join(timeout=30)
    took = time.monotonic() - began
    runs = list(spans(workdir).values())
    assert len(runs) == 40
    assert most_at_once(runs) == 20  # at one slot per arbiter: 2 at once, and 10 s
    assert took < 5.0, took  # about 1 s; the bound leaves room for a loaded machine
    arbiters = manager.stats().arbiters
    assert {a.pid for a in arbiters} == pids
    assert [(a.restarts, a.recycles) for a in arbiters] == [(0, 0), (0, 0)]


def test_stats_count_a_retiring_slot_until_its_job_ends(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, config(2), processes=1)
    manager.queue(Sleepy(tag="long", seconds=1.5))
    wait_until(lambda: len(lines(workdir, "sleepy.log")) == 1, what="it to start")
    manager.set_worker_count("default", 0)
    # The idle slot goes at once; the busy one stays until its job ends.
    wait_until(lambda: manager.stats().queues["default"].slots == 1, what="one slot left")
    figures = manager.stats().queues["default"]
    assert (figures.workers, figures.running) == (0, 1)
    wait_until(lambda: manager.stats().queues["default"].slots == 0, what="no slot left")
    assert [f[0] for f in lines(workdir, "sleepy.log")] == ["start", "end"]


def test_set_worker_count_refuses_a_bad_count(managers: list[Manager]) -> None:
    manager = start(managers, config(1), processes=1)
    with pytest.raises(ValueError, match="an int >= 0"):
        manager.set_worker_count("default", -1)
    with pytest.raises(TypeError, match="an int >= 0"):
        manager.set_worker_count("default", 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue name"):
        manager.set_worker_count("", 2)
    assert manager.stats().queues["default"].workers == 1


def test_scaling_down_lets_running_jobs_finish_then_runs_fewer(
    workdir: Path, managers: list[Manager]
) -> None:
    manager = start(managers, config(3), processes=1)
    pid = manager.stats().arbiters[0].pid
    manager.queue_many(Sleepy(tag=f"a{i}", seconds=1.0) for i in range(3))
    wait_until(lambda: len(lines(workdir, "sleepy.log")) == 3, what="three running")
    manager.set_worker_count("default", 1)
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
    manager.set_worker_count("default", 0)
    time.sleep(0.5)  # the arbiter hears it asynchronously; nothing tells when
    job = manager.queue(Sleepy(tag="held", seconds=0))
    time.sleep(0.5)
    assert lines(workdir, "sleepy.log") == []
    info = manager.info(job)
    assert info is not None and info.retry_count == 0
    manager.set_worker_count("default", 2)
    manager.join(timeout=30)
    assert [f[1] for f in lines(workdir, "sleepy.log")] == ["held", "held"]


def test_a_restarted_arbiter_keeps_the_scaled_count(workdir: Path, managers: list[Manager]) -> None:
    manager = start(managers, config(1), processes=1)
    manager.set_worker_count("default", 3)
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
