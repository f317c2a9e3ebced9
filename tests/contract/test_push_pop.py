"""Pushing and popping: ids, order, scheduling, queues."""

from __future__ import annotations

import datetime as dt
import uuid

from storage import Backoff, ManualClock, MaxRetries, QueueStats, Status, Storage

from .support import QUEUE, ids, info, new_job, policy, pop_one, utc


def test_push_stores_the_job_as_given(storage: Storage, clock: ManualClock) -> None:
    pol = policy(retries=3, backoff=Backoff.exponential(3), heartbeat=2.0, timeout=30.0)
    job_id = storage.push(new_job(name="mail.Send", queue="mail", args=b"\x01\x02", policy=pol))

    assert isinstance(job_id, uuid.UUID)
    job = info(storage, job_id)
    assert (job.id, job.name, job.queue, job.args) == (job_id, "mail.Send", "mail", b"\x01\x02")
    assert job.status is Status.PENDING
    assert job.retry_count == 0
    assert job.max_retries == MaxRetries.count(3)
    assert job.backoff == Backoff.exponential(3)
    assert job.heartbeat_interval == 2.0
    assert job.timeout == 30.0
    assert job.last_error is None
    assert job.runner is None
    assert job.run_at == utc(clock.now())  # run_at=None means now
    assert job.enqueued_at.tzinfo is not None
    assert job.enqueued_at.utcoffset() == dt.timedelta(0)


def test_info_of_an_unknown_id_is_none(storage: Storage) -> None:
    assert storage.info(uuid.uuid4()) is None


def test_pop_claims_the_job_for_the_runner(storage: Storage) -> None:
    job_id = storage.push(new_job())

    job = pop_one(storage, "r1")

    assert (job.id, job.name, job.queue, job.args, job.retry_count) == (
        job_id,
        "tests.Job",
        QUEUE,
        b"\x80",
        0,
    )
    assert (info(storage, job_id).status, info(storage, job_id).runner) == (Status.RUNNING, "r1")
    assert storage.pop(QUEUE, "r2") == []  # held: nobody else gets it
    assert storage.stats() == {QUEUE: QueueStats(pending=0, running=1, dead=0)}


def test_pop_of_an_empty_or_unknown_queue_is_empty(storage: Storage) -> None:
    assert storage.pop(QUEUE, "r1") == []
    assert storage.pop("never-used", "r1", limit=3) == []


def test_pop_takes_at_most_limit(storage: Storage) -> None:
    pushed = [storage.push(new_job(args=bytes([i]))) for i in range(5)]

    assert ids(storage.pop(QUEUE, "r1", limit=2)) == pushed[:2]
    assert ids(storage.pop(QUEUE, "r1", limit=10)) == pushed[2:]
    assert storage.pop(QUEUE, "r1", limit=10) == []


def test_equal_run_at_pops_in_enqueue_order(storage: Storage, clock: ManualClock) -> None:
    run_at = clock.now() + 5
    pushed = [storage.push(new_job(args=bytes([i]), run_at=run_at)) for i in range(6)]
    clock.advance(5)

    popped = [pop_one(storage).id for _ in range(3)]
    popped += ids(storage.pop(QUEUE, "r1", limit=3))

    assert popped == pushed


def test_jobs_pushed_at_the_same_instant_pop_in_enqueue_order(storage: Storage) -> None:
    # The clock does not move: every run_at is the same "now".
    pushed = [storage.push(new_job(args=bytes([i]))) for i in range(20)]

    assert ids(storage.pop(QUEUE, "r1", limit=20)) == pushed


def test_due_jobs_pop_in_run_at_order(storage: Storage, clock: ManualClock) -> None:
    now = clock.now()
    late = storage.push(new_job(run_at=now - 1))
    early = storage.push(new_job(run_at=now - 3))
    middle = storage.push(new_job(run_at=now - 2))
    current = storage.push(new_job())

    assert ids(storage.pop(QUEUE, "r1", limit=10)) == [early, middle, late, current]


def test_scheduled_job_is_not_popped_before_its_run_at(
    storage: Storage, clock: ManualClock
) -> None:
    scheduled = storage.push(new_job(run_at=clock.now() + 10))
    assert storage.pop(QUEUE, "r1") == []

    clock.advance(9.75)
    assert storage.pop(QUEUE, "r1") == []
    due_now = storage.push(new_job())  # pushed later, but due earlier
    assert pop_one(storage).id == due_now
    assert storage.pop(QUEUE, "r1") == []

    clock.advance(0.25)  # exactly run_at: due
    assert pop_one(storage).id == scheduled


def test_push_many_keeps_order_and_returns_ids_in_order(storage: Storage) -> None:
    batch = [new_job(args=bytes([i])) for i in range(10)]

    pushed = storage.push_many(batch)

    assert len(pushed) == len(set(pushed)) == 10
    assert all(isinstance(job_id, uuid.UUID) for job_id in pushed)
    assert [info(storage, job_id).args for job_id in pushed] == [bytes([i]) for i in range(10)]
    assert ids(storage.pop(QUEUE, "r1", limit=10)) == pushed


def test_push_many_after_push_queues_behind(storage: Storage, clock: ManualClock) -> None:
    first = storage.push(new_job())
    later = storage.push_many([new_job(), new_job()])
    scheduled = storage.push_many([new_job(run_at=clock.now() + 1), new_job()])

    assert ids(storage.pop(QUEUE, "r1", limit=10)) == [first, *later, scheduled[1]]
    clock.advance(1)
    assert ids(storage.pop(QUEUE, "r1", limit=10)) == [scheduled[0]]


def test_push_many_of_nothing(storage: Storage) -> None:
    assert storage.push_many([]) == []
    assert storage.stats() == {}


def test_queues_are_independent(storage: Storage, clock: ManualClock) -> None:
    short = policy(heartbeat=1.0)
    a_jobs = [storage.push(new_job(queue="a", policy=short)) for _ in range(2)]
    b_jobs = [storage.push(new_job(queue="b")) for _ in range(3)]
    storage.push(new_job(queue="c", run_at=clock.now() + 100))

    assert ids(storage.pop("b", "r1", limit=10)) == b_jobs
    assert ids(storage.pop("a", "r1", limit=1)) == a_jobs[:1]
    assert storage.stats() == {
        "a": QueueStats(pending=1, running=1, dead=0, oldest_due_at=clock.now()),
        "b": QueueStats(pending=0, running=3, dead=0),
        "c": QueueStats(pending=1, running=0, dead=0, scheduled=1),
    }
    assert storage.next_due("c") == clock.now() + 100

    # a's claim goes stale; it is a's to take over, not b's or c's.
    clock.advance(6)
    assert storage.pop("b", "r2", limit=10) == []
    assert storage.pop("c", "r2", limit=10) == []
    assert ids(storage.pop("a", "r2", limit=10)) == a_jobs
