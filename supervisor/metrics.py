"""The Prometheus text form of one ``ManagerStats``.

``render(stats)`` answers the body and content type of a ``/metrics``
scrape. It is built with prometheus_client's own machinery (a Collector over
the snapshot, a CollectorRegistry of its own per render, ``generate_latest``),
so the escaping and the format are the client library's. Nothing is
registered in prometheus_client's global registry, and no multiprocess
directory is used: every figure comes from the one snapshot.

The metrics (every one has a HELP text):

counters, this host's since start:
  ``jobarbiter_jobs_ended_total{queue,outcome}``: attempts by how they ended
  (succeeded, failed, timed_out, dead, cancelled; exclusive, as in stats());
  ``jobarbiter_job_retries_total{queue}``;
  ``jobarbiter_arbiter_restarts_total`` and ``jobarbiter_arbiter_recycles_total``.
histograms, this host's since start:
  ``jobarbiter_job_run_seconds{queue}`` and ``jobarbiter_job_wait_seconds{queue}``
  (enqueue, or due time, to start).
gauges:
  ``jobarbiter_jobs{queue,status}``: stored jobs, status pending, scheduled
  (a part of pending), waiting (for parents), running, dead;
  ``jobarbiter_jobs_estimated{queue,status}``: 1 where that count is an
  estimate (a big count on PostgreSQL, see ``storage.counts``), else 0;
  ``jobarbiter_oldest_pending_age_seconds{queue}``: 0 when no job is due;
  ``jobarbiter_queue_paused{queue}``: 1 while this host hands out none of its jobs;
  ``jobarbiter_queue_slots{queue}`` (slots the live arbiters have) and
  ``jobarbiter_queue_workers{queue}`` (slots each arbiter should have);
  ``jobarbiter_arbiter_up{arbiter}`` and ``jobarbiter_arbiter_rss_bytes{arbiter}``
  (absent while its size is unknown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import cast

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from supervisor.stats import ENDINGS, Histogram, ManagerStats

__all__ = ["STATUSES", "render"]

# How prometheus_client writes a bucket's bound ("0.005", "+Inf"); the
# function is untyped.
_le = cast(Callable[[float], str], floatToGoString)

# The stored counts ``jobarbiter_jobs`` shows, as QueueFigures names them.
# ``pending_by_priority`` has no gauge: a priority is any int64 a producer
# picks (a deadline, a customer tier, a score), so a priority label has no
# bound on its values, and each level's series would come and go as the level
# fills and drains. /api/stats and the dashboard carry the split.
STATUSES = ("pending", "scheduled", "waiting", "running", "dead")


def render(stats: ManagerStats) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``stats``, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(stats))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Snapshot(Collector):
    """The metrics of one ManagerStats; collected once, by one render."""

    def __init__(self, stats: ManagerStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        queues = sorted(self._stats.queues.items())
        arbiters = self._stats.arbiters

        ended = CounterMetricFamily(
            "jobarbiter_jobs_ended",
            "Attempts that ended on this host since start, by queue and how they ended "
            "(exclusive: one that left its job out of retries is dead).",
            labels=["queue", "outcome"],
        )
        retries = CounterMetricFamily(
            "jobarbiter_job_retries",
            "Failed attempts on this host since start that were retried.",
            labels=["queue"],
        )
        run = HistogramMetricFamily(
            "jobarbiter_job_run_seconds",
            "Run time of each attempt on this host since start.",
            labels=["queue"],
        )
        wait = HistogramMetricFamily(
            "jobarbiter_job_wait_seconds",
            "Time from enqueue (or due time) to start, of jobs started on this host.",
            labels=["queue"],
        )
        jobs = GaugeMetricFamily(
            "jobarbiter_jobs",
            "Stored jobs by queue and status (scheduled: pending, not due, never failed).",
            labels=["queue", "status"],
        )
        estimated = GaugeMetricFamily(
            "jobarbiter_jobs_estimated",
            "1 where jobarbiter_jobs of that queue and status is an estimate, not exact.",
            labels=["queue", "status"],
        )
        age = GaugeMetricFamily(
            "jobarbiter_oldest_pending_age_seconds",
            "How long the longest-waiting due job has waited past its due time (0: none due).",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "jobarbiter_queue_paused",
            "1 while this host hands out none of the queue's jobs.",
            labels=["queue"],
        )
        slots = GaugeMetricFamily(
            "jobarbiter_queue_slots",
            "Slots this host's live arbiters have for the queue now.",
            labels=["queue"],
        )
        workers = GaugeMetricFamily(
            "jobarbiter_queue_workers",
            "Slots each arbiter should have for the queue (the desired worker count).",
            labels=["queue"],
        )
        for name, q in queues:
            for outcome in ENDINGS:
                ended.add_metric([name, outcome], q.ended.get(outcome, 0))
            retries.add_metric([name], q.retries)
            _observe(run, [name], q.run_seconds)
            _observe(wait, [name], q.wait_seconds)
            for status in STATUSES:
                jobs.add_metric([name, status], getattr(q, status))
                estimated.add_metric([name, status], 1.0 if status in q.estimated else 0.0)
            age.add_metric([name], q.oldest_pending_age or 0.0)
            paused.add_metric([name], 1.0 if q.paused or q.paused_everywhere else 0.0)
            slots.add_metric([name], q.slots)
            workers.add_metric([name], q.workers)

        restarts = CounterMetricFamily(
            "jobarbiter_arbiter_restarts",
            "Times this host's arbiters were restarted after dying.",
            value=sum(a.restarts for a in arbiters),
        )
        recycles = CounterMetricFamily(
            "jobarbiter_arbiter_recycles",
            "Planned replacements of this host's arbiters (memory or job-count limit).",
            value=sum(a.recycles for a in arbiters),
        )
        up = GaugeMetricFamily(
            "jobarbiter_arbiter_up",
            "1 while the arbiter process is alive.",
            labels=["arbiter"],
        )
        rss = GaugeMetricFamily(
            "jobarbiter_arbiter_rss_bytes",
            "Resident memory of the arbiter process.",
            labels=["arbiter"],
        )
        for a in arbiters:
            up.add_metric([str(a.index)], 1.0 if a.alive else 0.0)
            if a.rss is not None:
                rss.add_metric([str(a.index)], a.rss)

        yield from (ended, retries, run, wait, restarts, recycles)
        yield from (jobs, estimated, age, paused, slots, workers, up, rss)


def _observe(family: HistogramMetricFamily, labels: Sequence[str], h: Histogram) -> None:
    """Per-bucket counts as Prometheus' cumulative ``le`` buckets, up to +Inf."""
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(h.bounds, h.counts, strict=False):
        cumulative += count
        buckets.append((_le(bound), cumulative))
    buckets.append(("+Inf", h.count))
    family.add_metric(labels, buckets, h.total)
