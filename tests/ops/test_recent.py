"""The tally's recent endings (the ring of 10 s buckets behind the dashboard's
chart) on a clock the test moves (and tells the tally of, as the StorageActor
does once per message), and the JSON form of the figures the
dashboard added: recent endings, CPU, jobs in flight, schedules."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from actors.tally import RECENT_BUCKETS, RECENT_STEP, Recent, Tally
from supervisor import jsonview
from supervisor.access import Credentials
from supervisor.dashboard import views
from supervisor.dashboard.render import Renderer
from supervisor.stats import (
    ArbiterState,
    ArbiterStats,
    InFlight,
    ManagerStats,
    QueueFigures,
    ScheduleInfo,
    ScheduleKind,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_endings_fill_the_bucket_of_the_time_last_given() -> None:
    clock = Clock(10_000.0)  # the start of a bucket
    tally = Tally(clock)
    for _ in range(3):
        tally.ended("q", "succeeded")
    clock.now += RECENT_STEP  # the next bucket
    tally.at(clock.now)
    tally.ended("q", "failed", retried=True)
    clock.now += 5.0
    tally.at(clock.now)
    recent = tally.snapshot()["q"].recent
    assert len(recent.counts) == RECENT_BUCKETS
    assert recent.counts[-2:] == (3, 1) and sum(recent.counts) == 4
    assert recent.elapsed == pytest.approx(5.0)
    # Over the last 10 s (one whole bucket and the current one): 4 in 15 s.
    assert recent.rate(RECENT_STEP) == pytest.approx(4 / 15.0)
    assert recent.per_second()[-1] == pytest.approx(3 / RECENT_STEP)

    # Nothing ends for 3 buckets: they show as zeros, not as the old counts.
    clock.now += 3 * RECENT_STEP
    tally.at(clock.now)
    later = tally.snapshot()["q"].recent
    assert later.counts[-5:] == (3, 1, 0, 0, 0)
    # Past the whole ring, every bucket is empty again.
    clock.now += RECENT_BUCKETS * RECENT_STEP
    tally.at(clock.now)
    tally.ended("q", "succeeded")
    gone = tally.snapshot()["q"].recent
    assert sum(gone.counts) == 1 and gone.counts[-1] == 1


def test_a_skip_shorter_than_the_ring_keeps_what_is_still_in_it() -> None:
    clock = Clock(0.0)
    tally = Tally(clock)
    tally.ended("q", "succeeded")
    clock.now += (RECENT_BUCKETS - 1) * RECENT_STEP  # the oldest bucket still shown
    tally.at(clock.now)
    tally.ended("q", "dead")
    recent = tally.snapshot()["q"].recent
    assert recent.counts[0] == 1 and recent.counts[-1] == 1 and sum(recent.counts) == 2
    clock.now += RECENT_STEP
    tally.at(clock.now)
    assert sum(tally.snapshot()["q"].recent.counts) == 1


def test_rate_of_an_empty_history() -> None:
    assert Recent.empty().rate() == 0.0
    assert views.overview_cells(QueueFigures(recent=Recent.empty()))["rate"].text == "0.00"
    assert views.overview_cells(QueueFigures())["rate"].text == "—"


def test_estimated_counts_are_marked() -> None:
    cells = views.overview_cells(QueueFigures(pending=5, dead=2, estimated=frozenset({"pending"})))
    assert cells["pending"] == views.Cell("5", estimate=True)
    assert cells["dead"] == views.Cell("2", estimate=False)
    row = Renderer(credentials=Credentials(None)).text(
        "_queue_row.html", base="", here="/", name="q", cells=cells, workers=1
    )
    assert '<td data-field="pending" data-estimate="1">≈5</td>' in row
    assert '<td data-field="dead">2</td>' in row


def test_chart_sums_the_queues() -> None:
    one = Recent(RECENT_STEP, (0,) * (RECENT_BUCKETS - 2) + (20, 0), 1.0)
    two = Recent(RECENT_STEP, (0,) * (RECENT_BUCKETS - 2) + (10, 0), 1.0)
    stats = ManagerStats(
        queues={"a": QueueFigures(recent=one), "b": QueueFigures(recent=two)}, arbiters=()
    )
    chart = views.chart(stats)
    assert chart.available and chart.peak == pytest.approx(3.0)
    points = [tuple(float(v) for v in p.split(",")) for p in chart.points.split()]
    assert len(points) == RECENT_BUCKETS - 1
    assert points[-1] == (views.CHART_WIDTH, 0.0)  # 3 jobs/s: the top of the box
    assert all(y == views.CHART_HEIGHT for _, y in points[:-1])
    assert not views.chart(ManagerStats(queues={"a": QueueFigures()}, arbiters=())).available


def test_the_json_form_of_the_dashboards_figures() -> None:
    stats = ManagerStats(
        queues={"q": QueueFigures(pending=2, recent=Recent(10.0, (1, 2, 3), 4.5))},
        arbiters=(
            ArbiterStats(
                index=0,
                pid=12,
                alive=True,
                restarts=0,
                recycles=1,
                rss=2**20,
                jobs_done=3,
                state=ArbiterState.RUNNING,
                last_exit=None,
                last_error=None,
                cpu=12.5,
                in_flight=(InFlight(id=uuid.UUID(int=5), name="job", queue="q", seconds=1.5),),
            ),
        ),
        schedules=(
            ScheduleInfo(
                name="job #2",
                job="job",
                queue="q",
                kind=ScheduleKind.EVERY,
                spec="60",
                next_run=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
            ),
        ),
    )
    doc = json.loads(json.dumps(jsonview.stats_json(stats)))
    assert doc["queues"]["q"]["recent"] == {"step": 10.0, "counts": [1, 2, 3], "elapsed": 4.5}
    assert doc["arbiters"][0]["cpu"] == 12.5
    assert doc["arbiters"][0]["in_flight"][0]["id"] == str(uuid.UUID(int=5))
    assert doc["schedules"][0]["next_run"] == "2030-01-01T00:00:00+00:00"
    assert jsonview.stats_from_json(doc) == stats
    # Without a tally (a storage opened directly) the history is null, and stays None.
    bare = ManagerStats(queues={"q": QueueFigures()}, arbiters=())
    assert jsonview.stats_json(bare)["queues"]["q"]["recent"] is None
    assert jsonview.stats_from_json(jsonview.stats_json(bare)) == bare
    doc["schedules"][0]["kind"] = "hourly"
    with pytest.raises(jsonview.FormatError, match="unknown schedule kind"):
        jsonview.stats_from_json(doc)
