"""Stored pauses: ``set_paused`` and ``paused``. The storage keeps the flag
only; not claiming a paused queue's jobs is the runtime's part."""

from __future__ import annotations

import pytest

from storage import Disposition, JobResult, ManualClock, QueueStats, Status, Storage

from .backends import close, reopen
from .support import QUEUE, ids, new_job, pop_one


def test_nothing_is_paused_at_first(storage: Storage) -> None:
    assert storage.paused() == frozenset()


def test_a_pause_is_stored_listed_and_cleared(storage: Storage) -> None:
    storage.set_paused("a", True)
    storage.commit()
    assert storage.paused() == frozenset({"a"})

    storage.set_paused("b", True)
    storage.set_paused("a", True)  # again: no change
    storage.commit()
    assert storage.paused() == frozenset({"a", "b"})

    storage.set_paused("a", False)
    storage.commit()
    assert storage.paused() == frozenset({"b"})
    storage.set_paused("a", False)  # not paused: no change
    storage.set_paused("never", False)
    storage.commit()
    assert storage.paused() == frozenset({"b"})

    storage.set_paused("b", False)
    storage.set_paused("a", True)  # paused once more after a resume
    storage.commit()
    assert storage.paused() == frozenset({"a"})


def test_a_queue_with_no_jobs_can_be_paused(storage: Storage) -> None:
    storage.set_paused("empty", True)
    storage.commit()
    assert storage.paused() == frozenset({"empty"})
    assert storage.stats() == {}  # a pause holds no job


def test_a_paused_queues_jobs_are_still_stored_popped_and_listed(
    storage: Storage, clock: ManualClock
) -> None:
    storage.set_paused(QUEUE, True)
    storage.commit()
    first, second = storage.push_many([new_job(), new_job()])

    assert ids(storage.list(queue=QUEUE)) == [first, second]
    assert storage.stats() == {
        QUEUE: QueueStats(pending=2, running=0, dead=0, oldest_due_at=clock.now())
    }
    assert storage.next_due(QUEUE) == clock.now()
    assert pop_one(storage).id == first  # the runtime, not the storage, holds back
    assert storage.complete(first, "r1", JobResult.success()) is Disposition.FINISHED
    assert ids(storage.list(status=Status.SUCCEEDED)) == [first]
    assert storage.paused() == frozenset({QUEUE})  # settling jobs changes no pause


def test_a_pause_survives_a_restart(storage: Storage, clock: ManualClock) -> None:
    storage.set_paused("a", True)
    storage.set_paused("b", True)
    storage.commit()
    storage.set_paused("b", False)
    storage.commit()
    job_id = storage.push(new_job(queue="a"))
    storage.commit()

    again = reopen(storage, clock)
    if again is None:
        pytest.skip("this storage keeps nothing past a restart")
    try:
        assert again.paused() == frozenset({"a"})
        assert ids(again.list()) == [job_id]
        again.set_paused("a", False)
        again.commit()
        assert again.paused() == frozenset()
    finally:
        close(again)
