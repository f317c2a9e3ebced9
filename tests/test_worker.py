"""Worker and AsyncWorker, without processes: what a slot runs once it stopped."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from actors.async_worker import AsyncWorker, EventLoop, QueueState
from actors.executor import InFlight, Running, ThreadExecutor
from actors.protocol import Deliver
from actors.worker import Shared, StopWorker, Worker, WorkerReady, WorkerStopped
from storage import Job

from .test_executor import Link

RAN: list[str] = []


@dataclass
class Noted(Job):
    tag: str

    def run(self, state: Any) -> None:
        RAN.append(self.tag)


class Arbiter:
    """Stands in for the arbiter: keeps what its workers tell it."""

    def __init__(self) -> None:
        self.told: list[Any] = []
        self.changed = threading.Condition()

    def tell(self, message: Any) -> None:
        with self.changed:
            self.told.append(message)
            self.changed.notify_all()

    def wait_for(self, kind: type, timeout: float = 5.0) -> None:
        with self.changed:
            if not self.changed.wait_for(
                lambda: any(isinstance(m, kind) for m in self.told), timeout
            ):
                raise AssertionError(f"no {kind.__name__} within {timeout} s: {self.told}")


def deliver(tag: str) -> Deliver:
    return Deliver("q", uuid.uuid4().bytes, "Noted", Noted(tag=tag).encode_args(), 0, None)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_job_told_after_stop_never_runs(kind: str) -> None:
    # The executor may hand a job to an idle slot just as the arbiter stops
    # (Recycle, Manager.stop): it reaches the slot after StopWorker. Run, it
    # could outlive its process (which leaves once its slots stopped) and,
    # put back unexecuted by the host, run twice.
    RAN.clear()
    arbiter = Arbiter()
    link = Link()
    executor = ThreadExecutor("q", 0, link, InFlight())  # type: ignore[arg-type]
    shared = Shared(
        executor=executor,
        jobs={"Noted": Noted},
        link=link,  # type: ignore[arg-type]
        in_flight=InFlight(),
        running=Running(),
        arbiter=arbiter,  # type: ignore[arg-type]
    )
    loop = None
    try:
        slot: Any
        if kind == "sync":
            slot = Worker.start(index=0, shared=shared, state_factory=lambda _: None, handle=None)
        else:
            loop = EventLoop(lambda job, seconds: None)
            slot = AsyncWorker(
                index=0, shared=shared, state=QueueState(lambda _: None, None), loop=loop
            )
            slot.start()
        arbiter.wait_for(WorkerReady)
        slot.tell(deliver("before"))
        deadline = time.monotonic() + 5
        while RAN != ["before"] and time.monotonic() < deadline:
            time.sleep(0.01)
        slot.tell(StopWorker())
        slot.tell(deliver("after"))
        arbiter.wait_for(WorkerStopped)
        time.sleep(0.2)  # time enough for a job that wrongly runs
        assert RAN == ["before"]
    finally:
        if kind == "sync":
            slot.stop()
        if loop is not None:
            loop.loop.call_soon_threadsafe(loop.loop.stop)
