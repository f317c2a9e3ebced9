"""The dashboard's defences, in a real browser: markup in a job's queue,
argument and error is shown as text on every page and never runs; a POST
from another site, or without the credentials, is refused and changes
nothing; arguments are shown only with the credentials; a token login sets
a cookie that is not the token; the server listens on loopback unless told
otherwise."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from supervisor import Manager, Status
from tests.runtime.support import listening_on, wait_until

from .conftest import TIMEOUT, new_context, wait_for_status
from .jobs import PAYLOAD, Hostile
from .pages import (
    AUTH,
    SECURITY_HEADERS,
    SUBMIT,
    Dialogs,
    action_url,
    count_is,
    expect,
    form_body,
    job_field,
    job_row,
    no_markup_from,
    queue_cell,
    queue_row,
    submit,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Cookie, Page, Response

pytestmark = [pytest.mark.browser, pytest.mark.processes]

LOGIN_COOKIE = "jobarbiter_auth"  # what a token login sets

# Where the attacker's page claims to come from. Playwright answers for it
# (page.route), so no request leaves the browser; and were one to, it would
# stay on loopback.
ATTACKER = "http://127.0.0.2:9"


@pytest.fixture(scope="module")
def hostile(manager: Manager) -> str:
    """A dead job whose queue, argument and error are the payload (and a
    schedule of another such job, an hour off)."""
    manager.every(dt.timedelta(hours=1), Hostile(text=PAYLOAD))
    job_id = manager.queue(Hostile(text=PAYLOAD))
    wait_for_status(manager, job_id, Status.DEAD)
    return str(job_id)


@pytest.fixture
def unguarded(browser: Browser, base_url: str) -> Iterator[BrowserContext]:
    """A logged-in browser that ignores the Content-Security-Policy, so that
    only the escaping stands between the payload and a dialog."""
    user, password = AUTH
    made = new_context(
        browser,
        base_url,
        bypass_csp=True,
        http_credentials={"username": user, "password": password},
    )
    yield made
    made.close()


def _visit(page: Page, path: str) -> Response:
    response = page.goto(path)
    assert response is not None
    assert response.status == 200, f"{path} answered {response.status}"
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, f"{path}: {name} is {headers.get(name)!r}"
    return response


def _shown_as_text(page: Page) -> None:
    """The payload is on the page as text a person sees, and as nothing else."""
    expect(page.get_by_text(PAYLOAD).first).to_be_visible()
    no_markup_from(page)


def test_payload_shows_as_text_on_every_page(
    unguarded: BrowserContext, hostile: str, dialogs: Dialogs
) -> None:
    page = unguarded.new_page()
    dialogs.watch(page)
    page.goto("/login")

    _visit(page, "/")
    expect(queue_row(page, PAYLOAD)).to_contain_text(PAYLOAD)
    expect(queue_cell(page, PAYLOAD, "dead")).to_have_text(count_is(1))
    _shown_as_text(page)

    _visit(page, "/jobs?" + urllib.parse.urlencode({"queue": PAYLOAD}))
    expect(page.locator('form#filter input[name="queue"]')).to_have_value(PAYLOAD)
    expect(job_row(page, "jobs", hostile)).to_contain_text(PAYLOAD)
    _shown_as_text(page)

    _visit(page, f"/jobs/{hostile}?arguments=1")
    expect(job_field(page, "queue")).to_have_text(PAYLOAD)
    expect(page.locator("pre#last-error")).to_contain_text(PAYLOAD)
    expect(page.locator("pre#arguments")).to_contain_text(PAYLOAD)
    _shown_as_text(page)

    _visit(page, "/dead")
    expect(job_row(page, "dead", hostile)).to_contain_text(PAYLOAD)
    _shown_as_text(page)

    _visit(page, "/schedules")
    expect(page.locator("table#schedules tr[data-schedule]")).to_contain_text(PAYLOAD)
    _shown_as_text(page)

    _visit(page, "/arbiters")
    no_markup_from(page)  # no payload here: the job is not in flight

    # The flash names the queue it paused: escaped too.
    _visit(page, "/")
    answer = submit(page, queue_row(page, PAYLOAD).locator('form[data-action="pause"]'))
    assert answer.status == 303, f"pause answered {answer.status}"
    expect(page.locator("#flash")).to_contain_text(PAYLOAD)
    _shown_as_text(page)
    answer = submit(page, queue_row(page, PAYLOAD).locator('form[data-action="resume"]'))
    assert answer.status == 303, f"resume answered {answer.status}"

    assert dialogs.seen == []


def _paused(manager: Manager, queue: str) -> bool:
    figures = manager.stats().queues.get(queue)
    return figures is not None and figures.paused


def test_cross_site_form_is_refused(page: Page, manager: Manager) -> None:
    """Another site's page, in the operator's logged-in browser, posts the
    pause form: the browser sends the credentials, the server refuses it."""
    page.goto("/")
    pause = queue_row(page, "reports").locator('form[data-action="pause"]')
    target, body = action_url(page, pause), form_body(pause)
    fields = "".join(
        f'<input type="hidden" name="{name}" value="{value}">'
        for name, value in urllib.parse.parse_qsl(body)
    )
    attack = (
        f'<form method="post" action="{target}">{fields}</form>'
        "<script>document.forms[0].submit()</script>"
    )
    page.route(f"{ATTACKER}/**", lambda route: route.fulfill(body=attack, content_type="text/html"))

    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.goto(f"{ATTACKER}/prize.html")
    assert answer.value.status == 403
    page.wait_for_load_state()
    expect(page.locator("#flash")).not_to_be_empty()
    assert not _paused(manager, "reports")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_foreign_origin_and_bad_credentials_are_refused(page: Page, manager: Manager) -> None:
    page.goto("/")
    pause = queue_row(page, "reports").locator('form[data-action="pause"]')
    target, body = action_url(page, pause), form_body(pause)
    parts = urllib.parse.urlsplit(page.url)
    origin = f"{parts.scheme}://{parts.netloc}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    good = _basic(*AUTH)

    refused = {
        "a foreign Origin": {"Origin": "http://attacker.example", "Authorization": good},
        "no credentials": {"Origin": origin},
        "a wrong password": {"Origin": origin, "Authorization": _basic(AUTH[0], "guess")},
    }
    for why, headers in refused.items():
        response = page.request.post(
            target, headers={**form, **headers}, data=body, max_redirects=0
        )
        assert response.status == 403, f"{why}: answered {response.status}"
        assert not _paused(manager, "reports"), f"{why}: the queue was paused"

    # The same request from this site with the credentials is taken: each
    # refusal above was for the reason it names.
    headers = {**form, "Origin": origin, "Authorization": good}
    response = page.request.post(target, headers=headers, data=body, max_redirects=0)
    assert response.status == 303, f"answered {response.status}"
    assert _paused(manager, "reports")
    manager.resume("reports")


def test_post_without_credentials_is_refused(
    browser: Browser, base_url: str, manager: Manager
) -> None:
    """A browser that never logged in sees the forms, and is refused."""
    context = new_context(browser, base_url)
    try:
        page = context.new_page()
        page.goto("/")
        before = manager.stats().queues["reports"].workers
        scale = queue_row(page, "reports").locator('form[data-action="scale"]')
        scale.locator('input[name="count"]').fill(str(before + 5))
        answer = submit(page, scale)
        assert answer.status == 403, f"scale answered {answer.status}"
        expect(page.locator("#flash")).not_to_be_empty()
        assert manager.stats().queues["reports"].workers == before

        page.goto("/")
        answer = submit(page, queue_row(page, "reports").locator('form[data-action="pause"]'))
        assert answer.status == 403, f"pause answered {answer.status}"
        expect(page.locator("#flash")).not_to_be_empty()
        assert not _paused(manager, "reports")
    finally:
        context.close()


def test_serve_http_binds_loopback_by_default(manager: Manager) -> None:
    url = manager.serve_http()
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname == "127.0.0.1", url
    assert parts.port is not None
    with socket.create_connection(("127.0.0.1", parts.port), timeout=5):
        pass


def test_serve_http_is_not_reachable_on_other_addresses(manager: Manager) -> None:
    # Bound to 127.0.0.1 alone, the kernel hands it no connection made to any
    # other address of this machine; the socket table says what it is bound
    # to (no traffic to another address needed to show it).
    port = urllib.parse.urlsplit(manager.serve_http()).port
    assert port is not None
    assert listening_on(port) == {"127.0.0.1"}


def test_arguments_need_credentials(browser: Browser, base_url: str, hostile: str) -> None:
    """A browser without the credentials is not shown a job's arguments."""
    context = new_context(browser, base_url)
    try:
        page = context.new_page()
        response = page.goto(f"/jobs/{hostile}?arguments=1")
        assert response is not None
        assert response.status in (401, 403), f"answered {response.status}"
        expect(page.locator("pre#arguments")).to_have_count(0)
        api = page.request.get(f"/api/jobs/{hostile}?arguments=1")
        assert api.status in (401, 403), f"the API answered {api.status}"
    finally:
        context.close()


def _login_cookies(context: BrowserContext) -> list[Cookie]:
    return [c for c in context.cookies() if c.get("name") == LOGIN_COOKIE]


def test_token_login_sets_a_cookie_that_is_not_the_token(
    browser: Browser, manager: Manager
) -> None:
    token = "t0ken-" + "x" * 26
    served = manager.serve_http(auth=token)
    context = new_context(browser, served)
    try:
        page = context.new_page()
        page.goto("/login")
        page.locator('form#login input[name="token"]').fill("not-the-token")
        assert submit(page, page.locator("form#login")).status == 403
        assert _login_cookies(context) == []

        page.locator('form#login input[name="token"]').fill(token)
        assert submit(page, page.locator("form#login")).status == 303
        (cookie,) = _login_cookies(context)
        assert cookie.get("httpOnly") is True
        assert cookie.get("sameSite") == "Strict"
        assert token not in cookie.get("value", token)

        page.goto("/")
        answer = submit(page, queue_row(page, "reports").locator('form[data-action="pause"]'))
        assert answer.status == 303, f"pause answered {answer.status}"
        wait_until(lambda: _paused(manager, "reports"), TIMEOUT, "reports paused")
        answer = submit(page, queue_row(page, "reports").locator('form[data-action="resume"]'))
        assert answer.status == 303, f"resume answered {answer.status}"
        assert not _paused(manager, "reports")

        # Logged out, the same form is refused.
        page.goto("/login")
        assert submit(page, page.locator('form[data-action="logout"]')).status == 303
        assert _login_cookies(context) == []
        page.goto("/")
        answer = submit(page, queue_row(page, "reports").locator('form[data-action="pause"]'))
        assert answer.status == 403, f"pause answered {answer.status}"
        assert not _paused(manager, "reports")
    finally:
        context.close()


def test_without_credentials_configured_it_is_read_only(browser: Browser, manager: Manager) -> None:
    served = manager.serve_http()
    context = new_context(browser, served)
    try:
        page = context.new_page()
        page.goto("/")
        pause = queue_row(page, "reports").locator('form[data-action="pause"]')
        expect(pause.locator(SUBMIT)).to_be_disabled()
        response = page.request.post(
            action_url(page, pause), form={"queue": "reports"}, max_redirects=0
        )
        assert response.status == 403, f"answered {response.status}"
        assert not _paused(manager, "reports")
    finally:
        context.close()
