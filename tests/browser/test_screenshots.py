"""The README's pictures of the dashboard, taken by the browser so they show
what it really draws: ``JOBARBITER_SCREENSHOTS=1 pytest tests/browser -k
screenshots`` writes docs/dashboard-overview.png and docs/dashboard-job.png
(about a minute: the throughput chart needs some history). A plain test run
leaves them alone (it skips this test)."""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from supervisor import Manager, Status

from .conftest import TIMEOUT, started_manager, wait_for_status
from .jobs import FailsOnce, Held, Quick, Slow, Tally, gate
from .pages import count_is, expect, queue_cell

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.processes,
    pytest.mark.skipif(
        os.environ.get("JOBARBITER_SCREENSHOTS") != "1",
        reason="takes the README's screenshots only with JOBARBITER_SCREENSHOTS=1",
    ),
]

DOCS = Path(__file__).resolve().parents[2] / "docs"
HISTORY = 40  # seconds of reports ending at a changing rate, for the chart


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    """The module's Manager, without the attacker's queue of the security tests."""
    jobs = [Held, Slow, Quick, Tally, FailsOnce]
    with started_manager(tmp_path_factory.mktemp("screenshots"), jobs) as started:
        yield started


def test_take_screenshots(page: Page, manager: Manager) -> None:
    # A service at work: mail busy with a backlog, reports ending at a
    # changing rate, an import that died (its queue paused), reports for later.
    running = manager.queue_many([Held(name="screenshot"), Held(name="screenshot")])
    manager.queue_many([Slow(seconds=0.5) for _ in range(14)])
    manager.schedule(Quick(n=0), dt.timedelta(hours=1))
    dead = manager.queue(FailsOnce(tag="invoices-2026-11"))
    report = manager.queue(Tally(region="north", orders=[120, 75, 310, 42]))
    try:
        page.goto("/")
        for second in range(HISTORY):
            burst = int(30 + 25 * math.sin(second / 6))
            ids = manager.queue_many([Quick(n=n) for n in range(burst)])
            for _ in manager.as_completed(ids, timeout=TIMEOUT):
                pass
            page.wait_for_timeout(1000)  # the picture's pacing, not a check
        wait_for_status(manager, dead, Status.DEAD)
        manager.pause("imports")
        expect(queue_cell(page, "mail", "running")).not_to_have_text(count_is(0))
        expect(queue_cell(page, "imports", "dead")).to_have_text(count_is(1))
        expect(queue_cell(page, "imports", "paused")).to_have_text("yes")
        page.screenshot(path=DOCS / "dashboard-overview.png")

        assert manager.wait(report, timeout=TIMEOUT) == {
            "region": "north",
            "orders": 4,
            "total": 547,
        }
        page.goto(f"/jobs/{report}?arguments=1")
        expect(page.locator("pre#arguments")).to_contain_text("north")
        page.screenshot(path=DOCS / "dashboard-job.png")
    finally:
        gate("screenshot").touch()
        for job_id in running:
            manager.wait(job_id, timeout=TIMEOUT)
