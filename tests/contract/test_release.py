"""release(): settling every job of a runner that went away."""

from __future__ import annotations

from storage import Backoff, Disposition, JobResult, ManualClock, QueueStats, Status, Storage

from .support import QUEUE, ids, info, new_job, policy, pop_one

DIED = JobResult.failure("arbiter died")


def test_release_counts_each_held_job_as_a_failed_attempt(
    storage: Storage, clock: ManualClock
) -> None:
    first, second, others = (storage.push(new_job()) for _ in range(3))
    assert ids(storage.pop(QUEUE, "r1", limit=2)) == [first, second]
    assert ids(storage.pop(QUEUE, "r2")) == [others]

    settled = storage.release("r1", DIED)

    assert sorted(settled) == sorted(
        [(first, Disposition.RETRYING), (second, Disposition.RETRYING)]
    )
    for job_id in (first, second):
        job = info(storage, job_id)
        assert (job.status, job.retry_count, job.runner) == (Status.PENDING, 1, None)
        assert job.last_error == "arbiter died"
    assert info(storage, others).runner == "r2"  # another runner's job is untouched
    assert storage.stats() == {QUEUE: QueueStats(pending=2, running=1, dead=0)}
    assert storage.release("r1", DIED) == []


def test_a_job_that_kills_its_runner_ends_dead_after_its_retries(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=policy(retries=2, backoff=Backoff.linear(1))))
    dispositions = []
    for attempt in range(3):
        runner = f"arbiter-{attempt}"  # each attempt kills a fresh arbiter process
        assert pop_one(storage, runner).id == job_id
        dispositions.append(dict(storage.release(runner, DIED))[job_id])
        clock.advance(1)

    assert dispositions == [Disposition.RETRYING, Disposition.RETRYING, Disposition.DEAD]
    job = info(storage, job_id)
    assert (job.status, job.retry_count, job.last_error) == (Status.DEAD, 3, "arbiter died")
    assert storage.pop(QUEUE, "arbiter-3") == []


def test_release_unexecuted_puts_jobs_back_unchanged(storage: Storage, clock: ManualClock) -> None:
    run_at = clock.now()
    first, second = storage.push_many([new_job(), new_job()])
    storage.pop(QUEUE, "r1", limit=2)
    clock.advance(30)

    settled = storage.release("r1", JobResult.unexecuted())

    assert sorted(settled) == sorted(
        [(first, Disposition.REQUEUED), (second, Disposition.REQUEUED)]
    )
    for job_id in (first, second):
        job = info(storage, job_id)
        assert (job.status, job.retry_count, job.last_error) == (Status.PENDING, 0, None)
        assert job.run_at == info(storage, first).run_at
        assert job.run_at.timestamp() == run_at
    assert ids(storage.pop(QUEUE, "r2", limit=2)) == [first, second]


def test_release_of_a_runner_holding_nothing(storage: Storage, clock: ManualClock) -> None:
    storage.push(new_job())
    assert storage.release("nobody", DIED) == []
    assert storage.stats() == {
        QUEUE: QueueStats(pending=1, running=0, dead=0, oldest_due_at=clock.now())
    }


def test_after_release_the_runner_no_longer_holds_its_jobs(storage: Storage) -> None:
    job_id = storage.push(new_job())
    pop_one(storage, "r1")
    storage.release("r1", DIED)

    assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.NOT_HELD
    assert storage.heartbeat("r1", [job_id]) == [job_id]
