"""The dashboard mounted under a prefix in a service's own Starlette app:
every link, form, script and poll of its pages stays under that prefix, and
its forms work there."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from supervisor import Manager
from supervisor import http as api
from tests.runtime.support import wait_until

from .conftest import TIMEOUT, new_context
from .pages import AUTH, expect, queue_row, submit

if TYPE_CHECKING:
    from playwright.sync_api import Browser
    from playwright.sync_api import Request as BrowserRequest

pytestmark = [pytest.mark.browser, pytest.mark.processes]

PREFIX = "/ops/jobs"
# The URLs, as the page resolves them, of the elements that are not under base.
OUTSIDE = """(found, base) => found
    .map(e => e.getAttribute("href") ?? e.getAttribute("action") ?? e.getAttribute("src"))
    .map(given => new URL(given, document.baseURI).href)
    .filter(url => !url.startsWith(base))"""


@pytest.fixture(scope="module")
def service(manager: Manager) -> Iterator[str]:
    """A service of its own on loopback, the dashboard under PREFIX; its base URL."""

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the service's own page")

    routes = [Route("/", hello), Mount(PREFIX, app=api.app(manager, auth=AUTH))]
    config = uvicorn.Config(Starlette(routes=routes), host="127.0.0.1", port=0, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)


def test_pages_stay_under_the_prefix(browser: Browser, service: str, manager: Manager) -> None:
    mounted = f"{service}{PREFIX}/"
    user, password = AUTH
    context = new_context(
        browser, mounted, http_credentials={"username": user, "password": password}
    )
    requested: list[str] = []

    def note(request: BrowserRequest) -> None:
        requested.append(request.url)

    try:
        page = context.new_page()
        page.on("request", note)
        page.goto(f"{mounted}login")
        expect(page).to_have_url(mounted)
        expect(queue_row(page, "reports")).to_be_visible()

        links = page.locator("nav#nav a").evaluate_all("links => links.map(a => a.href)")
        assert len(links) >= 5, links
        for link in links:
            assert link.startswith(mounted), f"nav link {link} leaves {PREFIX}"
            response = page.goto(link)
            assert response is not None and response.status == 200, link
        pointers = page.locator("a[href], form[action], script[src], link[href]")
        outside = pointers.evaluate_all(OUTSIDE, mounted)
        assert outside == [], f"the last page points outside {PREFIX}: {outside}"

        page.goto(mounted)
        answer = submit(page, queue_row(page, "reports").locator('form[data-action="pause"]'))
        assert answer.status == 303, f"pause answered {answer.status}"
        assert answer.url.startswith(mounted), answer.url
        expect(page).to_have_url(mounted)
        wait_until(lambda: manager.stats().queues["reports"].paused, TIMEOUT, "reports paused")
        answer = submit(page, queue_row(page, "reports").locator('form[data-action="resume"]'))
        assert answer.status == 303, f"resume answered {answer.status}"
        assert not manager.stats().queues["reports"].paused

        # Its live poll asks under the prefix too (wait for one more).
        with page.expect_request(lambda r: r.resource_type in ("fetch", "xhr")):
            pass
        strays = [url for url in requested if not url.startswith(mounted)]
        assert strays == [], f"the pages asked outside {PREFIX}: {strays}"
    finally:
        context.close()
