"""Dead jobs: kept, listed, requeued, purged."""

from __future__ import annotations

import uuid

from storage import Disposition, JobResult, ManualClock, QueueStats, Status, Storage

from .support import QUEUE, ids, info, kill, new_job, policy, pop_one, utc

ONE_SHOT = policy(retries=0)


def test_a_dead_job_is_kept_and_listed(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=ONE_SHOT))
    kill(storage, job_id)

    job = info(storage, job_id)
    assert (job.status, job.retry_count, job.runner) == (Status.DEAD, 1, None)
    assert job.last_error == "fatal"
    assert ids(storage.list(status=Status.DEAD)) == [job_id]
    assert storage.list(status=Status.PENDING) == []
    assert storage.stats() == {QUEUE: QueueStats(pending=0, running=0, dead=1)}
    assert storage.next_due(QUEUE) is None

    clock.advance(3600)
    assert storage.pop(QUEUE, "r1") == []
    assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.NOT_HELD
    assert info(storage, job_id).status is Status.DEAD


def test_requeue_makes_a_dead_job_pending_now_with_a_fresh_count(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=policy(retries=2)))
    for _ in range(3):
        pop_one(storage)
        storage.complete(job_id, "r1", JobResult.failure("nope"))
        clock.advance(1)
    assert info(storage, job_id).status is Status.DEAD
    clock.advance(100)

    assert storage.requeue(job_id) is True

    job = info(storage, job_id)
    assert (job.status, job.retry_count, job.runner) == (Status.PENDING, 0, None)
    assert job.run_at == utc(clock.now())
    assert storage.stats() == {
        QUEUE: QueueStats(pending=1, running=0, dead=0, oldest_due_at=clock.now())
    }
    assert storage.list(status=Status.DEAD) == []
    popped = pop_one(storage)
    assert (popped.id, popped.retry_count) == (job_id, 0)
    # The full set of retries is available again.
    assert storage.complete(job_id, "r1", JobResult.failure("again")) is Disposition.RETRYING


def test_requeue_only_takes_dead_jobs(storage: Storage) -> None:
    pending = storage.push(new_job())
    running = storage.push(new_job())
    storage.pop(QUEUE, "r1", limit=1)  # pending is first in line
    assert info(storage, pending).status is Status.RUNNING
    assert info(storage, running).status is Status.PENDING

    for job_id in (pending, running, uuid.uuid4()):
        assert storage.requeue(job_id) is False
    assert info(storage, pending).status is Status.RUNNING
    assert info(storage, pending).runner == "r1"


def test_purge_dead_forgets_jobs_dead_for_longer_than_given(
    storage: Storage, clock: ManualClock
) -> None:
    old = storage.push(new_job(policy=ONE_SHOT))
    recent = storage.push(new_job(policy=ONE_SHOT))
    alive = storage.push(new_job(run_at=clock.now() + 1000))
    kill(storage, old)
    clock.advance(10)
    kill(storage, recent)
    clock.advance(10)  # old died 20 s ago, recent 10 s ago

    assert storage.purge_dead(older_than=25) == 0
    assert storage.purge_dead(older_than=20) == 0  # exactly 20 s: not "more than"
    assert storage.purge_dead(older_than=15) == 1
    assert storage.info(old) is None
    assert info(storage, recent).status is Status.DEAD
    assert storage.requeue(old) is False

    assert storage.purge_dead() == 1
    assert storage.info(recent) is None
    assert info(storage, alive).status is Status.PENDING
    assert storage.stats() == {QUEUE: QueueStats(pending=1, running=0, dead=0, scheduled=1)}
    assert storage.purge_dead() == 0


def test_purge_dead_leaves_other_queues_live_jobs_alone(storage: Storage) -> None:
    dead = storage.push(new_job(queue="a", policy=ONE_SHOT))
    kill(storage, dead, queue="a")
    running = storage.push(new_job(queue="b"))
    pop_one(storage, queue="b")

    assert storage.purge_dead() == 1
    assert storage.info(dead) is None
    assert info(storage, running).status is Status.RUNNING
