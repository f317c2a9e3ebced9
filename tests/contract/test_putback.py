"""Jobs put back without counting an attempt: unexecuted and unregistered."""

from __future__ import annotations

import dataclasses

from storage import Disposition, JobResult, ManualClock, Status, Storage

from .support import QUEUE, ids, info, new_job, policy, pop_one, utc

# MemoryStorage's default, and what every backend in backends.py is built with.
UNREGISTERED_DELAY = 60.0


def test_unregistered_is_put_back_later_without_an_attempt(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(name="gone.Job"))
    pop_one(storage)
    clock.advance(2)
    put_back_at = clock.now()

    result = JobResult.unregistered("no job named 'gone.Job' in this arbiter")
    assert storage.complete(job_id, "r1", result) is Disposition.REQUEUED

    job = info(storage, job_id)
    assert (job.status, job.retry_count, job.runner) == (Status.PENDING, 0, None)
    assert job.last_error == "no job named 'gone.Job' in this arbiter"
    assert job.run_at == utc(put_back_at + UNREGISTERED_DELAY)
    assert ids(storage.list(status=Status.PENDING)) == [job_id]
    assert storage.next_due(QUEUE) == put_back_at + UNREGISTERED_DELAY

    # Not poppable again at once, by anyone: no busy loop.
    assert storage.pop(QUEUE, "r1") == []
    assert storage.pop(QUEUE, "r2") == []
    clock.advance(UNREGISTERED_DELAY - 0.25)
    assert storage.pop(QUEUE, "r2") == []
    clock.advance(0.25)
    assert pop_one(storage, "r2").retry_count == 0


def test_unregistered_does_not_use_up_retries(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=policy(retries=0)))
    for _ in range(10):
        pop_one(storage)
        assert storage.complete(job_id, "r1", JobResult.unregistered("?")) is Disposition.REQUEUED
        clock.advance(UNREGISTERED_DELAY)
    assert info(storage, job_id).retry_count == 0
    assert info(storage, job_id).status is Status.PENDING


def test_unexecuted_is_put_back_unchanged(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job())
    before = info(storage, job_id)
    claimed = clock.now()
    pop_one(storage)
    clock.advance(10)

    assert storage.complete(job_id, "r1", JobResult.unexecuted()) is Disposition.REQUEUED

    # Unchanged but for started_at, which tells when its latest claim was taken.
    after = info(storage, job_id)
    assert after.started_at == utc(claimed)
    assert dataclasses.replace(after, started_at=None) == before


def test_unexecuted_keeps_its_place_in_line(storage: Storage) -> None:
    first, second, third = storage.push_many([new_job(), new_job(), new_job()])
    pop_one(storage)

    storage.complete(first, "r1", JobResult.unexecuted())

    assert ids(storage.pop(QUEUE, "r2", limit=3)) == [first, second, third]


def test_unexecuted_after_a_failure_keeps_the_count_and_error(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job())
    pop_one(storage)
    storage.complete(job_id, "r1", JobResult.failure("first try"))
    clock.advance(1)
    before = info(storage, job_id)
    claimed = clock.now()
    pop_one(storage)

    storage.complete(job_id, "r1", JobResult.unexecuted())

    after = info(storage, job_id)
    assert after.started_at == utc(claimed)
    assert dataclasses.replace(after, started_at=before.started_at) == before
    assert (before.retry_count, before.last_error) == (1, "first try")
