"""stats() counts how this host's attempts ended, per queue, since start."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from supervisor import ENDINGS, Manager, WorkerConfig

from .jobs import AlwaysFails, Flaky, OverrunsOnce, Record
from .support import start


def test_stats_count_every_ending_and_time_every_attempt(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Record).register(Flaky).register(AlwaysFails)
    config.register(OverrunsOnce)
    manager = start(managers, config, processes=1)
    manager.queue_many([Record(tag="a"), Record(tag="b"), Record(tag="c")])
    manager.queue(Flaky(tag="f", failures=1))  # failed, then succeeded
    manager.queue(AlwaysFails(tag="x"))  # failed twice, then dead
    manager.queue(OverrunsOnce(tag="o"))  # timed out, then dead
    later = manager.schedule(Record(tag="never"), dt.timedelta(hours=1))
    assert manager.cancel(later)
    manager.join(timeout=60)
    figures = manager.stats().queues["default"]
    assert dict(figures.ended) == {
        "succeeded": 4,
        "failed": 3,
        "timed_out": 1,
        "dead": 2,
        "cancelled": 1,
    }
    assert set(figures.ended) == set(ENDINGS)
    assert (figures.succeeded, figures.failed, figures.retries) == (4, 6, 4)
    # Every attempt that ran is timed; the wait is a first attempt's only.
    assert figures.run_seconds.count == 10
    assert figures.wait_seconds.count == 6
    assert figures.run_seconds.total >= 0.3 * 2  # the two overruns ran past 0.3 s
    assert sum(figures.run_seconds.counts) == figures.run_seconds.count
    assert len(figures.run_seconds.counts) == len(figures.run_seconds.bounds) + 1
