"""The Scheduler's thread on a clock moved by hand: what it queues when the
host is held up past ticks, and what it catches up at start. No storage: the
tick pushes are recorded."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator

import pytest

from storage import ManualClock
from supervisor.schedules import CatchUp, Scheduler
from supervisor.ticks import Every
from tests.contract.support import new_job

from .runtime.support import wait_until

T = 1_700_000_000.0  # a whole second
S = 1_000_000


class Pushes:
    """Stands in for the storage: records each tick and refuses one seen."""

    def __init__(self, last: int | None = None) -> None:
        self.ticks: list[int] = []
        self.last = last
        self._lock = threading.Lock()

    def push_tick(self, name: str, tick: int, job: object) -> uuid.UUID | None:
        with self._lock:
            if self.last is not None and tick <= self.last:
                return None
            self.ticks.append(tick)
            self.last = tick
            return uuid.uuid4()

    def last_tick(self, name: str) -> int | None:
        return self.last


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T + 0.5)


@pytest.fixture
def stopping() -> Iterator[list[Scheduler]]:
    made: list[Scheduler] = []
    yield made
    for scheduler in made:
        scheduler.stop()


def scheduler(clock: ManualClock, pushes: Pushes, made: list[Scheduler]) -> Scheduler:
    made.append(
        Scheduler(
            push_tick=pushes.push_tick, last_tick=pushes.last_tick, now=clock.now, shared=False
        )
    )
    return made[-1]


def warned(caplog: pytest.LogCaptureFixture) -> bool:
    return any(getattr(r, "event", None) == "schedule missed ticks: this host was held up"
               for r in caplog.records)  # fmt: skip


@pytest.mark.parametrize(
    ("catch_up", "queued"),
    [(CatchUp.SKIP, [T + 1]), (CatchUp.LATEST, [T + 1, T + 4])],
)
def test_a_host_held_up_past_ticks_skips_them_or_queues_the_latest(
    clock: ManualClock,
    stopping: list[Scheduler],
    caplog: pytest.LogCaptureFixture,
    catch_up: CatchUp,
    queued: list[float],
) -> None:
    caplog.set_level(logging.WARNING, logger="jobarbiter.schedules")
    pushes = Pushes()
    scheduler(clock, pushes, stopping).add("beat", Every.of(1), new_job(), catch_up)
    clock.advance(0.6)  # T + 1.1: the first tick is due
    wait_until(lambda: pushes.ticks, what="the first tick")
    clock.advance(3.0)  # T + 4.1: T + 2, 3 and 4 went by while the host was held up
    wait_until(lambda: warned(caplog), what="the warning")
    clock.advance(1.0)  # T + 5.1: on time again
    wait_until(lambda: pushes.ticks[-1] == (T + 5) * S, what="the tick after")
    assert pushes.ticks == [round(t * S) for t in [*queued, T + 5]]


def test_at_start_the_latest_missed_tick_is_queued_once(
    clock: ManualClock, stopping: list[Scheduler]
) -> None:
    pushes = Pushes(last=round((T - 5) * S))  # a host queued T - 5, then all stopped
    scheduler(clock, pushes, stopping).add("beat", Every.of(1), new_job(), CatchUp.LATEST)
    wait_until(lambda: pushes.ticks, what="the missed tick")
    assert pushes.ticks == [round(T * S)]  # the latest before the start, T + 0.5


def test_at_start_missed_ticks_are_skipped_by_default(
    clock: ManualClock, stopping: list[Scheduler]
) -> None:
    pushes = Pushes(last=round((T - 5) * S))
    plan = scheduler(clock, pushes, stopping)
    plan.add("beat", Every.of(1), new_job(), CatchUp.SKIP)
    (listed,) = plan.listing()
    assert listed.next_run is not None and listed.next_run.timestamp() == T + 1
    clock.advance(0.6)
    wait_until(lambda: pushes.ticks, what="the first tick")
    assert pushes.ticks == [round((T + 1) * S)]
