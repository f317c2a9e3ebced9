"""The Prometheus exposition (supervisor.metrics, and /metrics of the HTTP
API): parsed back with prometheus_client's own parser, every figure equals
the stats it was rendered from."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import MappingProxyType

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from actors.tally import BOUNDS
from supervisor import Manager
from supervisor import http as api
from supervisor.metrics import STATUSES, render
from supervisor.stats import (
    ENDINGS,
    ArbiterState,
    ArbiterStats,
    Histogram,
    ManagerStats,
    QueueFigures,
)

from .conftest import InProcess, Recording, dead_job, succeeded_job

NAMES = {
    "jobarbiter_jobs_ended": "counter",
    "jobarbiter_job_retries": "counter",
    "jobarbiter_arbiter_restarts": "counter",
    "jobarbiter_arbiter_recycles": "counter",
    "jobarbiter_job_run_seconds": "histogram",
    "jobarbiter_job_wait_seconds": "histogram",
    "jobarbiter_jobs": "gauge",
    "jobarbiter_jobs_estimated": "gauge",
    "jobarbiter_oldest_pending_age_seconds": "gauge",
    "jobarbiter_queue_paused": "gauge",
    "jobarbiter_queue_slots": "gauge",
    "jobarbiter_queue_workers": "gauge",
    "jobarbiter_arbiter_rss_bytes": "gauge",
    "jobarbiter_arbiter_up": "gauge",
}


def histogram(counts: list[int], total: float) -> Histogram:
    return Histogram(BOUNDS, tuple(counts + [0] * (len(BOUNDS) + 1 - len(counts))), total)


def example() -> ManagerStats:
    run = [0] * (len(BOUNDS) + 1)
    run[0], run[3], run[-1] = 2, 5, 1  # one above every bound
    return ManagerStats(
        queues={
            "default": QueueFigures(
                pending=70_000,
                running=2,
                dead=1,
                scheduled=30_000,
                estimated=frozenset({"pending", "scheduled"}),
                oldest_pending_age=4.25,
                paused=True,
                paused_everywhere=True,
                workers=4,
                slots=8,
                ended=MappingProxyType(
                    {"succeeded": 10, "failed": 3, "timed_out": 1, "dead": 2, "cancelled": 4}
                ),
                retries=4,
                run_seconds=Histogram(BOUNDS, tuple(run), 400.5),
                wait_seconds=histogram([0, 1], 0.0008),
            ),
            'odd "name"\\': QueueFigures(),  # escaped by the client library
        },
        arbiters=(
            ArbiterStats(0, 101, True, 2, 1, 50_000_000, 9, ArbiterState.RUNNING, None, None),
            ArbiterStats(1, None, False, 3, 0, None, 0, ArbiterState.RESTARTING, "exit 1", "boom"),
        ),
    )


def parse(text: str) -> dict[str, tuple[str, str, list[Sample]]]:
    """Family name -> (type, help, samples)."""
    return {
        f.name: (f.type, f.documentation, list(f.samples))
        for f in text_string_to_metric_families(text)
    }


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


def check(text: str, stats: ManagerStats) -> None:
    """Every metric of ``text`` says what ``stats`` says."""
    families = parse(text)
    assert {name: kind for name, (kind, _, _) in families.items()} == NAMES
    for name, (_, help_text, _) in families.items():
        assert len(help_text) > 10, name
    for queue, q in stats.queues.items():
        ended = families["jobarbiter_jobs_ended"][2]
        for outcome in ENDINGS:
            got = value(ended, "jobarbiter_jobs_ended_total", queue=queue, outcome=outcome)
            assert got == q.ended[outcome]
        retries = families["jobarbiter_job_retries"][2]
        assert value(retries, "jobarbiter_job_retries_total", queue=queue) == q.retries
        for metric, h in (("run", q.run_seconds), ("wait", q.wait_seconds)):
            family = f"jobarbiter_job_{metric}_seconds"
            samples = families[family][2]
            cumulative = 0
            for bound, count in zip(h.bounds, h.counts, strict=False):
                cumulative += count
                le = repr(bound)
                assert value(samples, f"{family}_bucket", queue=queue, le=le) == cumulative
            inf = value(samples, f"{family}_bucket", queue=queue, le="+Inf")
            assert inf == h.count == value(samples, f"{family}_count", queue=queue)
            assert value(samples, f"{family}_sum", queue=queue) == h.total
        jobs = families["jobarbiter_jobs"][2]
        estimated = families["jobarbiter_jobs_estimated"][2]
        for status in STATUSES:
            assert value(jobs, "jobarbiter_jobs", queue=queue, status=status) == getattr(q, status)
            flag = value(estimated, "jobarbiter_jobs_estimated", queue=queue, status=status)
            assert flag == (status in q.estimated)
        for family, expected in (
            ("jobarbiter_oldest_pending_age_seconds", q.oldest_pending_age or 0.0),
            ("jobarbiter_queue_paused", float(q.paused)),
            ("jobarbiter_queue_slots", q.slots),
            ("jobarbiter_queue_workers", q.workers),
        ):
            assert value(families[family][2], family, queue=queue) == expected
    restarts = families["jobarbiter_arbiter_restarts"][2]
    recycles = families["jobarbiter_arbiter_recycles"][2]
    assert value(restarts, "jobarbiter_arbiter_restarts_total") == sum(
        a.restarts for a in stats.arbiters
    )
    assert value(recycles, "jobarbiter_arbiter_recycles_total") == sum(
        a.recycles for a in stats.arbiters
    )
    up = families["jobarbiter_arbiter_up"][2]
    rss = families["jobarbiter_arbiter_rss_bytes"][2]
    for a in stats.arbiters:
        assert value(up, "jobarbiter_arbiter_up", arbiter=str(a.index)) == float(a.alive)
        if a.rss is not None:
            assert value(rss, "jobarbiter_arbiter_rss_bytes", arbiter=str(a.index)) == a.rss
    assert len(rss) == sum(a.rss is not None for a in stats.arbiters)
    assert len(up) == len(stats.arbiters)


def test_every_figure_of_a_snapshot() -> None:
    stats = example()
    body, content_type = render(stats)
    assert content_type == CONTENT_TYPE_LATEST
    check(body.decode(), stats)
    samples = parse(body.decode())["jobarbiter_job_run_seconds"][2]
    # Cumulative: 2 at or under 0.5 ms, 7 at or under 5 ms, the 8th above 300 s.
    buckets = {s.labels["le"]: s.value for s in samples if s.labels.get("queue") == "default"
               and s.name.endswith("_bucket")}  # fmt: skip
    assert (buckets["0.0005"], buckets["0.005"], buckets["300.0"], buckets["+Inf"]) == (2, 7, 7, 8)


def test_an_empty_snapshot_has_every_family() -> None:
    stats = ManagerStats(queues={}, arbiters=())
    text = render(stats)[0].decode()
    assert set(parse(text)) == NAMES.keys()
    assert (
        value(parse(text)["jobarbiter_arbiter_restarts"][2], "jobarbiter_arbiter_restarts_total")
        == 0
    )


def test_nothing_is_registered_globally() -> None:
    before = set(REGISTRY._names_to_collectors)
    render(example())
    assert set(REGISTRY._names_to_collectors) == before
    assert not any(name.startswith("jobarbiter") for name in before)


@pytest.mark.processes
def test_metrics_of_a_running_manager(manager: Manager) -> None:
    succeeded_job(manager)
    dead_job(manager)
    recording = Recording(manager)
    answer = InProcess(api.app(recording)).get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE_LATEST
    stats = recording.answers["stats"]
    check(answer.text, stats)
    q = stats.queues["default"]
    assert q.ended["succeeded"] >= 1 and q.ended["dead"] >= 1 and q.retries >= 2
    assert q.run_seconds.count >= 3
    assert stats.arbiters[0].alive and stats.arbiters[0].rss


@pytest.fixture
def short_ttl(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    monkeypatch.setattr(api, "STATS_TTL", 0.5)
    yield 0.5


def test_scrapes_within_the_ttl_share_one_stats_call(short_ttl: float) -> None:
    class Fixed(Recording):
        def stats(self) -> ManagerStats:
            self.calls.append("stats")
            return example()

    fixed = Fixed(None)
    client = InProcess(api.app(fixed))
    first = client.get("/metrics").text
    assert client.get("/metrics").text == first
    assert fixed.calls == ["stats"]
    time.sleep(short_ttl + 0.05)
    client.get("/metrics")
    assert fixed.calls == ["stats", "stats"]
    client.get("/api/stats")  # the JSON stats are never cached
    client.get("/api/stats")
    assert fixed.calls == ["stats"] * 4
