"""The web dashboard without a browser: its pages against a real Manager,
the escaping of attacker data, its headers, refused and done actions, the
login flows, revealing arguments, keyset paging, mounting under a prefix,
and a storage opened directly (no tally, no workers)."""

from __future__ import annotations

import base64
import datetime as dt
import html.parser
import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from storage import MemoryStorage, Status
from supervisor import Manager
from supervisor import http as api
from supervisor.access import COOKIE
from supervisor.dashboard.render import CSP
from supervisor.storage_ops import StorageOperations
from tests.runtime.jobs import DIR_VAR, AlwaysFails, Returns, lines
from tests.runtime.support import wait_until

from .conftest import TIMEOUT, InProcess, dead_job, scheduled_job, succeeded_job

pytestmark = pytest.mark.processes

TOKEN = "dashboard-token"
USER = ("operator", "pass:word")
PAYLOAD = "<script>alert(1)</script><img src=x onerror=alert(1)>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PAGES = ("/", "/arbiters", "/jobs", "/dead", "/schedules", "/login")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# -- a small DOM, enough to find what the page contract names ------------------------


class Element:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Element | str] = []

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def walk(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.walk()

    def find(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Descendants of ``tag`` whose attributes include ``attrs`` (data_x is data-x)."""
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            e
            for e in self.walk()
            if (tag is None or e.tag == tag) and all(e.attrs.get(k) == v for k, v in wanted.items())
        ]

    def one(self, tag: str | None = None, **attrs: str) -> Element:
        found = self.find(tag, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} {attrs}>"
        return found[0]


_VOID = {"meta", "link", "input", "img", "br", "hr", "line", "polyline"}


class _Parser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self.at = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.at)
        self.at.children.append(element)
        if tag not in _VOID:
            self.at = element

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.at
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.at = node.parent

    def handle_data(self, data: str) -> None:
        self.at.children.append(data)


def dom(response: httpx.Response) -> Element:
    parser = _Parser()
    parser.feed(response.text)
    return parser.root


def flash(response: httpx.Response) -> str:
    return dom(response).one(id="flash").text.strip()


def is_paused(manager: Manager, queue: str) -> bool:
    figures = manager.stats().queues.get(queue)
    return figures is not None and figures.paused


def cookie(response: httpx.Response, name: str) -> str:
    """``name=value`` of the cookie the response sets, for a Cookie header."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header.split(";")[0]
    raise AssertionError(f"no {name} cookie set: {response.headers}")


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def open_app(manager: Manager) -> InProcess:
    return InProcess(api.app(manager))


@pytest.fixture
def token_app(manager: Manager) -> InProcess:
    return InProcess(api.app(manager, auth=TOKEN))


@pytest.fixture
def basic_app(manager: Manager) -> InProcess:
    return InProcess(api.app(manager, auth=USER))


@pytest.fixture(scope="module")
def hostile(manager: Manager) -> dict[str, uuid.UUID]:
    """Jobs whose arguments, error and result are markup, and a queue named so."""
    dead = dead_job(manager, PAYLOAD)
    done = succeeded_job(manager, PAYLOAD)
    queued = manager.schedule(Returns(value=PAYLOAD), dt.timedelta(hours=1), queue=PAYLOAD)
    return {"dead": dead, "done": done, "queued": queued}


# -- escaping -------------------------------------------------------------------------


def test_every_page_shows_attacker_data_as_text(
    manager: Manager, token_app: InProcess, hostile: dict[str, uuid.UUID]
) -> None:
    dead, done = hostile["dead"], hostile["done"]
    shown = {
        "/": False,
        "/arbiters": False,
        "/jobs": True,
        f"/jobs?queue={urllib.parse.quote(PAYLOAD)}": True,
        "/dead": True,
        "/schedules": False,
        f"/jobs/{dead}": True,
        f"/jobs/{dead}?arguments=1": True,
        f"/jobs/{done}": True,
        f"/jobs/{done}?arguments=1": True,
    }
    for path, carries_payload in shown.items():
        response = token_app.get(path, headers=BEARER)
        assert response.status_code == 200, path
        body = response.text
        assert "<script>alert" not in body and "<img src=x" not in body, path
        if carries_payload:
            assert ESCAPED in body, path
    # The live JSON carries the name as data, and its row's markup escaped.
    live = token_app.get("/live/overview")
    assert live.headers["content-type"] == "application/json"
    entry = next(q for q in live.json()["queues"] if q["name"] == PAYLOAD)
    assert ESCAPED in entry["row"] and "<script>alert" not in entry["row"]
    # The queue named with markup has its row, its name as text.
    overview = dom(token_app.get("/"))
    assert overview.one("tr", data_queue=PAYLOAD).find("th")[0].text == PAYLOAD
    job = dom(token_app.get(f"/jobs/{dead}?arguments=1", headers=BEARER))
    assert f"always fails: {PAYLOAD}" in job.one("pre", id="last-error").text
    assert "Traceback" in job.one("pre", id="last-error").text
    assert PAYLOAD in job.one("pre", id="arguments").text
    assert PAYLOAD in dom(token_app.get(f"/jobs/{done}")).one("pre", id="result").text


def test_every_answer_carries_the_security_headers(
    manager: Manager, token_app: InProcess, hostile: dict[str, uuid.UUID]
) -> None:
    answers = [token_app.get(path) for path in PAGES]
    answers += [
        token_app.get(f"/jobs/{hostile['dead']}"),
        token_app.get(f"/jobs/{uuid.UUID(int=1)}"),  # 404 page
        token_app.get("/jobs/not-an-id"),
        token_app.get("/jobs?status=nonsense"),  # 400 page
        token_app.get("/live/overview"),
        token_app.get("/static/dashboard.js"),
        token_app.get("/static/dashboard.css"),
        token_app.post("/actions/pause", data={"queue": "x"}),  # refused
        token_app.post("/actions/pause", data={"queue": "dash-h"}, headers=BEARER),  # 303
    ]
    token_app.post("/actions/resume", data={"queue": "dash-h"}, headers=BEARER)
    assert {a.status_code for a in answers} == {200, 303, 400, 403, 404}
    for answer in answers:
        assert answer.headers["content-security-policy"] == CSP, answer.url
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
    for path in PAGES:
        page = dom(token_app.get(path))
        assert page.one("title").text.startswith("jobarbiter — ")
        assert page.one("nav", id="nav").find("a")
        # No inline script or style: the CSP would block them.
        assert all(s.attrs.get("src") for s in page.find("script"))
        assert not page.find("style") and not any("style" in e.attrs for e in page.walk())


def test_unknown_job_is_a_404_page(token_app: InProcess) -> None:
    for path in (f"/jobs/{uuid.UUID(int=1)}", "/jobs/not-an-id"):
        missing = token_app.get(path)
        assert missing.status_code == 404
        assert "no job" in flash(missing) or "not a job id" in flash(missing)


# -- refusing changes -----------------------------------------------------------------


def _state(manager: Manager, queue: str, job: uuid.UUID, dead: uuid.UUID) -> tuple[Any, ...]:
    stats = manager.stats()
    figures = stats.queues.get(queue)
    info, dead_info = manager.info(job), manager.info(dead)
    assert info is not None and dead_info is not None
    return (
        None if figures is None else (figures.paused, figures.workers),
        info.status,
        dead_info.status,
        len(manager.jobs(status="dead", limit=1000)),
    )


def test_refused_posts_change_nothing(
    manager: Manager, token_app: InProcess, open_app: InProcess
) -> None:
    queue = "default"
    job = scheduled_job(manager)
    dead = dead_job(manager, "refused")
    before = _state(manager, queue, job, dead)
    actions = {
        "pause": {"queue": queue},
        "resume": {"queue": queue},
        "scale": {"queue": queue, "count": "0"},
        "cancel": {"job": str(job)},
        "retry": {"job": str(dead)},
        "retry-all": {},
        "purge": {},
    }
    refusals = [
        (token_app, {}),  # no credentials
        (token_app, {"Authorization": "Bearer guess"}),
        (token_app, {"Authorization": f"Basic {TOKEN}"}),
        (token_app, {"Cookie": f"{COOKIE}=forged"}),
        (token_app, {**BEARER, "Origin": "http://evil.example"}),
        (token_app, {**BEARER, "Sec-Fetch-Site": "cross-site"}),
        (token_app, {**BEARER, "Sec-Fetch-Site": "same-site"}),
        (open_app, BEARER),  # read-only: no credentials configured
    ]
    for action, form in actions.items():
        for client, headers in refusals:
            refused = client.post(f"/actions/{action}", data=form, headers=headers)
            assert refused.status_code == 403, (action, headers)
            said = flash(refused)
            assert "refused" in said or "credentials" in said or "read-only" in said
    assert _state(manager, queue, job, dead) == before
    # Read-only: the forms are there, their buttons off.
    overview = dom(open_app.get("/"))
    assert all("disabled" in b.attrs for b in overview.one(id="queues").find("button"))


def test_actions_with_credentials(manager: Manager, token_app: InProcess) -> None:
    queue = "dash-actions"
    paused = token_app.post(
        "/actions/pause",
        data={"queue": queue, "back": "/jobs?queue=x"},
        headers={**BEARER, "Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert paused.status_code == 303 and paused.headers["location"] == "/jobs?queue=x"
    assert is_paused(manager, queue)
    shown = token_app.get("/jobs?queue=x", headers={"Cookie": cookie(paused, "jobarbiter_flash")})
    assert flash(shown) == f"paused {queue}"
    assert flash(token_app.get("/jobs?queue=x")) == ""  # a flash is not forged by a link

    resumed = token_app.post("/actions/resume", data={"queue": queue}, headers=BEARER)
    assert resumed.status_code == 303 and resumed.headers["location"] == "/"
    assert not is_paused(manager, queue)

    # A "back" that leaves the app goes to the overview instead.
    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        away = token_app.post(
            "/actions/pause", data={"queue": queue, "back": elsewhere}, headers=BEARER
        )
        assert away.headers["location"] == "/"
    token_app.post("/actions/resume", data={"queue": queue}, headers=BEARER)

    scaled = token_app.post("/actions/scale", data={"queue": queue, "count": "2"}, headers=BEARER)
    assert scaled.status_code == 303 and manager.stats().queues[queue].workers == 2
    bad = token_app.post("/actions/scale", data={"queue": queue, "count": "-1"}, headers=BEARER)
    assert bad.status_code == 400 and "count" in flash(bad)
    token_app.post("/actions/scale", data={"queue": queue, "count": "0"}, headers=BEARER)

    job = scheduled_job(manager)
    page = dom(token_app.get(f"/jobs/{job}"))
    assert page.one("form", data_action="cancel") and not page.find("form", data_action="retry")
    cancelled = token_app.post("/actions/cancel", data={"job": str(job)}, headers=BEARER)
    assert cancelled.status_code == 303
    assert manager.info(job).status is Status.CANCELLED  # type: ignore[union-attr]

    dead = dead_job(manager, "retried")
    page = dom(token_app.get(f"/jobs/{dead}"))
    assert page.one("form", data_action="retry") and not page.find("form", data_action="cancel")
    dead_page = dom(token_app.get("/dead"))
    assert dead_page.one("tr", data_job=str(dead)).one("form", data_action="retry")
    retried = token_app.post("/actions/retry", data={"job": str(dead)}, headers=BEARER)
    assert retried.status_code == 303
    assert urllib.parse.unquote(cookie(retried, "jobarbiter_flash")).startswith(
        f"jobarbiter_flash=retried {dead}"
    )
    # It runs (and dies) again: retried, not just said to be.
    wait_until(lambda: _died_again(manager, dead), TIMEOUT, "the retried job dead again")

    dead_job(manager, "all")
    all_dead = len(manager.jobs(status="dead", limit=1000))
    retry_all = token_app.post("/actions/retry-all", headers=BEARER)
    assert retry_all.status_code == 303
    left = cookie(retry_all, "jobarbiter_flash")
    assert f"retried {all_dead} dead job" in urllib.parse.unquote(left)
    wait_until(
        lambda: len(manager.jobs(status="dead", limit=1000)) == all_dead, TIMEOUT, "all dead again"
    )
    purged = token_app.post("/actions/purge", headers=BEARER)
    assert purged.status_code == 303 and manager.jobs(status="dead") == []


def _died_again(manager: Manager, job: uuid.UUID) -> bool:
    info = manager.info(job)
    assert info is not None
    # AlwaysFails dies after 3 attempts; retried once, it has run 6 times.
    runs = sum(1 for f in lines(Path(os.environ[DIR_VAR]), "fails.log") if f[0] == "retried")
    return info.status is Status.DEAD and runs == 6


# -- logging in -----------------------------------------------------------------------


def test_basic_login(manager: Manager, basic_app: InProcess) -> None:
    challenged = basic_app.get("/login")
    assert challenged.status_code == 401
    assert challenged.headers["www-authenticate"].startswith('Basic realm="jobarbiter"')
    assert "credentials required" in flash(challenged)
    assert basic_app.get("/login", headers=basic(USER[0], "guess")).status_code == 401
    welcomed = basic_app.get("/login", headers=basic(*USER))
    assert welcomed.status_code == 303 and welcomed.headers["location"] == "/"
    # The browser then sends them with each request: actions work.
    paused = basic_app.post("/actions/pause", data={"queue": "dash-basic"}, headers=basic(*USER))
    assert paused.status_code == 303 and is_paused(manager, "dash-basic")
    basic_app.post("/actions/resume", data={"queue": "dash-basic"}, headers=basic(*USER))
    # A token form is not a way around basic auth.
    assert basic_app.post("/login", data={"token": USER[1]}).status_code == 403
    # The nav tells a browser that sends them that it is signed in, and no other.
    assert (
        dom(basic_app.get("/", headers=basic(*USER))).one("a", **{"class": "login"}).text
        == "Signed in"
    )
    assert dom(basic_app.get("/")).one("a", **{"class": "login"}).text == "Log in"


def test_token_login(manager: Manager, token_app: InProcess) -> None:
    form = dom(token_app.get("/login"))
    assert form.one("form", id="login").one("input", name="token")
    wrong = token_app.post("/login", data={"token": "guess"})
    assert wrong.status_code == 403 and "wrong token" in flash(wrong)
    assert COOKIE not in wrong.headers.get("set-cookie", "")
    cross = token_app.post(
        "/login", data={"token": TOKEN}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403 and COOKIE not in cross.headers.get("set-cookie", "")

    logged_in = token_app.post("/login", data={"token": TOKEN})
    assert logged_in.status_code == 303 and logged_in.headers["location"] == "/"
    header = next(h for h in logged_in.headers.get_list("set-cookie") if h.startswith(COOKIE))
    attributes = header.lower()
    assert "httponly" in attributes and "samesite=strict" in attributes
    session = cookie(logged_in, COOKIE)
    assert TOKEN not in session  # an HMAC of it, never the token

    queue = "dash-token"
    paused = token_app.post("/actions/pause", data={"queue": queue}, headers={"Cookie": session})
    assert paused.status_code == 303 and is_paused(manager, queue)
    from_elsewhere = token_app.post(
        "/actions/resume",
        data={"queue": queue},
        headers={"Cookie": session, "Sec-Fetch-Site": "cross-site"},
    )
    assert from_elsewhere.status_code == 403 and is_paused(manager, queue)
    resumed = token_app.post("/actions/resume", data={"queue": queue}, headers={"Cookie": session})
    assert resumed.status_code == 303 and not is_paused(manager, queue)
    # Another token's cookie is refused.
    other = InProcess(api.app(manager, auth="another-token"))
    assert (
        other.post("/actions/pause", data={"queue": queue}, headers={"Cookie": session}).status_code
        == 403
    )

    logged_out = token_app.post("/logout", headers={"Cookie": session})
    assert logged_out.status_code == 303 and f'{COOKIE}=""' in logged_out.headers["set-cookie"]


def test_arguments_are_hidden_and_need_credentials(
    manager: Manager, token_app: InProcess, open_app: InProcess
) -> None:
    # Not run, so no result shows the value.
    job = manager.schedule(Returns(value={"secret": "hunter2"}), dt.timedelta(hours=1))
    page = dom(token_app.get(f"/jobs/{job}"))
    assert not page.find(id="arguments") and "hunter2" not in token_app.get(f"/jobs/{job}").text
    link = page.one("a", id="show-arguments")
    assert link.attrs["href"] == f"/jobs/{job}?arguments=1"

    refused = token_app.get(f"/jobs/{job}?arguments=1")
    assert refused.status_code == 403 and "hunter2" not in refused.text
    assert "credentials" in flash(refused)
    wrong = token_app.get(f"/jobs/{job}?arguments=1", headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 403 and "hunter2" not in wrong.text
    shown = dom(token_app.get(f"/jobs/{job}?arguments=1", headers=BEARER))
    assert '"secret": "hunter2"' in shown.one("pre", id="arguments").text
    # Without credentials configured, anyone may ask.
    assert "hunter2" in dom(open_app.get(f"/jobs/{job}?arguments=1")).one(id="arguments").text
    manager.cancel(job)


# -- the pages' content ---------------------------------------------------------------


def test_job_page_fields(manager: Manager, open_app: InProcess) -> None:
    job = succeeded_job(manager, [1, "two"])
    info = manager.info(job)
    assert info is not None
    page = dom(open_app.get(f"/jobs/{job}"))
    card = page.one(id="job")
    fields = {e.attrs["data-field"]: e.text for e in card.find() if "data-field" in e.attrs}
    assert set(fields) == {
        "id", "name", "queue", "status", "priority", "attempts", "retry_count", "max_retries",
        "run_at", "enqueued_at", "started_at", "finished_at", "runner", "unique_key",
    }  # fmt: skip
    assert fields["id"] == str(job) and fields["status"] == "succeeded"
    assert fields["attempts"] == "1" and fields["name"] == Returns.NAME
    assert fields["priority"] == "0"
    assert fields["finished_at"].endswith("UTC")
    assert page.one("pre", id="result").text == '[\n  1,\n  "two"\n]'
    assert not page.find("form", data_action="cancel") and not page.find(
        "form", data_action="retry"
    )
    assert page.one(id="last-error").text == "none" and not page.find(id="parents")


def test_job_page_links_its_parents(manager: Manager, open_app: InProcess) -> None:
    parent = succeeded_job(manager, "first")
    child = manager.queue(Returns(value="second"), after=[parent])
    manager.wait(child, timeout=TIMEOUT)
    page = dom(open_app.get(f"/jobs/{child}"))
    links = page.one("ul", id="parents").find("a")
    assert [(a.attrs["href"], a.text) for a in links] == [(f"/jobs/{parent}", str(parent))]


def test_jobs_filter_and_keyset_pages(manager: Manager, open_app: InProcess) -> None:
    queue = "dash-pages"
    later = dt.timedelta(hours=1)
    ids = [manager.schedule(Returns(value=i), later, queue=queue) for i in range(7)]
    filter_form = dom(open_app.get("/jobs")).one("form", id="filter")
    assert filter_form.attrs["method"] == "get"
    assert filter_form.one("select", name="status") and filter_form.one("input", name="queue")
    assert filter_form.one("input", name="name")

    seen: list[str] = []
    path: str | None = f"/jobs?queue={queue}&status=scheduled&name={Returns.NAME}&limit=3"
    pages = 0
    while path is not None:
        page = dom(open_app.get(path))
        table = page.one("table", id="jobs")
        found = [e.attrs["data-job"] for e in table.walk() if "data-job" in e.attrs]
        assert len(found) <= 3
        for row_id in found:
            link = page.one("tr", data_job=row_id).find("a")[0]
            assert link.attrs["href"] == f"/jobs/{row_id}"
        seen += found
        pages += 1
        following = page.find("a", rel="next")
        if following:
            href = following[0].attrs["href"]
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)
            # Keyset: the next page starts after this page's last id, filters kept.
            assert query["after"] == [found[-1]] and query["queue"] == [queue]
            assert query["status"] == ["scheduled"] and query["name"] == [Returns.NAME]
            path = href
        else:
            path = None
    assert seen == [str(i) for i in ids] and pages == 3
    # Another name: none of them.
    other = dom(open_app.get(f"/jobs?queue={queue}&name=no.such.Job"))
    assert not [e for e in other.walk() if "data-job" in e.attrs]
    for job in ids:
        manager.cancel(job)


def test_overview_live_and_throughput(manager: Manager, open_app: InProcess) -> None:
    queue = "dash-live"
    before = open_app.get("/live/overview").json()
    assert queue not in [q["name"] for q in before["queues"]]
    job = manager.schedule(Returns(value=1), dt.timedelta(hours=1), queue=queue)
    after = open_app.get("/live/overview").json()
    entry = next(q for q in after["queues"] if q["name"] == queue)
    assert entry["cells"]["scheduled"] == {"text": "1", "estimate": False}
    assert entry["cells"]["paused"]["text"] == "no"
    row = dom(httpx.Response(200, text=entry["row"]))
    assert row.one("tr", data_queue=queue).one("td", data_field="pending").text == "1"
    assert row.one("form", data_action="scale").one("input", name="count")
    manager.cancel(job)

    succeeded_job(manager)
    overview = dom(open_app.get("/"))
    section = overview.one(id="throughput")
    assert section.attrs["data-live"] == "/live/overview"
    assert section.one("svg").one("polyline").attrs["points"]
    default = overview.one("tr", data_queue="default")
    fields = [td.attrs["data-field"] for td in default.find("td") if "data-field" in td.attrs]
    assert fields == [
        "pending", "priorities", "scheduled", "waiting", "running", "dead",
        "paused", "slots", "workers", "oldest", "rate",
    ]  # fmt: skip
    assert float(default.one("td", data_field="rate").text) > 0
    recent = manager.stats().queues["default"].recent
    assert recent is not None and sum(recent.counts) >= 1


def test_arbiters_page_and_in_flight(manager: Manager, open_app: InProcess) -> None:
    slow = manager.queue(Returns(value="slow", seconds=3.0), queue="default")

    def running() -> bool:
        arbiter = manager.stats().arbiters[0]
        return any(j.id == slow for j in arbiter.in_flight) and arbiter.cpu is not None

    wait_until(running, TIMEOUT, "the slow job in flight, CPU measured")
    flight = next(j for j in manager.stats().arbiters[0].in_flight if j.id == slow)
    assert flight.name == Returns.NAME and flight.queue == "default" and flight.seconds >= 0
    page = dom(open_app.get("/arbiters"))
    row = page.one("tr", data_arbiter="0")
    fields = {td.attrs["data-field"] for td in row.find("td")}
    assert fields == {
        "pid", "state", "rss", "cpu", "restarts", "recycles", "last_exit", "last_error",
        "in_flight",
    }  # fmt: skip
    assert row.one("td", data_field="pid").text == str(manager.stats().arbiters[0].pid)
    assert row.one("td", data_field="rss").text.endswith("MiB")
    in_flight = row.one("td", data_field="in_flight")
    assert in_flight.find("a", href=f"/jobs/{slow}") and "running" in in_flight.text
    manager.wait(slow, timeout=TIMEOUT)
    assert not any(j.id == slow for j in manager.stats().arbiters[0].in_flight)


def test_schedules_page(manager: Manager, open_app: InProcess) -> None:
    manager.every(dt.timedelta(hours=2), AlwaysFails(tag="every"))
    manager.every(dt.timedelta(hours=3), AlwaysFails(tag="every-again"))
    schedules = manager.stats().schedules
    names = {s.name for s in schedules if s.job == AlwaysFails.NAME}
    assert names == {f"{AlwaysFails.NAME} every 7200", f"{AlwaysFails.NAME} every 10800"}
    page = dom(open_app.get("/schedules"))
    row = page.one("tr", data_schedule=f"{AlwaysFails.NAME} every 10800")
    cells = {td.attrs["data-field"]: td.text for td in row.find("td")}
    assert cells["kind"] == "every" and cells["spec"].startswith("10800")
    assert cells["job"] == AlwaysFails.NAME and cells["queue"] == "default"
    assert cells["next_run"].endswith("UTC")
    assert cells["shared"] == "this host's own"  # memory storage: per host
    nightly = manager.cron("0 3 * * *", AlwaysFails(tag="nightly"), tz="Europe/Paris")
    row = dom(open_app.get("/schedules")).one("tr", data_schedule=nightly.name)
    cells = {td.attrs["data-field"]: td.text for td in row.find("td")}
    assert cells["kind"] == "cron" and cells["spec"] == "0 3 * * * (Europe/Paris)"


# -- mounted in a user's app ----------------------------------------------------------


def test_mounted_under_a_prefix(manager: Manager, hostile: dict[str, uuid.UUID]) -> None:
    service = Starlette(routes=[Mount("/ops/jobarbiter", app=api.app(manager, auth=TOKEN))])
    client = InProcess(service)
    prefix = "/ops/jobarbiter"
    done = hostile["done"]  # the dead one may be purged by now
    for path in (*PAGES, f"/jobs/{done}", "/jobs?status=succeeded&limit=1"):
        response = client.get(prefix + path, headers=BEARER)
        assert response.status_code == 200, path
        links = [
            e.attrs[a]
            for e in dom(response).walk()
            for a in ("href", "src", "action", "data-live")
            if a in e.attrs
        ]
        assert links and all(link.startswith(prefix + "/") for link in links), (path, links)
        back = [e.attrs["value"] for e in dom(response).find("input", name="back")]
        assert all(value.startswith("/") and not value.startswith(prefix) for value in back)
    assert client.get(prefix + "/static/dashboard.js").status_code == 200
    assert client.get(prefix + "/api/stats").status_code == 200
    paused = client.post(
        prefix + "/actions/pause", data={"queue": "dash-mounted", "back": "/dead"}, headers=BEARER
    )
    assert paused.status_code == 303 and paused.headers["location"] == prefix + "/dead"
    assert f"Path={prefix}" in paused.headers["set-cookie"]
    client.post(prefix + "/actions/resume", data={"queue": "dash-mounted"}, headers=BEARER)
    logged_in = client.post(prefix + "/login", data={"token": TOKEN})
    assert logged_in.headers["location"] == prefix + "/"


# -- a storage opened directly --------------------------------------------------------


def test_storage_opened_directly() -> None:
    storage = MemoryStorage()
    storage.push(Returns(value=PAYLOAD).to_new())
    client = InProcess(api.app(StorageOperations(storage), auth=TOKEN))
    overview = dom(client.get("/"))
    section = overview.one(id="throughput")
    assert not section.find("svg") and "no throughput history" in section.text
    row = overview.one("tr", data_queue="default")
    assert row.one("td", data_field="pending").text == "1"
    assert row.one("td", data_field="rate").text == "—"
    assert client.get("/live/overview").json()["chart"]["available"] is False
    assert "No arbiter" in client.get("/arbiters").text
    scaled = client.post("/actions/scale", data={"queue": "default", "count": "2"}, headers=BEARER)
    assert scaled.status_code == 501 and flash(scaled)
    paused = client.post("/actions/pause", data={"queue": "default"}, headers=BEARER)
    assert paused.status_code == 303 and storage.paused() == frozenset({"default"})


def test_pending_by_priority_has_a_cell_kept_live() -> None:
    storage = MemoryStorage()
    storage.push_many([Returns(value=PAYLOAD).to_new() for _ in range(1200)])
    client = InProcess(api.app(StorageOperations(storage), auth=TOKEN))
    row = dom(client.get("/")).one("tr", data_queue="default")
    assert row.one("td", data_field="priorities").text == ""  # one level: the pending cell says it
    assert row.one("td", data_field="pending").text == "1200"
    urgent = Returns(value=PAYLOAD).to_new()._replace(priority=10)
    storage.push_many([urgent] * 3)
    row = dom(client.get("/")).one("tr", data_queue="default")
    cell = row.one("td", data_field="priorities")
    assert cell.text == "10: 3 · 0: 1,200" and "data-estimate" not in cell.attrs
    live = client.get("/live/overview").json()["queues"][0]
    assert live["cells"]["priorities"] == {"text": "10: 3 · 0: 1,200", "estimate": False}
    assert live["cells"]["pending"]["text"] == "1203"


def test_served_by_serve_http(manager: Manager) -> None:
    url = manager.serve_http()
    with urllib.request.urlopen(f"{url}/", timeout=TIMEOUT) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Security-Policy"] == CSP
        assert "jobarbiter — Overview" in answer.read().decode()
    with urllib.request.urlopen(f"{url}/api/stats", timeout=TIMEOUT) as answer:
        assert answer.status == 200
