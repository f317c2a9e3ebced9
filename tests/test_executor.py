"""ThreadExecutor's credits, without processes: what it asks the host for."""

from __future__ import annotations

from typing import Any

from actors.executor import FAST_CEILING, FAST_WINDOW, InFlight, ThreadExecutor
from actors.protocol import Deliver, Want, decode


class Link:
    """Stands in for the FrameWriter: keeps what the executor sends."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def buffer(self, message: Any) -> None:
        self.sent.append(decode(list(message)))

    def buffer_many(self, messages: list[Any]) -> None:
        for message in messages:
            self.buffer(message)

    def flush(self, *, wait: bool = False) -> None:
        pass

    def send(self, message: Any, *, wait: bool = False) -> None:
        self.buffer(message)

    def wants(self) -> int:
        asked = sum(m.n for m in self.sent if isinstance(m, Want))
        self.sent.clear()
        return asked


class Slot:
    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


def job(n: int) -> Deliver:
    return Deliver("q", n.to_bytes(16, "big"), "tests.Job", b"\x80", 0, None)


def executor(prefetch: int) -> tuple[ThreadExecutor, Link, Slot]:
    link = Link()
    ex = ThreadExecutor("q", prefetch, link, InFlight())  # type: ignore[arg-type]
    slot = Slot()
    ex.ready(slot)
    return ex, link, slot


def run_jobs(ex: ThreadExecutor, slot: Slot, asked: int, seconds: float) -> int:
    """Deliver what was asked for; the one worker runs it all, each job taking
    ``seconds``. Returns how many jobs ran."""
    ex.arrived([job(i) for i in range(asked)])
    ran = 0
    current = slot.told.pop()
    while isinstance(current, Deliver):
        ran += 1
        current = ex.finished(slot, seconds)
    return ran


def test_an_unknown_or_slow_queue_holds_the_prefetch_margin() -> None:
    ex, link, slot = executor(prefetch=2)
    assert link.wants() == 1 + 2  # a ready worker and the margin, before any job ran
    run_jobs(ex, slot, 3, seconds=0.5)
    assert link.wants() == 3  # slow jobs: still one worker plus 2


def test_a_fast_queue_holds_what_its_workers_run_in_the_window() -> None:
    ex, link, slot = executor(prefetch=2)
    asked = link.wants()
    seconds = FAST_WINDOW / 10  # ten fit in the window
    for _ in range(20):  # the mean settles on the jobs' duration
        run_jobs(ex, slot, asked, seconds)
        asked = link.wants()
    # Refills wait until half the margin is free, so it is never quite full.
    assert 1 + 10 // 2 < asked <= 1 + 10


def test_the_fast_margin_has_a_ceiling_and_prefetch_zero_has_none() -> None:
    ex, link, slot = executor(prefetch=2)
    asked = link.wants()
    for _ in range(20):
        run_jobs(ex, slot, asked, seconds=1e-7)
        asked = link.wants()
    assert 1 + FAST_CEILING // 2 < asked <= 1 + FAST_CEILING

    ex, link, slot = executor(prefetch=0)
    asked = link.wants()
    for _ in range(5):
        run_jobs(ex, slot, asked, seconds=1e-7)
        assert link.wants() == asked == 1  # only for the idle worker
