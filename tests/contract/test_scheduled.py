"""``QueueStats.scheduled``: pending jobs not due yet that never failed, the
jobs ``join`` does not wait for."""

from __future__ import annotations

from storage import Backoff, JobResult, ManualClock, QueueStats, Storage

from .support import QUEUE, new_job, policy, pop_one


def test_a_job_scheduled_for_later_counts_until_it_is_due(
    storage: Storage, clock: ManualClock
) -> None:
    start = clock.now()
    storage.push(new_job(run_at=start + 10))
    storage.push(new_job())
    assert storage.stats() == {
        QUEUE: QueueStats(pending=2, running=0, dead=0, scheduled=1, oldest_due_at=start)
    }
    clock.advance(10)  # due exactly now: no longer "later"
    assert storage.stats() == {
        QUEUE: QueueStats(pending=2, running=0, dead=0, scheduled=0, oldest_due_at=start)
    }


def test_a_retry_waiting_out_its_backoff_is_not_scheduled(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=policy(backoff=Backoff.linear(30))))
    later = storage.push(new_job(run_at=clock.now() + 60))
    pop_one(storage)
    storage.complete(job_id, "r1", JobResult.failure("boom"))
    # Both wait, but only the job that never ran is "scheduled".
    assert storage.stats() == {QUEUE: QueueStats(pending=2, running=0, dead=0, scheduled=1)}
    clock.advance(30)
    assert pop_one(storage).id == job_id
    assert storage.stats() == {QUEUE: QueueStats(pending=1, running=1, dead=0, scheduled=1)}
    storage.complete(job_id, "r1", JobResult.success())
    clock.advance(30)
    assert pop_one(storage).id == later
    assert storage.stats() == {QUEUE: QueueStats(pending=0, running=1, dead=0, scheduled=0)}


def test_an_unregistered_job_put_back_later_is_scheduled(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job())
    pop_one(storage)
    storage.complete(job_id, "r1", JobResult.unregistered("no job named 'tests.Job'"))
    assert storage.stats() == {QUEUE: QueueStats(pending=1, running=0, dead=0, scheduled=1)}
