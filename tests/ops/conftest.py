"""Fixtures for the HTTP API and metrics tests: one real Manager (one arbiter,
memory storage) per test module, and an Operations wrapper that records what
reached it and what it answered, so a test compares the client's values with
the very ones the server sent."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from storage import JobInfo, Status
from supervisor import Manager, WorkerConfig
from supervisor.stats import ManagerStats
from tests.runtime.jobs import DIR_VAR, AlwaysFails, Returns
from tests.runtime.support import all_running, wait_until

TIMEOUT = 20.0


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    with pytest.MonkeyPatch.context() as patch:
        # AlwaysFails notes its runs in this directory (spawned arbiters inherit it).
        patch.setenv(DIR_VAR, str(tmp_path_factory.mktemp("ops")))
        started = WorkerConfig().register(Returns).register(AlwaysFails).start(processes=1)
        try:
            wait_until(lambda: all_running(started, 1), TIMEOUT, "the arbiter running")
            yield started
        finally:
            started.stop(timeout=5)


def succeeded_job(manager: Manager, value: Any = "done") -> uuid.UUID:
    job_id = manager.queue(Returns(value=value))
    manager.wait(job_id, timeout=TIMEOUT)
    return job_id


def dead_job(manager: Manager, tag: str = "dead") -> uuid.UUID:
    job_id = manager.queue(AlwaysFails(tag=tag))
    wait_until(lambda: _status(manager, job_id) is Status.DEAD, TIMEOUT, "the job dead")
    return job_id


def scheduled_job(manager: Manager) -> uuid.UUID:
    return manager.schedule(Returns(value="later"), dt.timedelta(hours=1))


def _status(manager: Manager, job_id: uuid.UUID) -> Status | None:
    info = manager.info(job_id)
    return None if info is None else info.status


class InProcess:
    """Requests to an ASGI app in this process (Host "testserver"), each on
    an event loop of its own: Starlette's TestClient without its deprecation."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.request(method, path, **options)

        return asyncio.run(send())

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> httpx.Response:
        return self.request("POST", path, **options)


class Recording:
    """An Operations over another that notes each call (``calls``) and the
    latest answer of each reading call (``answers``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.answers: dict[str, Any] = {}

    def _note(self, name: str, answer: Any) -> Any:
        self.answers[name] = answer
        return answer

    def stats(self) -> ManagerStats:
        self.calls.append("stats")
        return self._note("stats", self.inner.stats())

    def jobs(
        self,
        queue: str | None = None,
        status: Status | str | None = None,
        *,
        name: str | None = None,
        limit: int = 100,
        after: uuid.UUID | str | None = None,
    ) -> list[JobInfo]:
        self.calls.append("jobs")
        found = self.inner.jobs(queue, status, name=name, limit=limit, after=after)
        return self._note("jobs", found)

    def info(self, job_id: uuid.UUID | str) -> JobInfo | None:
        self.calls.append("info")
        return self._note("info", self.inner.info(job_id))

    def requeue(self, job_id: uuid.UUID | str) -> bool:
        self.calls.append("requeue")
        return bool(self.inner.requeue(job_id))

    def requeue_dead(self, queue: str | None = None) -> int:
        self.calls.append("requeue_dead")
        return int(self.inner.requeue_dead(queue))

    def purge_dead(self, older_than: float | None = None) -> int:
        self.calls.append("purge_dead")
        return int(self.inner.purge_dead(older_than))

    def pause(self, queue: str, *, local_only: bool = False) -> None:
        self.calls.append("pause")
        self.inner.pause(queue, local_only=local_only)

    def resume(self, queue: str, *, local_only: bool = False) -> None:
        self.calls.append("resume")
        self.inner.resume(queue, local_only=local_only)

    def set_worker_count(self, queue: str, count: int) -> None:
        self.calls.append("set_worker_count")
        self.inner.set_worker_count(queue, count)

    def cancel(self, job_id: uuid.UUID | str) -> bool:
        self.calls.append("cancel")
        return bool(self.inner.cancel(job_id))

    @property
    def changes(self) -> list[str]:
        """The calls that change something."""
        return [c for c in self.calls if c not in ("stats", "jobs", "info")]


@pytest.fixture
def recording(manager: Manager) -> Recording:
    return Recording(manager)
