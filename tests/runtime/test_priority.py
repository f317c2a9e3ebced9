"""Priorities through a Manager: a paused queue filled with jobs of mixed
priorities drains, once resumed, highest priority first, then in the order
queued; a job scheduled for later waits whatever its priority."""

from __future__ import annotations

from pathlib import Path

from supervisor import Manager, WorkerConfig

from .jobs import Record, Urgent, lines
from .support import start


def test_a_resumed_queue_drains_in_priority_order(workdir: Path, managers: list[Manager]) -> None:
    config = WorkerConfig().register(Record).register(Urgent).set_worker_count("default", 1)
    manager = start(managers, config, processes=1)
    manager.pause("default")
    later = manager.schedule(Record(tag="later"), at=3600, priority=100)
    queued = [
        (Record(tag="low"), -1),
        (Record(tag="zero-a"), None),
        (Urgent(tag="class-5"), None),  # its class's PRIORITY
        (Record(tag="high"), 9),
        (Record(tag="zero-b"), 0),
        (Urgent(tag="urgent-but-2"), 2),  # queue() overrides the class
        (Record(tag="high-b"), 9),
    ]
    for job, priority in queued:
        manager.queue(job, priority=priority)
    manager.resume("default")
    manager.join(timeout=30)
    assert [fields[0] for fields in lines(workdir, "runs.log")] == [
        "high",
        "high-b",
        "class-5",
        "urgent-but-2",
        "zero-a",
        "zero-b",
        "low",
    ]
    waiting = manager.info(later)
    assert waiting is not None and (waiting.priority, waiting.started_at) == (100, None)
    figures = manager.stats().queues["default"]
    assert (figures.pending, figures.scheduled) == (1, 1)
