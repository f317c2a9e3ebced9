"""stats() counts how this host's attempts ended, per queue, since start."""

from __future__ import annotations

import datetime as dt
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from supervisor import ENDINGS, Manager, WorkerConfig

from .jobs import AlwaysFails, Flaky, Forgotten, OverrunsOnce, Poison, Record, lines
from .support import start, wait_until


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


def test_metrics_agree_with_stats_after_retries_deaths_and_timeouts(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Flaky).register(OverrunsOnce).register(Poison)
    manager = start(managers, config, processes=1)
    manager.queue(Flaky(tag="f", failures=2))  # failed twice, then succeeded
    manager.queue(OverrunsOnce(tag="o"))  # timed out, then dead
    manager.join(timeout=60)
    # Alone, so that no neighbour dies with its arbiter.
    manager.queue(Poison(how="exit"))  # kills its arbiter three times: dead
    manager.join(timeout=60)
    url = manager.serve_http()
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    stats = manager.stats()
    figures = stats.queues["default"]
    assert dict(figures.ended) == {
        "succeeded": 1,
        "failed": 4,  # Flaky's two, Poison's two deaths that were retried
        "timed_out": 1,
        "dead": 2,
        "cancelled": 0,
    }
    for outcome, count in figures.ended.items():
        key = (("outcome", outcome), ("queue", "default"))
        assert samples["jobarbiter_jobs_ended_total", key] == count
    queue = (("queue", "default"),)
    assert samples["jobarbiter_job_retries_total", queue] == figures.retries == 5
    restarts = sum(a.restarts for a in stats.arbiters)
    assert restarts == 3
    assert samples["jobarbiter_arbiter_restarts_total", ()] == restarts
    # Timed: every attempt that ended in its arbiter, not the three that died with it.
    assert samples["jobarbiter_job_run_seconds_count", queue] == figures.run_seconds.count == 5
    assert samples["jobarbiter_jobs", (("queue", "default"), ("status", "dead"))] == 2


def test_a_cancel_is_counted_when_no_record_is_kept(workdir: Path, managers: list[Manager]) -> None:
    manager = start(managers, WorkerConfig().register(Forgotten), processes=1)
    job = manager.queue(Forgotten(tag="gone"))
    wait_until(lambda: lines(workdir, "coop.log"), what="it to start")
    assert manager.cancel(job)
    manager.join(timeout=20)
    assert manager.info(job) is None  # RESULT_TTL = 0
    assert manager.stats().queues["default"].ended["cancelled"] == 1
