"""Fixtures of the dashboard's browser tests: a real Manager per module (one
arbiter, memory storage, the queues of tests/browser/jobs.py) serving the
dashboard with basic auth, Debian's Chromium driven by Playwright's sync API
(one browser per module, a fresh context per test), and a page per test
that has logged in and records every dialog it is shown.

Playwright never downloads a browser here: it launches the Chromium named
by $JOBARBITER_CHROMIUM, or the one on PATH (Debian's package ``chromium``).
Without one, or without the playwright package, the browser tests skip,
saying what to install; under CI (``CI`` set) they fail instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from supervisor import Job, Manager, Status, WorkerConfig
from tests.runtime.support import all_running, wait_until

from .jobs import DIR_VAR, FailsOnce, Held, Hostile, Quick, Slow, Tally
from .pages import AUTH, VIEWPORT, Dialogs

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM_VAR = "JOBARBITER_CHROMIUM"
TIMEOUT = 20.0  # seconds of any wait on the jobs or the Manager


def _unavailable(reason: str) -> NoReturn:
    """Skip the test for a missing tool, or fail it under CI, where the
    browser tests must run (.ci/ensure-chromium installs Chromium)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so the browser tests must run")
    pytest.skip(reason)


def chromium_path() -> str:
    """The Chromium to launch: $JOBARBITER_CHROMIUM, else ``chromium`` on PATH."""
    named = os.environ.get(CHROMIUM_VAR)
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            pytest.fail(f"${CHROMIUM_VAR} names {named!r}, which is not an executable file")
        return named
    found = shutil.which("chromium")
    if found is None:
        _unavailable("no chromium on PATH: install Debian's package (apt-get install chromium)")
    return found


# Per module, not per session: the sync API runs an event loop in this thread
# while it is started, and the tests after the browser's would find it there
# (asyncio.run() refuses to run inside a running loop).
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    chromium_path()  # before the driver starts, so a skip costs nothing
    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium_path())
    yield launched
    launched.close()


@contextmanager
def started_manager(directory: Path, jobs: Iterable[type[Job]]) -> Iterator[Manager]:
    """One arbiter running ``jobs``, "mail" with 2 workers, until the block ends."""
    with pytest.MonkeyPatch.context() as patch:
        # The jobs' gates and notes are here; spawned arbiters inherit it.
        patch.setenv(DIR_VAR, str(directory))
        config = WorkerConfig()
        for job in jobs:
            config = config.register(job)
        started = config.set_worker_count("mail", 2).start(processes=1)
        try:
            wait_until(lambda: all_running(started, 1), TIMEOUT, "the arbiter running")
            yield started
        finally:
            started.stop(timeout=5)


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    jobs = [Held, Slow, Quick, Tally, FailsOnce, Hostile]
    with started_manager(tmp_path_factory.mktemp("browser"), jobs) as started:
        yield started


@pytest.fixture(scope="module")
def base_url(manager: Manager) -> str:
    """Where the dashboard is served, with basic auth for its changes."""
    return manager.serve_http(auth=AUTH)


def wait_for_status(manager: Manager, job_id: object, status: Status) -> None:
    def reached() -> bool:
        info = manager.info(str(job_id))
        return info is not None and info.status is status

    wait_until(reached, TIMEOUT, f"job {job_id} {status.value}")


def new_context(browser: Browser, base_url: str, **options: Any) -> BrowserContext:
    context = browser.new_context(base_url=base_url, viewport=VIEWPORT, **options)
    # Every wait on the page is bounded, and well within a test's patience.
    context.set_default_timeout(10_000)
    return context


@pytest.fixture
def context(browser: Browser, base_url: str) -> Iterator[BrowserContext]:
    """A browser that holds the operator's credentials (it answers a basic
    auth challenge with them, as a person would at the prompt)."""
    user, password = AUTH
    made = new_context(browser, base_url, http_credentials={"username": user, "password": password})
    yield made
    made.close()


@pytest.fixture
def dialogs() -> Dialogs:
    return Dialogs()


@pytest.fixture
def page(context: BrowserContext, dialogs: Dialogs) -> Page:
    """A page that logged in at /login (and so sends the credentials from
    then on), recording and dismissing any dialog."""
    opened = context.new_page()
    dialogs.watch(opened)
    response = opened.goto("/login")
    assert response is not None and response.ok, "/login did not lead to a page"
    return opened
