"""Schedule ticks: ``push_tick`` queues a tick's job once, and ``last_tick``
reads the newest tick recorded per schedule, past a restart too."""

from __future__ import annotations

import pytest

from storage import ManualClock, Status, Storage

from .backends import close, reopen
from .support import QUEUE, ids, info, new_job, pop_one

SECOND = 1_000_000


def test_a_schedule_has_no_tick_at_first(storage: Storage) -> None:
    assert storage.last_tick("nightly") is None


def test_a_tick_queues_its_job_once(storage: Storage) -> None:
    tick = 1_700_000_000 * SECOND
    first = storage.push_tick("nightly", tick, new_job(args=b"\x01"))
    storage.commit()
    assert first is not None
    assert storage.push_tick("nightly", tick, new_job(args=b"\x02")) is None
    storage.commit()
    assert ids(storage.list()) == [first]
    assert info(storage, first).args == b"\x01"
    assert storage.last_tick("nightly") == tick


def test_an_older_tick_is_refused_and_a_newer_one_queued(storage: Storage) -> None:
    tick = 1_700_000_000 * SECOND
    assert storage.push_tick("s", tick, new_job()) is not None
    assert storage.push_tick("s", tick - SECOND, new_job()) is None
    later = storage.push_tick("s", tick + SECOND, new_job())
    storage.commit()
    assert later is not None
    assert storage.last_tick("s") == tick + SECOND
    assert len(storage.list()) == 2


def test_schedules_are_apart(storage: Storage) -> None:
    tick = 1_700_000_000 * SECOND
    a = storage.push_tick("a", tick, new_job())
    b = storage.push_tick("b", tick, new_job())
    storage.commit()
    assert a is not None and b is not None and a != b
    assert storage.last_tick("a") == storage.last_tick("b") == tick


def test_a_tick_is_a_job_as_any_other(storage: Storage, clock: ManualClock) -> None:
    tick = round(clock.now() * SECOND)
    job_id = storage.push_tick("s", tick, new_job(run_at=tick / SECOND))
    storage.commit()
    assert job_id is not None
    assert storage.stats()[QUEUE].pending == 1
    claim = pop_one(storage)
    assert claim.id == job_id


def test_a_ticks_job_that_ended_still_holds_its_tick(storage: Storage) -> None:
    # What a unique_key alone would not do: the key is free once the job ends.
    tick = 1_700_000_000 * SECOND
    job = new_job(unique_key="s@tick")
    job_id = storage.push_tick("s", tick, job)
    storage.commit()
    assert job_id is not None
    assert storage.cancel(job_id, "done with it") is Status.PENDING
    storage.commit()
    assert storage.push_tick("s", tick, job) is None
    storage.commit()
    assert ids(storage.list(status=Status.PENDING)) == []


def test_a_refused_tick_leaves_the_transaction_usable(storage: Storage) -> None:
    tick = 1_700_000_000 * SECOND
    storage.push_tick("s", tick, new_job())
    assert storage.push_tick("s", tick, new_job()) is None
    other = storage.push(new_job())  # in the same transaction
    storage.commit()
    assert other in ids(storage.list())
    assert len(storage.list()) == 2


def test_the_last_tick_outlives_a_restart(storage: Storage, clock: ManualClock) -> None:
    tick = 1_700_000_000 * SECOND
    storage.push_tick("s", tick, new_job())
    storage.commit()
    again = reopen(storage, clock)
    if again is None:
        pytest.skip("this storage keeps nothing past a restart")
    try:
        assert again.last_tick("s") == tick
        assert again.push_tick("s", tick, new_job()) is None
        assert again.push_tick("s", tick + SECOND, new_job()) is not None
        again.commit()
        assert again.last_tick("s") == tick + SECOND
    finally:
        close(again)
