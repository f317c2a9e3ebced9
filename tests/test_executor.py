"""ThreadExecutor's credits, without processes: what it asks the host for."""

from __future__ import annotations

import time
from typing import Any

from actors.executor import FAST_CEILING, FAST_WINDOW, InFlight, Running, ThreadExecutor
from actors.protocol import Deliver, Done, Want, decode
from actors.stalls import Stalls


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


def settle_mean(ex: ThreadExecutor, slot: Slot, seconds: float) -> None:
    """Run enough jobs of ``seconds`` through ``slot`` that the mean is theirs."""
    for n in range(30):
        ex.arrived([job(1000 + n)])
        told = slot.told.pop()
        assert isinstance(told, Deliver)
        assert ex.finished(slot, seconds) is None


def two_workers(stalls: Stalls) -> tuple[ThreadExecutor, Slot, Slot]:
    ex = ThreadExecutor("q", 2, Link(), InFlight(), stalls)  # type: ignore[arg-type]
    first, second = Slot(), Slot()
    ex.ready(first)
    ex.ready(second)
    return ex, first, second


def test_tiny_jobs_wait_for_the_running_worker_until_it_stalls() -> None:
    ex, first, second = two_workers(Stalls(every=0.02))
    settle_mean(ex, second, seconds=1e-5)  # tiny jobs
    ex.arrived([job(1)])  # the idle worker on top takes it, and runs it...
    running = first if first.told else second
    idle = second if running is first else first
    ex.arrived([job(2), job(3)])  # ...while these wait for it, not for the idle one
    assert idle.told == []
    deadline = time.monotonic() + 5
    while not idle.told and time.monotonic() < deadline:
        time.sleep(0.01)  # no job ends: the stall watch hands one out
    assert [j.job_id for j in idle.told] == [job(2).job_id]


def test_jobs_that_are_not_tiny_go_to_an_idle_worker_at_once() -> None:
    ex, first, second = two_workers(Stalls(every=60))
    settle_mean(ex, second, seconds=0.01)
    ex.arrived([job(1)])
    ex.arrived([job(2)])
    assert len(first.told) == len(second.told) == 1


def test_a_buffered_job_cancelled_before_it_started_goes_back_cancelled() -> None:
    # Put back unexecuted, it would run later on another arbiter: the cancel
    # it was asked for would be lost.
    link = Link()
    running = Running()
    ex = ThreadExecutor("q", 4, link, InFlight(), running=running)  # type: ignore[arg-type]
    slot = Slot()
    ex.ready(slot)
    ex.arrived([job(1), job(2), job(3)])  # the first runs, two wait in the buffer
    link.sent.clear()
    assert not running.interrupt(job(2).job_id, "cancelled by test", cancel=True, held=True)
    ex.close()  # a stop: the buffer goes back
    ends = {m.job_id: (m.outcome, m.error) for m in link.sent if isinstance(m, Done)}
    assert ends == {
        job(2).job_id: ("cancelled", "cancelled by test"),
        job(3).job_id: ("unexecuted", None),
    }
