"""The README's pictures of the dashboard, taken by the browser so they show
what it really draws: ``JOBARBITER_SCREENSHOTS=1 pytest tests/browser -k
screenshots`` writes docs/dashboard-overview.png and docs/dashboard-job.png.
A plain test run leaves them alone (it skips this test)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from supervisor import Manager, Status

from .conftest import TIMEOUT, wait_for_status
from .jobs import FailsOnce, Held, Quick, Slow, gate
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


def test_take_screenshots(page: Page, manager: Manager) -> None:
    # A service at work: mail busy with a backlog, reports ending jobs at
    # a steady rate for the chart, an import that died, reports for later.
    running = manager.queue_many([Held(name="screenshot"), Held(name="screenshot")])
    manager.queue_many([Slow(seconds=0.5) for _ in range(14)])
    manager.schedule(Quick(n=0), dt.timedelta(hours=1))
    dead = manager.queue(FailsOnce(tag="invoices-2026-11"))
    try:
        page.goto("/")
        for second in range(8):
            ids = manager.queue_many([Quick(n=second * 100 + n) for n in range(40 + 10 * second)])
            for _ in manager.as_completed(ids, timeout=TIMEOUT):
                pass
            page.wait_for_timeout(1000)  # a picture's pacing, not a check
        wait_for_status(manager, dead, Status.DEAD)
        expect(queue_cell(page, "mail", "running")).to_have_text(count_is(2))
        expect(queue_cell(page, "imports", "dead")).to_have_text(count_is(1))
        page.screenshot(path=DOCS / "dashboard-overview.png")

        page.goto(f"/jobs/{dead}")
        expect(page.locator("pre#last-error")).to_contain_text("upstream file is missing")
        page.screenshot(path=DOCS / "dashboard-job.png")
    finally:
        gate("screenshot").touch()
        for job_id in running:
            manager.wait(job_id, timeout=TIMEOUT)
