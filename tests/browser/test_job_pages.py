"""The jobs list, a job's page and the dead jobs in a real browser: a dead
job found through the list and retried from its page, a scheduled job
cancelled from its page, the list's filter and its keyset pages; each
checked against ``manager.info()`` and ``manager.stats()``."""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from typing import TYPE_CHECKING

import pytest

from supervisor import Manager, Status

from .conftest import TIMEOUT, wait_for_status
from .jobs import FailsOnce, Quick, Tally
from .pages import SUBMIT, Dialogs, expect, job_field, job_row, submit

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def test_open_a_dead_job_and_retry_it(page: Page, manager: Manager) -> None:
    job_id = manager.queue(FailsOnce(tag="ledger"))
    wait_for_status(manager, job_id, Status.DEAD)
    dead_before = manager.stats().queues["imports"].dead

    page.goto("/jobs")
    form = page.locator("form#filter")
    form.locator('select[name="status"]').select_option("dead")
    form.locator('input[name="queue"]').fill("imports")
    form.locator(SUBMIT).first.click()
    expect(page).to_have_url(re.compile(r"status=dead"))
    rows = page.locator("table#jobs tr[data-job]")
    expect(rows).to_have_count(dead_before)
    row = job_row(page, "jobs", job_id)
    row.locator("td, th").first.locator("a").click()

    expect(page).to_have_url(re.compile(rf"/jobs/{job_id}$"))
    expect(page).to_have_title(re.compile("^jobarbiter — "))
    expect(job_field(page, "id")).to_have_text(str(job_id))
    expect(job_field(page, "queue")).to_have_text("imports")
    expect(job_field(page, "status")).to_have_text("dead")
    expect(page.locator("pre#last-error")).to_contain_text("the upstream file is missing")
    expect(page.locator("pre#last-error")).to_contain_text("Traceback")
    expect(page.locator('form[data-action="cancel"]')).to_have_count(0)

    answer = submit(page, page.locator('form[data-action="retry"]'))
    assert answer.status == 303, f"retry answered {answer.status}"
    expect(page.locator("#flash")).not_to_be_empty()
    assert manager.wait(job_id, timeout=TIMEOUT) == "imported ledger"
    assert manager.stats().queues["imports"].dead == dead_before - 1
    page.reload()
    expect(job_field(page, "status")).to_have_text("succeeded")
    expect(page.locator("#result")).to_contain_text("imported ledger")
    expect(page.locator('form[data-action="retry"]')).to_have_count(0)


def test_retry_from_the_dead_page(page: Page, manager: Manager) -> None:
    job_id = manager.queue(FailsOnce(tag="payroll"))
    wait_for_status(manager, job_id, Status.DEAD)

    page.goto("/dead")
    expect(page).to_have_title(re.compile("^jobarbiter — "))
    answer = submit(page, job_row(page, "dead", job_id).locator('form[data-action="retry"]'))
    assert answer.status == 303, f"retry answered {answer.status}"
    expect(page).to_have_url(re.compile(r"/dead$"))
    expect(page.locator("#flash")).not_to_be_empty()
    assert manager.wait(job_id, timeout=TIMEOUT) == "imported payroll"
    expect(job_row(page, "dead", job_id)).to_have_count(0)


def test_cancel_a_scheduled_job_from_its_page(
    page: Page, manager: Manager, dialogs: Dialogs
) -> None:
    job_id = manager.schedule(Quick(n=3), dt.timedelta(hours=1))
    scheduled_before = manager.stats().queues["reports"].scheduled

    page.goto(f"/jobs/{job_id}")
    expect(job_field(page, "status")).to_have_text("pending")
    expect(page.locator('form[data-action="retry"]')).to_have_count(0)
    answer = submit(page, page.locator('form[data-action="cancel"]'))
    assert answer.status == 303, f"cancel answered {answer.status}"
    assert [kind for kind, _ in dialogs.seen] == ["confirm"], dialogs.seen
    expect(page).to_have_url(re.compile(rf"/jobs/{job_id}$"))
    expect(page.locator("#flash")).to_contain_text(re.compile("cancel", re.IGNORECASE))

    info = manager.info(job_id)
    assert info is not None and info.status is Status.CANCELLED
    assert manager.stats().queues["reports"].scheduled == scheduled_before - 1
    expect(job_field(page, "status")).to_have_text("cancelled")
    expect(page.locator('form[data-action="cancel"]')).to_have_count(0)


def test_arguments_are_shown_only_when_asked(page: Page, manager: Manager) -> None:
    job_id = manager.schedule(Quick(n=424242), dt.timedelta(hours=1))
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("pre#arguments")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("424242")
    page.locator("a#show-arguments").click()
    expect(page).to_have_url(re.compile(r"[?&]arguments=1"))
    expect(page.locator("pre#arguments")).to_contain_text("424242")


def test_unknown_job_is_a_404_page(page: Page) -> None:
    response = page.goto("/jobs/00000000-0000-7000-8000-000000000000")
    assert response is not None and response.status == 404


def test_list_walks_keyset_pages(page: Page, manager: Manager) -> None:
    later = dt.timedelta(hours=2)
    ids = [str(manager.schedule(Quick(n=n), later, queue="paged")) for n in range(250)]
    query = urllib.parse.urlencode({"queue": "paged", "status": "scheduled"})
    page.goto(f"/jobs?{query}")
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        shown = page.locator("table#jobs tr[data-job]").evaluate_all(
            "rows => rows.map(r => r.dataset.job)"
        )
        assert shown, f"page {pages} lists no job"
        seen.extend(shown)
        following = page.locator('a[rel="next"]')
        if following.count() == 0:
            break
        href = following.get_attribute("href") or ""
        assert "after=" in href and "offset" not in href.lower(), href
        following.click()
        page.wait_for_load_state()
    assert pages > 1, "250 jobs fit on one page: the keyset paging went untested"
    assert seen == ids, "the pages did not list each job once, in the order queued"


def test_retry_all_and_purge_from_the_dead_page(
    page: Page, manager: Manager, dialogs: Dialogs
) -> None:
    retried = {tag: manager.queue(FailsOnce(tag=tag)) for tag in ("north", "south")}
    for job_id in retried.values():
        wait_for_status(manager, job_id, Status.DEAD)
    page.goto("/dead")
    answer = submit(page, page.locator('form[data-action="retry-all"]'))
    assert answer.status == 303, f"retry-all answered {answer.status}"
    expect(page.locator("#flash")).to_contain_text("2")
    for tag, job_id in retried.items():
        assert manager.wait(job_id, timeout=TIMEOUT) == f"imported {tag}"

    purged = manager.queue(FailsOnce(tag="west"))
    wait_for_status(manager, purged, Status.DEAD)
    page.reload()
    expect(job_row(page, "dead", purged)).to_have_count(1)
    answer = submit(page, page.locator('form[data-action="purge"]'))
    assert answer.status == 303, f"purge answered {answer.status}"
    expect(job_row(page, "dead", purged)).to_have_count(0)
    assert manager.info(purged) is None
    assert manager.stats().queues["imports"].dead == 0
    # Both asked before they acted.
    assert [kind for kind, _ in dialogs.seen] == ["confirm", "confirm"], dialogs.seen


def test_filter_by_name(page: Page, manager: Manager) -> None:
    later = dt.timedelta(hours=3)
    quick = manager.schedule(Quick(n=1), later, queue="named")
    other = manager.schedule(Tally(region="east", orders=[1]), later, queue="named")
    page.goto("/jobs")
    form = page.locator("form#filter")
    form.locator('input[name="queue"]').fill("named")
    form.locator('input[name="name"]').fill(Tally.NAME)
    form.locator(SUBMIT).first.click()
    expect(page).to_have_url(re.compile(r"[?&]name="))
    expect(job_row(page, "jobs", other)).to_have_count(1)
    expect(job_row(page, "jobs", quick)).to_have_count(0)
    listed = manager.jobs("named", name=Tally.NAME)
    expect(page.locator("table#jobs tr[data-job]")).to_have_count(len(listed))
