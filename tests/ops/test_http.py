"""The HTTP API (supervisor.http) and its client (supervisor.http_client) over a
real Manager: values come back equal to what the Manager answered, every POST
is refused unless it carries the configured credentials from this site, and
``serve`` listens on loopback only, says when its port is taken, and frees it
on close. The JSON form itself (supervisor.jsonview) is tested here too."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from storage import JobInfo, Status
from storage.model import by_priority
from supervisor import Manager, WorkerConfig, jsonview
from supervisor import http as api
from supervisor.http_client import (
    BadRequest,
    HttpError,
    HttpOperations,
    Refused,
    Unreachable,
    Unsupported,
)
from supervisor.stats import ArbiterStats, ManagerStats, QueueFigures
from tests.runtime.jobs import AlwaysFails, Returns
from tests.runtime.support import listening_on

from .conftest import TIMEOUT, InProcess, Recording, dead_job, scheduled_job, succeeded_job

pytestmark = pytest.mark.processes

TOKEN = "s3cret-token"
USER = ("operator", "pass:word")  # a ':' in the password is allowed


@pytest.fixture(scope="module")
def served(manager: Manager) -> Iterator[tuple[Recording, api.HttpServer]]:
    recording = Recording(manager)
    server = api.serve(recording, auth=TOKEN)
    yield recording, server
    server.close()


@pytest.fixture
def remote(served: tuple[Recording, api.HttpServer]) -> Recording:
    """The served Recording, its notes cleared."""
    recording, _ = served
    recording.calls.clear()
    recording.answers.clear()
    return recording


@pytest.fixture
def url(served: tuple[Recording, api.HttpServer]) -> str:
    return served[1].url


@pytest.fixture
def client(remote: Recording) -> InProcess:
    """The app in-process, with basic auth."""
    return InProcess(api.app(remote, auth=USER))


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- round trips ------------------------------------------------------------------


def test_stats_come_back_as_the_managers(manager: Manager, remote: Recording, url: str) -> None:
    succeeded_job(manager)
    dead_job(manager)
    got = HttpOperations(url).stats()
    assert got == remote.answers["stats"]
    queue = got.queues["default"]
    assert queue.ended["succeeded"] >= 1 and queue.ended["dead"] >= 1
    assert queue.run_seconds.count >= 1 and queue.wait_seconds.count >= 1
    assert got.arbiters and got.arbiters[0].state == "running"
    assert isinstance(got.arbiters[0], ArbiterStats)


def test_jobs_and_info_come_back_as_the_managers(
    manager: Manager, remote: Recording, url: str
) -> None:
    done = succeeded_job(manager, {"nested": [1, 2.5, None]})
    dead = dead_job(manager)
    ops = HttpOperations(url)
    listed = ops.jobs(limit=1000)
    # The server asked one more than the page, to know whether another follows.
    assert listed == remote.answers["jobs"][:1000]
    assert {done, dead} <= {j.id for j in listed}
    assert ops.jobs(status="dead", limit=1000) == remote.answers["jobs"]
    assert dead in [j.id for j in remote.answers["jobs"]]
    assert all(j.status is Status.DEAD for j in remote.answers["jobs"])
    for job_id in (done, dead):
        info = ops.info(job_id)
        assert isinstance(info, JobInfo)
        assert info == remote.answers["info"]
        assert info == manager.info(job_id)  # ended: it no longer changes
    assert ops.info(str(done)).value() == {"nested": [1, 2.5, None]}  # type: ignore[union-attr]
    assert ops.info(uuid.uuid4()) is None
    with pytest.raises(ValueError, match="not a job id"):
        ops.info("not-an-id")


def test_the_manager_lists_the_jobs_of_one_name(manager: Manager) -> None:
    done = succeeded_job(manager)
    dead = dead_job(manager)
    returned = manager.jobs(name=Returns.NAME, limit=1000)
    assert done in [j.id for j in returned] and dead not in [j.id for j in returned]
    assert {j.name for j in returned} == {Returns.NAME}
    assert [j.id for j in manager.jobs(status="dead", name=AlwaysFails.NAME)] == [
        j.id for j in manager.jobs(status="dead")
    ]
    assert manager.jobs(status="dead", name=Returns.NAME) == []
    with pytest.raises(ValueError, match="jobs\\(\\) name must be a job name, a non-empty str"):
        manager.jobs(name="")
    with pytest.raises(TypeError, match="jobs\\(\\) name must be a job name"):
        manager.jobs(name=3)  # type: ignore[arg-type]


def test_jobs_page_by_next(manager: Manager, url: str) -> None:
    ids = {succeeded_job(manager, i) for i in range(3)}
    seen: list[str] = []
    after = ""
    pages = 0
    while True:
        with urllib.request.urlopen(f"{url}/api/jobs?status=succeeded&limit=2&after={after}") as r:
            page = json.loads(r.read())
        pages += 1
        seen += [j["id"] for j in page["jobs"]]
        if page["next"] is None:
            break
        assert page["next"] == page["jobs"][-1]["id"]
        after = page["next"]
    assert {str(i) for i in ids} <= set(seen)
    assert len(seen) == len(set(seen))  # no job on two pages
    assert pages == (len(seen) + 1) // 2  # and no empty last page


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("status=sleeping", "status must be one of"),
        ("limit=0", "limit must be 1 to 1000"),
        ("limit=1001", "limit must be 1 to 1000"),
        ("limit=ten", "limit must be an integer"),
        ("after=zzz", "not a job id"),
        ("arguments=maybe", "arguments must be true or false"),
    ],
)
def test_bad_listing_input_is_a_400(client: InProcess, query: str, says: str) -> None:
    answer = client.get(f"/api/jobs?{query}")
    assert answer.status_code == 400
    assert says in answer.json()["error"]


def test_an_unknown_or_malformed_id_is_a_404(client: InProcess, remote: Recording) -> None:
    for job_id in (str(uuid.uuid4()), "nope"):
        answer = client.get(f"/api/jobs/{job_id}")
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/json"
        assert job_id in answer.json()["error"]
    assert remote.calls == ["info"]  # a malformed id never reaches the operations
    unknown = client.post(f"/api/jobs/{uuid.uuid4()}/requeue", headers=basic(*USER))
    assert unknown.json() == {"requeued": False}
    assert client.post("/api/jobs/nope/cancel", headers=basic(*USER)).status_code == 404
    route = client.get("/api/nothing")
    assert route.status_code == 404 and "error" in route.json()
    method = client.get("/api/dead/purge")
    assert method.status_code == 405 and "error" in method.json()


def test_arguments_are_shown_only_when_asked(manager: Manager, client: InProcess) -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    job_id = succeeded_job(manager, {"at": when, "raw": b"\x00\xff", "id": uuid.UUID(int=7)})
    plain = client.get(f"/api/jobs/{job_id}").json()
    assert "arguments" not in plain
    assert base64.b64decode(plain["args"]) == manager.info(job_id).args  # type: ignore[union-attr]
    credited = basic(*USER)
    shown = client.get(f"/api/jobs/{job_id}?arguments=1", headers=credited).json()
    assert shown["arguments"] == {
        "value": {"at": when.isoformat(), "raw": "AP8=", "id": str(uuid.UUID(int=7))},
        "seconds": 0.0,
    }
    listed = client.get(
        "/api/jobs?status=succeeded&limit=1000&arguments=true", headers=credited
    ).json()
    assert all("arguments" in j for j in listed["jobs"])
    # With auth configured, revealing them needs it.
    for path in (f"/api/jobs/{job_id}?arguments=1", "/api/jobs?arguments=1"):
        refused = client.get(path)
        assert refused.status_code == 403 and "credentials" in refused.json()["error"]
        wrong = client.get(path, headers=basic(USER[0], "guess"))
        assert wrong.status_code == 403
    assert not any("arguments" in j for j in client.get("/api/jobs").json()["jobs"])


# -- refusing changes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def attempts(manager: Manager) -> list[tuple[str, dict[str, Any]]]:
    """One POST of every kind, on jobs and a queue whose state is then checked."""
    dead = dead_job(manager, "refused")
    later = scheduled_job(manager)
    return [
        (f"/api/jobs/{dead}/requeue", {}),
        (f"/api/jobs/{later}/cancel", {}),
        ("/api/dead/requeue", {}),
        ("/api/dead/purge", {}),
        ("/api/queues/default/pause", {}),
        ("/api/queues/default/resume", {}),
        ("/api/queues/default/scale", {"count": 1}),
    ]


def state(manager: Manager) -> tuple[object, ...]:
    figures = manager.stats().queues["default"]
    dead = sorted(j.id for j in manager.jobs(status="dead", limit=1000))
    pending = sorted(j.id for j in manager.jobs(status="pending", limit=1000))
    return figures.paused, figures.workers, dead, pending


@pytest.mark.parametrize(
    ("auth", "headers", "says"),
    [
        (None, bearer(), "read-only"),
        (TOKEN, {}, "credentials required"),
        (TOKEN, bearer("s3cret-tokem"), "wrong credentials"),
        (TOKEN, bearer(""), "wrong credentials"),
        (TOKEN, basic("operator", TOKEN), "wrong credentials"),
        (USER, basic("operator", "pass:wore"), "wrong credentials"),
        (USER, basic("operatoR", "pass:word"), "wrong credentials"),
        (USER, {"Authorization": "Basic !!!"}, "wrong credentials"),
        (USER, bearer(), "wrong credentials"),
        (TOKEN, {**bearer(), "Origin": "http://evil.example"}, "cross-site"),
        (TOKEN, {**bearer(), "Origin": "null"}, "cross-site"),
        (TOKEN, {**bearer(), "Origin": "http://testserver:8080"}, "cross-site"),
        (TOKEN, {**bearer(), "Sec-Fetch-Site": "cross-site"}, "cross-site"),
        (TOKEN, {**bearer(), "Sec-Fetch-Site": "same-site"}, "cross-site"),
        (USER, {**basic(*USER), "Sec-Fetch-Site": "cross-site"}, "cross-site"),
    ],
)
def test_a_post_is_refused_and_changes_nothing(  # noqa: PLR0917 - fixtures and parameters
    manager: Manager,
    remote: Recording,
    attempts: list[tuple[str, dict[str, Any]]],
    auth: api.Auth | None,
    headers: dict[str, str],
    says: str,
) -> None:
    before = state(manager)
    client = InProcess(api.app(remote, auth=auth))
    for path, body in attempts:
        answer = client.post(path, json=body, headers=headers)
        assert answer.status_code == 403, path
        assert says in answer.json()["error"]
    assert remote.changes == []
    assert state(manager) == before


def test_refused_over_http_through_the_client(url: str, remote: Recording) -> None:
    for auth in (None, "wrong"):
        with pytest.raises(Refused) as refused:
            HttpOperations(url, auth=auth).pause("default")
        assert isinstance(refused.value, PermissionError)
        assert refused.value.status == 403
    assert remote.changes == []


def test_every_change_with_the_token(manager: Manager, remote: Recording, url: str) -> None:
    ops = HttpOperations(url, auth=TOKEN)
    dead = dead_job(manager, "requeue-me")
    assert ops.requeue(dead) is True
    wait_until_status(manager, dead, Status.DEAD)  # it fails again
    assert ops.requeue(dead) is True and ops.requeue(dead) is False  # no longer dead
    later = scheduled_job(manager)
    assert ops.cancel(later) is True
    assert manager.info(later).status is Status.CANCELLED  # type: ignore[union-attr]
    assert ops.cancel(later) is False
    dead_job(manager, "all-of-them")
    wait_until_status(manager, dead, Status.DEAD)
    assert ops.requeue_dead("default") >= 2
    purged = dead_job(manager, "purged")
    assert ops.purge_dead(older_than=3600) == 0
    assert ops.purge_dead() >= 1
    assert manager.info(purged) is None
    ops.pause("default")
    assert manager.stats().queues["default"].paused_everywhere
    ops.resume("default")
    ops.pause("default", local_only=True)
    figures = manager.stats().queues["default"]
    assert figures.paused and not figures.paused_everywhere
    ops.resume("default", local_only=True)
    assert not manager.stats().queues["default"].paused
    workers = manager.stats().queues["default"].workers
    ops.set_worker_count("default", workers + 1)
    assert manager.stats().queues["default"].workers == workers + 1
    ops.set_worker_count("default", workers)
    assert remote.changes == [
        "requeue", "requeue", "requeue", "cancel", "cancel", "requeue_dead", "purge_dead",
        "purge_dead", "pause", "resume", "pause", "resume", "set_worker_count",
        "set_worker_count",
    ]  # fmt: skip


def wait_until_status(manager: Manager, job_id: uuid.UUID, status: Status) -> None:
    deadline = time.monotonic() + TIMEOUT
    while (info := manager.info(job_id)) is None or info.status is not status:
        assert time.monotonic() < deadline, f"{job_id} not {status}"
        time.sleep(0.02)


def test_changes_with_basic_auth_forms_and_same_origin(
    manager: Manager, client: InProcess, remote: Recording
) -> None:
    workers = manager.stats().queues["default"].workers
    same_site = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    answer = client.post(
        "/api/queues/default/scale",
        data={"count": str(workers + 1)},  # a form
        headers={**basic(*USER), **same_site},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"queue": "default", "count": workers + 1}
    assert manager.stats().queues["default"].workers == workers + 1
    answer = client.post("/api/queues/default/scale", json={"count": workers}, headers=basic(*USER))
    assert answer.json() == {"queue": "default", "count": workers}
    answer = client.post(
        "/api/queues/default/pause?local_only=yes",
        headers={**basic(*USER), "Sec-Fetch-Site": "none"},  # typed into the address bar
    )
    assert answer.json() == {"queue": "default", "paused": True, "local_only": True}
    client.post("/api/queues/default/resume", json={"local_only": True}, headers=basic(*USER))
    assert not manager.stats().queues["default"].paused
    assert remote.changes == ["set_worker_count", "set_worker_count", "pause", "resume"]


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/api/queues/default/scale", {}, "scale needs a count"),
        ("/api/queues/default/scale", {"count": "many"}, "count must be an integer"),
        ("/api/queues/default/scale", {"count": -1}, "count must be >= 0"),
        ("/api/queues/default/scale", {"count": True}, "count must be an integer"),
        ("/api/dead/purge", {"older_than": "soon"}, "older_than must be a number"),
        ("/api/dead/purge", {"older_than": -1}, "older_than must be a number"),
        ("/api/dead/requeue", {"queue": 3}, "queue must be a string"),
        ("/api/queues/default/pause", {"local_only": "perhaps"}, "local_only must be"),
    ],
)
def test_bad_change_input_is_a_400(
    client: InProcess, remote: Recording, path: str, body: dict[str, Any], says: str
) -> None:
    answer = client.post(path, json=body, headers=basic(*USER))
    assert answer.status_code == 400
    assert says in answer.json()["error"]
    assert remote.changes == []


def test_a_body_must_be_a_json_object_or_a_form(client: InProcess) -> None:
    for content, kind in (
        ("[1]", "application/json"),
        ("{", "application/json"),
        ("x", "text/plain"),
    ):
        answer = client.post(
            "/api/dead/purge", content=content, headers={**basic(*USER), "Content-Type": kind}
        )
        assert answer.status_code == 400, (content, kind)


class Bare(Recording):
    """Operations that cannot scale (as a storage opened directly) and fail
    oddly otherwise."""

    def set_worker_count(self, queue: str, count: int) -> None:
        raise NotImplementedError("scaling needs the running service")

    def pause(self, queue: str, *, local_only: bool = False) -> None:
        raise ValueError(f"no such queue as {queue!r}")

    def requeue_dead(self, queue: str | None = None) -> int:
        raise RuntimeError("password=hunter2 in a database error")

    def cancel(self, job_id: uuid.UUID | str) -> bool:
        raise KeyError("a bug, not an unknown job")


def test_what_the_operations_raise_is_mapped(manager: Manager) -> None:
    with api.serve(Bare(manager), auth=TOKEN) as server:
        ops = HttpOperations(server.url, auth=TOKEN)
        with pytest.raises(Unsupported, match="scaling needs the running service") as unsupported:
            ops.set_worker_count("default", 3)
        assert isinstance(unsupported.value, NotImplementedError)
        assert unsupported.value.status == 501
        with pytest.raises(BadRequest, match="no such queue") as bad:
            ops.pause("nowhere")
        assert isinstance(bad.value, ValueError)
        with pytest.raises(HttpError, match="internal error") as internal:
            ops.requeue_dead()
        assert internal.value.status == 500
        assert "hunter2" not in str(internal.value)  # logged, never sent
        with pytest.raises(HttpError, match="internal error") as internal:
            ops.cancel(uuid.uuid4())
        assert internal.value.status == 500


def test_a_stopped_manager_is_a_503() -> None:
    stopped = WorkerConfig().start(processes=0)
    stopped.stop()
    answer = InProcess(api.app(stopped)).get("/api/stats")
    assert answer.status_code == 503
    assert "stopped Manager" in answer.json()["error"]


def test_auth_must_not_be_empty() -> None:
    for auth in ("", ("", "x"), ("x", ""), ("a:b", "x")):
        with pytest.raises(ValueError):
            api.app(Recording(None), auth=auth)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        api.app(Recording(None), auth=("a", "b", "c"))  # type: ignore[arg-type]


# -- the event loop does not wait on the operations --------------------------------


class Slow(Recording):
    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.entered = threading.Event()
        self.release = threading.Event()

    def info(self, job_id: uuid.UUID | str) -> JobInfo | None:
        self.entered.set()
        self.release.wait(TIMEOUT)
        return super().info(job_id)


def test_a_blocking_call_leaves_the_server_answering(manager: Manager) -> None:
    slow = Slow(manager)
    with api.serve(slow) as server:
        ops = HttpOperations(server.url, timeout=TIMEOUT)
        waiting = threading.Thread(target=ops.info, args=(uuid.uuid4(),))
        waiting.start()
        try:
            assert slow.entered.wait(TIMEOUT)
            started = time.monotonic()
            assert HttpOperations(server.url, timeout=5).stats() == slow.answers["stats"]
            assert time.monotonic() - started < 5
            assert waiting.is_alive()  # still inside info()
        finally:
            slow.release.set()
            waiting.join(TIMEOUT)


# -- serve ------------------------------------------------------------------------


def test_serve_binds_loopback_only(remote: Recording, url: str) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1"
    # Bound to 127.0.0.1 alone: no other address of this machine reaches it.
    assert listening_on(int(port)) == {"127.0.0.1"}
    with socket.create_connection(("127.0.0.1", int(port)), timeout=2):
        pass


def test_a_foreign_host_name_is_not_answered(url: str, remote: Recording) -> None:
    # A page of evil.example whose name was made to resolve to 127.0.0.1.
    answer = httpx.get(f"{url}/api/stats", headers={"Host": "evil.example"})
    assert answer.status_code == 421
    assert remote.calls == []
    for name in ("localhost", "127.0.0.1"):
        port = url.rsplit(":", 1)[1]
        assert httpx.get(f"{url}/api/stats", headers={"Host": f"{name}:{port}"}).status_code == 200


def test_a_port_in_use_is_named(remote: Recording, url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(OSError, match=f"cannot serve HTTP on 127.0.0.1:{port}: .*in use"):
        api.serve(remote, port=port)


def test_close_frees_the_port(remote: Recording) -> None:
    server = api.serve(remote)
    port = int(server.url.rsplit(":", 1)[1])
    assert HttpOperations(server.url).stats() == remote.answers["stats"]
    server.close()
    with pytest.raises(Unreachable, match=f"cannot reach http://127.0.0.1:{port}") as unreachable:
        HttpOperations(server.url, timeout=2).stats()
    assert isinstance(unreachable.value, ConnectionError)
    again = api.serve(remote, port=port)  # the port is free again
    try:
        assert again.url == server.url
    finally:
        again.close()
    assert not any(t.name == f"jobarbiter-http-{port}" for t in threading.enumerate())


def test_serve_leaves_signals_and_logging_alone(remote: Recording) -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    loggers = {
        name: logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    before = {name: (lg.level, list(lg.handlers), lg.propagate) for name, lg in loggers.items()}
    with api.serve(remote) as server, CapturedLogs() as logged:
        HttpOperations(server.url).stats()
        assert not any(r.name == "uvicorn.access" for r in logged.records)  # no access log
        assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
        assert {
            n: (lg.level, list(lg.handlers), lg.propagate) for n, lg in loggers.items()
        } == before
        thread = next(t for t in threading.enumerate() if t.name.startswith("jobarbiter-http-"))
        assert thread.daemon


class CapturedLogs(logging.Handler):
    """Every record of every logger, while in use."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> CapturedLogs:
        root = logging.getLogger()
        self._level = root.level
        root.setLevel(logging.DEBUG)
        root.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)
        logging.getLogger().setLevel(self._level)


def test_serve_on_ipv6_loopback(remote: Recording) -> None:
    try:
        server = api.serve(remote, "::1")
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    with server:
        assert server.url.startswith("http://[::1]:")
        assert HttpOperations(server.url).stats() == remote.answers["stats"]


def test_the_client_takes_http_urls_only() -> None:
    for bad in ("file:///etc/passwd", "127.0.0.1:8000", "ftp://host/"):
        with pytest.raises(ValueError, match="not an http"):
            HttpOperations(bad)


# -- mounted in a service's own app ------------------------------------------------


def test_mounted_under_a_prefix_in_a_service(manager: Manager, remote: Recording) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    service = Starlette(
        routes=[Route("/", hello), Mount("/ops/jobs", app=api.app(remote, auth=TOKEN))]
    )
    config = uvicorn.Config(service, host="127.0.0.1", port=0, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base).text == "hello"
        ops = HttpOperations(f"{base}/ops/jobs/", auth=TOKEN)
        assert ops.stats() == remote.answers["stats"]
        ops.pause("default", local_only=True)
        assert manager.stats().queues["default"].paused
        ops.resume("default", local_only=True)
        scrape = httpx.get(f"{base}/ops/jobs/metrics")
        assert scrape.status_code == 200 and "jobarbiter_jobs{" in scrape.text
        assert httpx.get(f"{base}/ops/jobs/api/nothing").json() == {"error": "Not Found"}
        assert httpx.get(f"{base}/metrics").status_code == 404  # only under the prefix
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)


def test_metrics_can_be_left_out(remote: Recording) -> None:
    client = InProcess(api.app(remote, metrics=False))
    assert client.get("/metrics").status_code == 404
    assert client.get("/api/stats").status_code == 200


# -- the JSON form ------------------------------------------------------------------


def test_the_json_form_names_every_field(manager: Manager) -> None:
    job_id = succeeded_job(manager)
    info = manager.info(job_id)
    assert info is not None
    doc = jsonview.job_json(info)
    assert {f.name for f in dataclasses.fields(JobInfo)} <= doc.keys()
    stats = manager.stats()
    figures = jsonview.stats_json(stats)["queues"]["default"]
    assert {f.name for f in dataclasses.fields(QueueFigures)} == figures.keys()
    arbiter = jsonview.stats_json(stats)["arbiters"][0]
    assert {f.name for f in dataclasses.fields(ArbiterStats)} == arbiter.keys()
    assert jsonview.stats_from_json(json.loads(json.dumps(jsonview.stats_json(stats)))) == stats
    assert jsonview.job_from_json(json.loads(json.dumps(doc))) == info
    urgent = dataclasses.replace(info, priority=-(2**63))
    assert jsonview.job_from_json(json.loads(json.dumps(jsonview.job_json(urgent)))) == urgent
    del doc["priority"]  # from a server before priorities: all had the default
    assert jsonview.job_from_json(doc) == info


def test_estimated_counts_keep_their_flag_in_json() -> None:
    stats = ManagerStats(
        queues={
            "q": QueueFigures(
                pending=20_000, scheduled=15_000, estimated=frozenset({"pending", "scheduled"})
            )
        },
        arbiters=(),
    )
    doc = json.loads(json.dumps(jsonview.stats_json(stats)))
    assert doc["queues"]["q"]["estimated"] == ["pending", "scheduled"]
    assert jsonview.stats_from_json(doc) == stats
    del doc["queues"]["q"]["estimated"]  # an older service's answer: all exact
    assert jsonview.stats_from_json(doc).queues["q"].estimated == frozenset()
    doc["queues"]["q"]["estimated"] = ["slots"]
    with pytest.raises(jsonview.FormatError, match="estimated is not a list of dead, pending"):
        jsonview.stats_from_json(doc)


def test_pending_by_priority_goes_through_json_as_pairs_highest_first() -> None:
    split = by_priority([(0, 19_000), (-5, 1), (2**63 - 1, 999)])
    stats = ManagerStats(
        queues={
            "q": QueueFigures(
                pending=20_000,
                pending_by_priority=split,
                estimated=frozenset({"pending", "pending_by_priority"}),
            )
        },
        arbiters=(),
    )
    doc = json.loads(json.dumps(jsonview.stats_json(stats)))
    assert doc["queues"]["q"]["pending_by_priority"] == [[2**63 - 1, 999], [0, 19_000], [-5, 1]]
    back = jsonview.stats_from_json(doc).queues["q"]
    assert back == stats.queues["q"]
    assert list(back.pending_by_priority.items()) == list(split.items())
    with pytest.raises(TypeError):
        back.pending_by_priority[1] = 1  # type: ignore[index]
    del doc["queues"]["q"]["pending_by_priority"]  # an older service's answer
    assert jsonview.stats_from_json(doc).queues["q"].pending_by_priority == {}
    for bad in ({"0": 1}, [[0]], [[0, "1"]], [[True, 1]]):
        doc["queues"]["q"]["pending_by_priority"] = bad
        with pytest.raises(jsonview.FormatError):
            jsonview.stats_from_json(doc)


def test_plain_arguments() -> None:
    value = {
        1: dt.date(2030, 1, 2),
        "span": dt.timedelta(minutes=1, microseconds=500),
        "odd": [float("nan"), float("inf"), (1, 2)],
        "raw": bytearray(b"ab"),
    }
    assert jsonview.plain(value) == {
        "1": "2030-01-02",
        "span": 60.0005,
        "odd": ["nan", "inf", [1, 2]],
        "raw": "YWI=",
    }
    json.dumps(jsonview.plain(value), allow_nan=False)


def test_a_record_with_undecodable_args_still_shows(manager: Manager) -> None:
    info = dataclasses.replace(manager.info(succeeded_job(manager)), args=b"\xc1")  # type: ignore[type-var]
    doc = jsonview.job_json(info, arguments=True)
    assert "arguments" not in doc and "not msgpack" in doc["arguments_error"]


@pytest.mark.parametrize(
    "broken",
    [
        {"id": "x"},
        {"status": "asleep"},
        {"args": "!!"},
        {"run_at": "2030-01-01T00:00:00"},  # no offset
        {"retry_count": 1.5},
        {"name": None},
        {"priority": True},
    ],
)
def test_a_malformed_job_document_is_a_format_error(
    manager: Manager, broken: dict[str, Any]
) -> None:
    doc = jsonview.job_json(manager.info(succeeded_job(manager)))  # type: ignore[arg-type]
    doc.update(broken)
    with pytest.raises(jsonview.FormatError):
        jsonview.job_from_json(doc)
