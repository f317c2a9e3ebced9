"""HttpOperations: the Operations of a running service, over its HTTP API.

``HttpOperations("http://127.0.0.1:8000")`` answers what the service's
Manager would, as the same values (``ManagerStats``, ``JobInfo``; decoded by
``supervisor.jsonview``), so the CLI works on a service as on a Manager. It
uses the standard library's urllib, one request per call, and talks to the
URL it is given only (http or https).

A job id that is no UUID raises ValueError before any request, as a Manager
does. The server's errors are raised as ``HttpError`` subclasses carrying
its message and status, each also the builtin a Manager would raise or that
names the case: 400 ``BadRequest`` (a ValueError), 403 ``Refused`` (a
PermissionError: no or wrong credentials, or a read-only API), 404
``NotFound`` (a LookupError; ``info`` answers None instead), 501
``Unsupported`` (a NotImplementedError), and plain ``HttpError`` for the
rest. A server that cannot be reached raises ``Unreachable`` (a
ConnectionError naming the URL).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any

from storage import JobInfo, Status
from supervisor import jsonview
from supervisor.handle import job_id as parse_job_id
from supervisor.stats import ManagerStats

if TYPE_CHECKING:
    from supervisor.operations import Operations

__all__ = [
    "BadRequest",
    "HttpError",
    "HttpOperations",
    "NotFound",
    "Refused",
    "Unreachable",
    "Unsupported",
]


class HttpError(Exception):
    """The server answered with an error: ``status`` and its ``message``."""

    def __init__(self, url: str, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} from {url})")
        self.url = url
        self.status = status
        self.message = message


class BadRequest(HttpError, ValueError):  # noqa: N818 - the name says what happened
    pass


class Refused(HttpError, PermissionError):  # noqa: N818 - the name says what happened
    pass


class NotFound(HttpError, LookupError):  # noqa: N818 - the name says what happened
    pass


class Unsupported(HttpError, NotImplementedError):  # noqa: N818 - the name says what happened
    pass


class Unreachable(ConnectionError):  # noqa: N818 - the name says what happened
    """No answer from the URL: nothing listens there, or the network failed."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url


_ERRORS: dict[int, type[HttpError]] = {
    400: BadRequest,
    403: Refused,
    404: NotFound,
    501: Unsupported,
}


class HttpOperations:
    """The Operations of the service at ``url`` (its API's root: where
    ``supervisor.http.app`` is mounted). ``auth`` (a bearer token, or a user
    and password for basic auth) is sent with every request; a read-only
    server needs none for the reading calls."""

    def __init__(
        self, url: str, *, auth: str | tuple[str, str] | None = None, timeout: float = 10.0
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._authorization: str | None = None
        if isinstance(auth, str):
            self._authorization = f"Bearer {auth}"
        elif auth is not None:
            user, password = auth
            pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._authorization = f"Basic {pair}"

    def __repr__(self) -> str:
        return f"HttpOperations({self.url!r})"

    # -- reading ----------------------------------------------------------------------

    def stats(self) -> ManagerStats:
        return jsonview.stats_from_json(self._get("/api/stats"))

    def jobs(
        self,
        queue: str | None = None,
        status: Status | str | None = None,
        *,
        name: str | None = None,
        limit: int = 100,
        after: uuid.UUID | str | None = None,
    ) -> list[JobInfo]:
        query: dict[str, str] = {"limit": str(limit)}
        if queue is not None:
            query["queue"] = queue
        if status is not None:
            query["status"] = status.value if isinstance(status, Status) else status
        if name is not None:
            query["name"] = name
        if after is not None:
            query["after"] = str(parse_job_id(after))
        page = self._get("/api/jobs", query)
        return [jsonview.job_from_json(j) for j in page["jobs"]]

    def info(self, job_id: uuid.UUID | str) -> JobInfo | None:
        try:
            return jsonview.job_from_json(self._get(f"/api/jobs/{parse_job_id(job_id)}"))
        except NotFound:
            return None

    # -- changing ---------------------------------------------------------------------

    def requeue(self, job_id: uuid.UUID | str) -> bool:
        return bool(self._post(f"/api/jobs/{parse_job_id(job_id)}/requeue")["requeued"])

    def cancel(self, job_id: uuid.UUID | str) -> bool:
        return bool(self._post(f"/api/jobs/{parse_job_id(job_id)}/cancel")["cancelled"])

    def requeue_dead(self, queue: str | None = None) -> int:
        body = {} if queue is None else {"queue": queue}
        return int(self._post("/api/dead/requeue", body)["requeued"])

    def purge_dead(self, older_than: dt.timedelta | float | None = None) -> int:
        if isinstance(older_than, dt.timedelta):
            older_than = older_than.total_seconds()
        body = {} if older_than is None else {"older_than": older_than}
        return int(self._post("/api/dead/purge", body)["purged"])

    def pause(self, queue: str, *, local_only: bool = False) -> None:
        self._post(f"/api/queues/{_segment(queue)}/pause", {"local_only": local_only})

    def resume(self, queue: str, *, local_only: bool = False) -> None:
        self._post(f"/api/queues/{_segment(queue)}/resume", {"local_only": local_only})

    def set_worker_count(self, queue: str, count: int) -> None:
        self._post(f"/api/queues/{_segment(queue)}/scale", {"count": count})

    # -- requests ---------------------------------------------------------------------

    def _get(self, path: str, query: dict[str, str] | None = None) -> Any:
        target = self.url + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        return self._send(urllib.request.Request(target, method="GET"))

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        return self._send(request)

    def _send(self, request: urllib.request.Request) -> Any:
        request.add_header("Accept", "application/json")
        if self._authorization is not None:
            request.add_header("Authorization", self._authorization)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as e:
            with e:
                raise _error(request.full_url, e.code, e.read()) from None
        except urllib.error.URLError as e:
            raise Unreachable(self.url, e.reason) from None
        except (TimeoutError, ConnectionError) as e:
            # A timeout or reset while reading the answer: not wrapped by urllib.
            raise Unreachable(self.url, e) from None


def _segment(queue: str) -> str:
    # Every character quoted, "/" too: the server reads the queue as one
    # segment before the verb.
    return urllib.parse.quote(queue, safe="")


def _error(url: str, status: int, body: bytes) -> HttpError:
    message = body.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            message = parsed["error"]
    except ValueError:
        pass  # not ours (a proxy's page, say): its text, as it came
    return _ERRORS.get(status, HttpError)(url, status, message)


if TYPE_CHECKING:
    # mypy checks here that HttpOperations is an Operations.
    def _is_operations(ops: HttpOperations) -> Operations:
        return ops
