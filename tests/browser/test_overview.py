"""The pages of the host's state in a real browser: the overview's counts
follow the running jobs without a reload, and its forms pause, resume and
scale a queue; the arbiters page shows the jobs in flight, the schedules
page the every() entries; each checked against ``manager.stats()``."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

import pytest

from supervisor import Manager, Status
from tests.runtime.support import wait_until

from .conftest import TIMEOUT
from .jobs import Held, Quick, gate
from .pages import count_is, css_string, expect, queue_cell, queue_row, submit

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def test_counts_follow_running_jobs_without_reload(page: Page, manager: Manager) -> None:
    page.goto("/")
    expect(page).to_have_title(re.compile("^jobarbiter — "))
    chart = page.locator("#throughput svg")
    expect(chart).to_be_visible()
    drawn = chart.inner_html()
    # A mark that a reload would wipe out.
    page.evaluate("window.notReloaded = true")

    # Paused first, so that the counts stand still while they are compared.
    manager.pause("mail")
    ids = manager.queue_many([Held(name="live"), Held(name="live")])
    expect(queue_cell(page, "mail", "pending")).to_have_text(count_is(2))
    expect(queue_cell(page, "mail", "paused")).to_have_text("yes")
    expect(queue_cell(page, "mail", "oldest")).to_have_text(re.compile(r"\d"))
    figures = manager.stats().queues["mail"]
    assert (figures.pending, figures.running, figures.paused) == (2, 0, True)
    assert figures.oldest_pending_age is not None

    manager.resume("mail")
    expect(queue_cell(page, "mail", "running")).to_have_text(count_is(2))
    expect(queue_cell(page, "mail", "pending")).to_have_text(count_is(0))
    expect(queue_cell(page, "mail", "paused")).to_have_text("no")
    figures = manager.stats().queues["mail"]
    assert (figures.pending, figures.running, figures.paused) == (0, 2, False)

    gate("live").touch()
    for job_id in ids:
        manager.wait(job_id, timeout=TIMEOUT)
    expect(queue_cell(page, "mail", "running")).to_have_text(count_is(0))
    # Two jobs ended just now: the recent rate is no longer zero.
    expect(queue_cell(page, "mail", "rate")).to_have_text(re.compile(r"[1-9]"))
    expect(queue_cell(page, "mail", "oldest")).not_to_have_text(re.compile(r"\d"))
    figures = manager.stats().queues["mail"]
    assert (figures.pending, figures.running, figures.succeeded) == (0, 0, 2)
    assert figures.oldest_pending_age is None
    # The chart was drawn again with the jobs that ended.
    page.wait_for_function(
        "drawn => document.querySelector('#throughput svg').innerHTML !== drawn", arg=drawn
    )

    # A queue seen for the first time gets its row, still without a reload.
    manager.queue(Quick(n=1), queue="backfill")
    expect(queue_cell(page, "backfill", "pending")).to_have_text(count_is(1))
    assert manager.stats().queues["backfill"].pending == 1
    assert page.evaluate("window.notReloaded") is True


def test_pending_by_priority_follows_without_reload(page: Page, manager: Manager) -> None:
    queue = "ranked"
    manager.pause(queue)  # nothing runs: the counts stand still
    low = manager.queue(Quick(n=1), queue=queue)
    page.goto("/")
    expect(queue_cell(page, queue, "pending")).to_have_text(count_is(1))
    expect(queue_cell(page, queue, "priorities")).to_have_text("")  # one level
    high = [manager.queue(Quick(n=n), queue=queue, priority=10) for n in (2, 3)]
    expect(queue_cell(page, queue, "priorities")).to_have_text("10: 2 · 0: 1")
    assert list(manager.stats().queues[queue].pending_by_priority.items()) == [(10, 2), (0, 1)]
    manager.cancel(low)
    expect(queue_cell(page, queue, "priorities")).to_have_text("")
    for job_id in high:
        manager.cancel(job_id)
    manager.resume(queue)


def test_pause_and_resume_a_queue(page: Page, manager: Manager) -> None:
    page.goto("/")
    answer = submit(page, queue_row(page, "reports").locator('form[data-action="pause"]'))
    assert answer.status == 303, f"pause answered {answer.status}"
    expect(page.locator("#flash")).to_contain_text(re.compile("paused", re.IGNORECASE))
    expect(page.locator("#flash")).to_contain_text("reports")
    wait_until(lambda: manager.stats().queues["reports"].paused, TIMEOUT, "reports paused")
    expect(queue_cell(page, "reports", "paused")).to_have_text("yes")

    # Held: a job queued now waits; once resumed from the page, it runs.
    job_id = manager.queue(Quick(n=7))
    expect(queue_cell(page, "reports", "pending")).to_have_text(count_is(1))
    info = manager.info(job_id)
    assert info is not None and info.status is Status.PENDING

    answer = submit(page, queue_row(page, "reports").locator('form[data-action="resume"]'))
    assert answer.status == 303, f"resume answered {answer.status}"
    expect(page.locator("#flash")).to_contain_text(re.compile("resumed", re.IGNORECASE))
    assert manager.wait(job_id, timeout=TIMEOUT) == 7
    assert not manager.stats().queues["reports"].paused
    expect(queue_cell(page, "reports", "paused")).to_have_text("no")


def test_scale_a_queue(page: Page, manager: Manager) -> None:
    page.goto("/")
    before = manager.stats().queues["imports"].workers
    wanted = before + 2
    form = queue_row(page, "imports").locator('form[data-action="scale"]')
    form.locator('input[name="count"]').fill(str(wanted))
    answer = submit(page, form)
    assert answer.status == 303, f"scale answered {answer.status}"
    expect(page.locator("#flash")).to_contain_text("imports")

    def scaled() -> bool:
        figures = manager.stats().queues["imports"]
        return figures.workers == wanted and figures.slots == wanted

    wait_until(scaled, TIMEOUT, f"imports at {wanted} slots")
    expect(queue_cell(page, "imports", "workers")).to_have_text(count_is(wanted))
    expect(queue_cell(page, "imports", "slots")).to_have_text(count_is(wanted))


def test_arbiters_page_shows_the_jobs_in_flight(page: Page, manager: Manager) -> None:
    job_id = manager.queue(Held(name="flight"))

    def in_flight() -> bool:
        return any(job.id == job_id for job in manager.stats().arbiters[0].in_flight)

    wait_until(in_flight, TIMEOUT, "the job in flight")
    arbiter = manager.stats().arbiters[0]
    page.goto("/arbiters")
    expect(page).to_have_title(re.compile("^jobarbiter — "))
    row = page.locator('table#arbiters tr[data-arbiter="0"]')
    expect(row.locator('td[data-field="pid"]')).to_have_text(str(arbiter.pid))
    expect(row.locator('td[data-field="state"]')).to_have_text("running")
    expect(row.locator('td[data-field="restarts"]')).to_have_text(str(arbiter.restarts))
    flight = row.locator('td[data-field="in_flight"]')
    expect(flight).to_contain_text(Held.NAME)
    expect(flight.locator(f'a[href$="/jobs/{job_id}"]')).to_have_count(1)

    gate("flight").touch()
    assert manager.wait(job_id, timeout=TIMEOUT) == "flight"
    page.reload()
    expect(flight.locator(f'a[href$="/jobs/{job_id}"]')).to_have_count(0)


def test_schedules_page_lists_every_entry(page: Page, manager: Manager) -> None:
    manager.every(dt.timedelta(hours=1), Quick(n=5))
    (entry,) = (s for s in manager.stats().schedules if s.job == Quick.NAME)
    page.goto("/schedules")
    expect(page).to_have_title(re.compile("^jobarbiter — "))
    row = page.locator(f"table#schedules tr[data-schedule={css_string(entry.name)}]")
    expect(row.locator('td[data-field="name"]')).to_have_text(entry.name)
    expect(row.locator('td[data-field="kind"]')).to_have_text("every")
    expect(row.locator('td[data-field="spec"]')).to_contain_text("3600")
    expect(row.locator('td[data-field="job"]')).to_have_text(Quick.NAME)
    expect(row.locator('td[data-field="queue"]')).to_have_text("reports")
    assert entry.next_run is not None
    expect(row.locator('td[data-field="next_run"]')).to_contain_text(
        entry.next_run.strftime("%Y-%m-%d %H:%M")
    )
