"""Failures: retry counts, backoff timing, death."""

from __future__ import annotations

import pytest

from storage import Backoff, Disposition, JobResult, ManualClock, QueueStats, Status, Storage

from .support import QUEUE, info, new_job, policy, pop_one, utc


def _fail_until_dead(storage: Storage, clock: ManualClock, retries: int) -> list[Disposition]:
    job_id = storage.push(new_job(policy=policy(retries=retries, backoff=Backoff.linear(1))))
    dispositions = []
    for attempt in range(retries + 1):
        job = pop_one(storage)
        assert (job.id, job.retry_count) == (job_id, attempt)
        dispositions.append(storage.complete(job_id, "r1", JobResult.failure(f"boom {attempt}")))
        clock.advance(1)
    assert storage.pop(QUEUE, "r1") == []
    dead = info(storage, job_id)
    assert (dead.status, dead.retry_count) == (Status.DEAD, retries + 1)
    assert dead.last_error == f"boom {retries}"
    return dispositions


def test_count_0_runs_once_then_dies(storage: Storage, clock: ManualClock) -> None:
    assert _fail_until_dead(storage, clock, retries=0) == [Disposition.DEAD]


def test_count_2_runs_three_times_then_dies(storage: Storage, clock: ManualClock) -> None:
    assert _fail_until_dead(storage, clock, retries=2) == [
        Disposition.RETRYING,
        Disposition.RETRYING,
        Disposition.DEAD,
    ]


def test_infinite_retries_never_die(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=policy(retries=None, backoff=Backoff.linear(0.5))))
    for attempt in range(60):
        job = pop_one(storage)
        assert (job.id, job.retry_count) == (job_id, attempt)
        assert storage.complete(job_id, "r1", JobResult.failure("again")) is Disposition.RETRYING
        clock.advance(0.5)
    assert info(storage, job_id).retry_count == 60
    assert info(storage, job_id).status is Status.PENDING


def test_failure_keeps_the_error_and_counts_the_attempt(storage: Storage) -> None:
    job_id = storage.push(new_job())
    pop_one(storage)

    disposition = storage.complete(job_id, "r1", JobResult.failure("Traceback ...\nValueError"))

    assert disposition is Disposition.RETRYING
    job = info(storage, job_id)
    assert (job.status, job.retry_count, job.runner) == (Status.PENDING, 1, None)
    assert job.last_error == "Traceback ...\nValueError"
    assert storage.stats() == {QUEUE: QueueStats(pending=1, running=0, dead=0)}


def test_success_with_no_result_ttl_forgets_the_job(storage: Storage) -> None:
    # With a result_ttl (the default), its record is kept: see test_results.py.
    job_id = storage.push(new_job(policy=policy(result_ttl=0)))
    pop_one(storage)

    assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.FINISHED

    assert storage.info(job_id) is None
    assert storage.stats() == {}
    assert storage.list() == []


def test_linear_backoff_counts_from_completion(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=policy(backoff=Backoff.linear(3))))
    for _ in range(3):
        pop_one(storage)
        clock.advance(7)  # the attempt runs for 7 s
        completed = clock.now()
        assert storage.complete(job_id, "r1", JobResult.failure("x")) is Disposition.RETRYING

        assert info(storage, job_id).run_at == utc(completed + 3)
        assert storage.next_due(QUEUE) == completed + 3
        clock.advance(2.75)
        assert storage.pop(QUEUE, "r1") == []
        clock.advance(0.25)
    assert pop_one(storage).retry_count == 3


@pytest.mark.parametrize("base", [2, 3])
def test_exponential_backoff_counts_from_completion(
    storage: Storage, clock: ManualClock, base: int
) -> None:
    job_id = storage.push(new_job(policy=policy(backoff=Backoff.exponential(base))))
    for failures in range(1, 5):
        pop_one(storage)
        clock.advance(1.5)  # the attempt runs for 1.5 s
        completed = clock.now()
        assert storage.complete(job_id, "r1", JobResult.failure("x")) is Disposition.RETRYING

        delay = base**failures
        assert info(storage, job_id).run_at == utc(completed + delay)
        clock.advance(delay - 0.25)
        assert storage.pop(QUEUE, "r1") == []
        clock.advance(0.25)
    assert pop_one(storage).retry_count == 4
