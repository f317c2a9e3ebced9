"""Kept records: succeeded and cancelled jobs, their expiry, and cancel().

One test (or a few) per rule of the issue-13 storage contract: what an ended
job's record holds (status, value, times), when it goes (``result_ttl``,
``info`` vs ``expire``), what ``cancel`` does to a job in each state, and
that kept records never show in ``stats`` nor make a job poppable again.
"""

from __future__ import annotations

import uuid

import pytest

from storage import (
    Disposition,
    JobResult,
    ManualClock,
    Policy,
    QueueStats,
    Status,
    Storage,
)
from storage.codec import encode

from .support import QUEUE, ids, info, kill, new_job, policy, pop_one, utc

TTL = 600.0


def kept(ttl: float = TTL, *, retries: int | None = 5, heartbeat: float = 5.0) -> Policy:
    """A Policy (see support.policy) that keeps ended records ``ttl`` seconds."""
    return policy(retries=retries, heartbeat=heartbeat, result_ttl=ttl)


KEPT = kept()
UNKEPT = kept(0)


def run(storage: Storage, job_id: uuid.UUID, result: JobResult, runner: str = "r1") -> Disposition:
    """Pop ``job_id`` (which must be next in QUEUE) and complete it with ``result``."""
    assert pop_one(storage, runner).id == job_id
    return storage.complete(job_id, runner, result)


# -- rule 1: success -----------------------------------------------------------------


def test_a_success_keeps_a_succeeded_record_with_its_value_and_times(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=KEPT))
    clock.advance(3)
    started = clock.now()
    pop_one(storage)
    clock.advance(2)
    value = encode({"answer": 42, "list": [1, 2]})

    assert storage.complete(job_id, "r1", JobResult.success(value)) is Disposition.FINISHED

    job = info(storage, job_id)
    assert (job.status, job.runner, job.last_error) == (Status.SUCCEEDED, None, None)
    assert job.result == value
    assert job.value() == {"answer": 42, "list": [1, 2]}
    assert job.started_at == utc(started)
    assert job.finished_at == utc(clock.now())
    assert job.expires_at == utc(clock.now() + TTL)
    assert (job.retry_count, job.attempts, job.ended) == (0, 1, True)
    assert job.name == "tests.Job" and job.queue == QUEUE and job.args == b"\x80"


def test_a_success_returning_none_keeps_no_value(storage: Storage) -> None:
    job_id = storage.push(new_job(policy=KEPT))
    run(storage, job_id, JobResult.success())

    job = info(storage, job_id)
    assert job.status is Status.SUCCEEDED
    assert job.result is None
    assert job.value() is None


def test_a_success_after_failures_keeps_its_count_and_last_attempts_start(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=KEPT))
    run(storage, job_id, JobResult.failure("first"))
    clock.advance(1)  # the linear 1 s backoff
    started = clock.now()
    pop_one(storage)
    clock.advance(1)
    storage.complete(job_id, "r1", JobResult.success(encode("ok")))

    job = info(storage, job_id)
    assert (job.status, job.retry_count, job.attempts) == (Status.SUCCEEDED, 1, 2)
    assert job.started_at == utc(started)
    assert job.value() == "ok"


def test_a_stale_claim_taken_over_starts_again_at_the_new_pop(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=kept(heartbeat=1.0)))
    pop_one(storage, "r1")
    clock.advance(6)  # past 5 heartbeats
    restarted = clock.now()
    assert pop_one(storage, "r2").id == job_id
    clock.advance(1)

    assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.NOT_HELD
    assert storage.complete(job_id, "r2", JobResult.success()) is Disposition.FINISHED
    assert info(storage, job_id).started_at == utc(restarted)


def test_a_success_with_ttl_0_removes_the_job(storage: Storage) -> None:
    job_id = storage.push(new_job(policy=UNKEPT))
    assert run(storage, job_id, JobResult.success(encode(1))) is Disposition.FINISHED
    assert storage.info(job_id) is None
    assert storage.list() == []
    assert storage.stats() == {}
    assert storage.expire() == 0


def test_a_succeeded_record_is_never_popped_and_leaves_stats(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=KEPT))
    run(storage, job_id, JobResult.success())

    assert storage.stats() == {}
    assert storage.next_due(QUEUE) is None
    clock.advance(TTL / 2)
    assert storage.pop(QUEUE, "r1", limit=10) == []
    assert info(storage, job_id).status is Status.SUCCEEDED


def test_a_success_frees_the_unique_key(storage: Storage, clock: ManualClock) -> None:
    first = storage.push(new_job(policy=KEPT, unique_key="k"))
    run(storage, first, JobResult.success())

    second = storage.push(new_job(policy=KEPT, unique_key="k"))

    assert second != first
    assert info(storage, second).status is Status.PENDING
    assert info(storage, first).status is Status.SUCCEEDED
    assert info(storage, first).unique_key == "k"
    assert storage.stats() == {
        QUEUE: QueueStats(pending=1, running=0, dead=0, oldest_due_at=clock.now())
    }


# -- rule 2: a running job ends cancelled ----------------------------------------------


def test_a_cancelled_outcome_keeps_a_cancelled_record(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=kept(retries=None), unique_key="k"))
    started = clock.now()
    pop_one(storage)
    clock.advance(2)

    assert storage.complete(job_id, "r1", JobResult.cancelled("stop")) is Disposition.CANCELLED

    job = info(storage, job_id)
    assert (job.status, job.runner, job.last_error) == (Status.CANCELLED, None, "stop")
    assert job.result is None
    assert job.started_at == utc(started)
    assert job.finished_at == utc(clock.now())
    assert job.expires_at == utc(clock.now() + TTL)
    assert (job.retry_count, job.attempts, job.ended) == (0, 1, True)
    # Never retried, whatever its retry policy; never in stats; key free.
    assert storage.stats() == {}
    assert storage.next_due(QUEUE) is None
    clock.advance(100)
    assert storage.pop(QUEUE, "r1", limit=10) == []
    assert storage.push(new_job(policy=KEPT, unique_key="k")) != job_id


def test_release_with_a_cancelled_outcome_cancels_every_held_job(storage: Storage) -> None:
    a = storage.push(new_job(policy=KEPT))
    b = storage.push(new_job(policy=UNKEPT))
    storage.pop(QUEUE, "r1", limit=2)

    settled = dict(storage.release("r1", JobResult.cancelled("shutdown")))

    assert settled == {a: Disposition.CANCELLED, b: Disposition.CANCELLED}
    assert (info(storage, a).status, info(storage, a).last_error) == (
        Status.CANCELLED,
        "shutdown",
    )
    assert storage.info(b) is None  # ttl 0
    assert storage.stats() == {}


def test_a_cancelled_outcome_with_ttl_0_removes_the_job(storage: Storage) -> None:
    job_id = storage.push(new_job(policy=UNKEPT, unique_key="k"))
    assert run(storage, job_id, JobResult.cancelled("stop")) is Disposition.CANCELLED
    assert storage.info(job_id) is None
    assert storage.list() == []
    assert storage.push(new_job(unique_key="k")) != job_id


# -- rule 3: cancel() ----------------------------------------------------------------


def _assert_cancelled_while_waiting(
    storage: Storage, clock: ManualClock, job_id: uuid.UUID, retry_count: int = 0
) -> None:
    job = info(storage, job_id)
    assert (job.status, job.runner, job.last_error) == (Status.CANCELLED, None, "no longer")
    assert job.started_at is None
    assert job.finished_at == utc(clock.now())
    assert job.expires_at == utc(clock.now() + TTL)
    assert (job.retry_count, job.attempts) == (retry_count, retry_count)
    assert storage.stats() == {}
    assert storage.next_due(QUEUE) is None
    clock.advance(TTL / 2)
    assert storage.pop(QUEUE, "r1", limit=10) == []


def test_cancel_a_due_job(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=KEPT))
    clock.advance(1)
    assert storage.cancel(job_id, "no longer") is Status.PENDING
    _assert_cancelled_while_waiting(storage, clock, job_id)


def test_cancel_a_job_scheduled_for_later(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=KEPT, run_at=clock.now() + 60))
    assert storage.cancel(job_id, "no longer") is Status.PENDING
    _assert_cancelled_while_waiting(storage, clock, job_id)


def test_cancel_a_job_waiting_out_its_backoff(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=KEPT))
    assert run(storage, job_id, JobResult.failure("oops")) is Disposition.RETRYING
    assert storage.stats()[QUEUE].pending == 1
    assert storage.cancel(job_id, "no longer") is Status.PENDING
    _assert_cancelled_while_waiting(storage, clock, job_id, retry_count=1)


def test_cancel_among_other_jobs_takes_only_that_one(storage: Storage, clock: ManualClock) -> None:
    before = storage.push(new_job(policy=KEPT))
    doomed = storage.push(new_job(policy=KEPT))
    after = storage.push(new_job(policy=KEPT))

    assert storage.cancel(doomed, "no") is Status.PENDING

    assert storage.stats() == {
        QUEUE: QueueStats(pending=2, running=0, dead=0, oldest_due_at=clock.now())
    }
    assert [job.id for job in storage.pop(QUEUE, "r1", limit=10)] == [before, after]


def test_cancel_with_ttl_0_removes_a_pending_job(storage: Storage) -> None:
    job_id = storage.push(new_job(policy=UNKEPT, unique_key="k"))
    assert storage.cancel(job_id, "no") is Status.PENDING
    assert storage.info(job_id) is None
    assert storage.stats() == {}
    assert storage.push(new_job(policy=UNKEPT, unique_key="k")) != job_id
    assert storage.cancel(job_id, "again") is None


def test_cancel_frees_the_unique_key(storage: Storage) -> None:
    first = storage.push(new_job(policy=KEPT, unique_key="k"))
    assert storage.cancel(first, "no") is Status.PENDING

    second = storage.push(new_job(policy=KEPT, unique_key="k"))

    assert second != first
    assert info(storage, second).status is Status.PENDING
    assert info(storage, first).unique_key == "k"


def test_cancel_a_running_job_changes_nothing(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=KEPT, unique_key="k"))
    pop_one(storage)
    before = info(storage, job_id)
    assert before.started_at == utc(clock.now())
    assert (before.finished_at, before.expires_at) == (None, None)

    assert storage.cancel(job_id, "stop") is Status.RUNNING

    assert info(storage, job_id) == before
    assert before.status is Status.RUNNING and before.runner == "r1"
    assert storage.push(new_job(policy=KEPT, unique_key="k")) == job_id  # still held
    assert storage.heartbeat("r1", [job_id]) == []
    # Its runner then stops it, and completes it cancelled.
    clock.advance(1)
    assert storage.complete(job_id, "r1", JobResult.cancelled("stop")) is Disposition.CANCELLED
    assert info(storage, job_id).status is Status.CANCELLED
    assert storage.cancel(job_id, "stop") is Status.CANCELLED


@pytest.mark.parametrize("ending", ["succeeded", "cancelled", "dead"])
def test_cancel_an_ended_job_changes_nothing(storage: Storage, ending: str) -> None:
    job_id = storage.push(new_job(policy=kept(retries=0)))
    if ending == "succeeded":
        run(storage, job_id, JobResult.success(encode(7)))
    elif ending == "cancelled":
        run(storage, job_id, JobResult.cancelled("first"))
    else:
        kill(storage, job_id)
    before = info(storage, job_id)

    assert storage.cancel(job_id, "late") is before.status
    assert before.status.value == ending
    assert info(storage, job_id) == before


def test_cancel_an_unknown_or_expired_job_returns_none(
    storage: Storage, clock: ManualClock
) -> None:
    assert storage.cancel(uuid.uuid4(), "who?") is None
    job_id = storage.push(new_job(policy=kept(10)))
    run(storage, job_id, JobResult.success())
    clock.advance(10)
    assert storage.cancel(job_id, "late") is None  # expired, expire() not run yet
    assert storage.expire() == 1
    assert storage.cancel(job_id, "late") is None


# -- rule 4: dead jobs ---------------------------------------------------------------


def test_a_dead_job_has_finished_at_and_no_expiry(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=kept(retries=0)))
    started = clock.now()
    pop_one(storage)
    clock.advance(4)
    storage.complete(job_id, "r1", JobResult.failure("fatal"))

    job = info(storage, job_id)
    assert job.status is Status.DEAD
    assert job.started_at == utc(started)
    assert job.finished_at == utc(clock.now())
    assert job.expires_at is None
    assert (job.retry_count, job.attempts, job.ended) == (1, 1, True)
    clock.advance(10 * TTL)
    assert storage.expire() == 0
    assert info(storage, job_id).status is Status.DEAD


def test_requeue_clears_finished_at(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=kept(retries=0)))
    kill(storage, job_id)
    clock.advance(5)

    assert storage.requeue(job_id) is True

    job = info(storage, job_id)
    assert (job.status, job.finished_at, job.expires_at) == (Status.PENDING, None, None)
    assert job.ended is False


def test_requeue_leaves_succeeded_and_cancelled_records_alone(storage: Storage) -> None:
    done = storage.push(new_job(policy=KEPT))
    run(storage, done, JobResult.success())
    stopped = storage.push(new_job(policy=KEPT))
    assert storage.cancel(stopped, "no") is Status.PENDING

    for job_id, status in ((done, Status.SUCCEEDED), (stopped, Status.CANCELLED)):
        assert storage.requeue(job_id) is False
        assert info(storage, job_id).status is status
    assert storage.stats() == {}
    assert storage.purge_dead() == 0  # not dead either
    assert info(storage, done).status is Status.SUCCEEDED


# -- rule 5: expiry ------------------------------------------------------------------


def test_info_hides_a_record_from_its_expiry_on(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=kept(30)))
    run(storage, job_id, JobResult.success())
    clock.advance(29.5)
    assert info(storage, job_id).status is Status.SUCCEEDED
    assert ids(storage.list()) == [job_id]

    clock.advance(0.5)  # exactly at expires_at: gone, though expire() has not run

    assert storage.info(job_id) is None
    assert storage.list() == []
    assert storage.list(status=Status.SUCCEEDED) == []
    assert storage.stats() == {}


def test_expire_removes_only_expired_records(storage: Storage, clock: ManualClock) -> None:
    short = storage.push(new_job(policy=kept(10)))
    long = storage.push(new_job(policy=kept(100)))
    cancelled = storage.push(new_job(policy=kept(10)))
    dead = storage.push(new_job(policy=kept(10, retries=0)))
    run(storage, short, JobResult.success())
    run(storage, long, JobResult.success())
    storage.cancel(cancelled, "no")
    kill(storage, dead)
    pending = storage.push(new_job(policy=kept(1), run_at=clock.now() + 1000))
    running = storage.push(new_job(policy=kept(1, heartbeat=1000)))
    assert pop_one(storage).id == running

    assert storage.expire() == 0
    clock.advance(9)
    assert storage.expire() == 0
    clock.advance(1)

    assert storage.expire() == 2  # short and cancelled

    assert storage.info(short) is None and storage.info(cancelled) is None
    assert info(storage, long).status is Status.SUCCEEDED
    assert info(storage, dead).status is Status.DEAD
    assert info(storage, pending).status is Status.PENDING
    assert info(storage, running).status is Status.RUNNING
    assert storage.expire() == 0
    clock.advance(90)
    assert storage.expire() == 1
    assert storage.info(long) is None
    assert set(ids(storage.list())) == {pending, running, dead}


def test_expire_counts_many_records_of_mixed_ttls(storage: Storage, clock: ManualClock) -> None:
    ttls = [5.0, 1.0, 3.0, 1.0, 5.0, 2.0]
    job_ids = [storage.push(new_job(policy=kept(ttl))) for ttl in ttls]
    claims = storage.pop(QUEUE, "r1", limit=len(ttls))
    assert [claim.id for claim in claims] == job_ids
    for job_id in job_ids:
        storage.complete(job_id, "r1", JobResult.success())

    removed = []
    for _ in range(5):
        clock.advance(1)
        removed.append(storage.expire())

    assert removed == [2, 1, 1, 0, 2]
    assert storage.list() == []


def test_an_expired_record_leaves_its_keys_new_holder_alone(
    storage: Storage, clock: ManualClock
) -> None:
    first = storage.push(new_job(policy=kept(10), unique_key="k"))
    run(storage, first, JobResult.success())
    second = storage.push(new_job(policy=kept(10), unique_key="k"))
    clock.advance(10)

    assert storage.expire() == 1

    # The expired record took nothing with it: the live job keeps the key.
    assert storage.push(new_job(unique_key="k")) == second
    assert info(storage, second).unique_key == "k"


# -- rule 6: list and stats ----------------------------------------------------------


@pytest.fixture
def every_status(storage: Storage, clock: ManualClock) -> dict[str, uuid.UUID]:
    """Queue "b": one job per status, ended at distinct times; queue "a": two records."""
    jobs = {
        "b_dead": storage.push(new_job(queue="b", policy=kept(retries=0))),
        "b_succeeded": storage.push(new_job(queue="b", policy=KEPT)),
        "b_running": storage.push(new_job(queue="b", policy=KEPT)),
        "b_cancelled": storage.push(new_job(queue="b", policy=KEPT)),
        "b_pending": storage.push(new_job(queue="b", policy=KEPT, run_at=clock.now() + 50)),
        "a_cancelled": storage.push(new_job(queue="a", policy=KEPT)),
        "a_succeeded": storage.push(new_job(queue="a", policy=KEPT)),
    }
    kill(storage, jobs["b_dead"], queue="b")
    clock.advance(1)
    assert pop_one(storage, queue="b").id == jobs["b_succeeded"]
    storage.complete(jobs["b_succeeded"], "r1", JobResult.success())
    clock.advance(1)
    assert pop_one(storage, queue="b").id == jobs["b_running"]
    assert storage.cancel(jobs["b_cancelled"], "no") is Status.PENDING
    clock.advance(1)
    assert storage.cancel(jobs["a_cancelled"], "no") is Status.PENDING
    clock.advance(1)
    assert pop_one(storage, queue="a").id == jobs["a_succeeded"]
    storage.complete(jobs["a_succeeded"], "r1", JobResult.success(encode("a")))
    return jobs


def test_list_gives_kept_records_with_the_rest_in_id_order(
    storage: Storage, every_status: dict[str, uuid.UUID]
) -> None:
    listing = storage.list()

    # Queued in the fixture's order; ending changes no job's place.
    assert ids(listing) == list(every_status.values())
    assert [(job.queue, job.status) for job in listing] == [
        ("b", Status.DEAD),
        ("b", Status.SUCCEEDED),
        ("b", Status.RUNNING),
        ("b", Status.CANCELLED),
        ("b", Status.PENDING),
        ("a", Status.CANCELLED),
        ("a", Status.SUCCEEDED),
    ]
    assert storage.list() == listing  # stable
    assert ids(storage.list(after=listing[3].id, limit=2)) == ids(listing)[4:6]


def test_list_filters_kept_records(storage: Storage, every_status: dict[str, uuid.UUID]) -> None:
    succeeded = storage.list(status=Status.SUCCEEDED)
    assert ids(succeeded) == [every_status["b_succeeded"], every_status["a_succeeded"]]
    assert succeeded[1].value() == "a"
    assert ids(storage.list(status=Status.CANCELLED)) == [
        every_status["b_cancelled"],
        every_status["a_cancelled"],
    ]
    assert ids(storage.list(queue="b", status=Status.CANCELLED)) == [every_status["b_cancelled"]]
    assert ids(storage.list(queue="a", status=Status.PENDING)) == []
    assert ids(storage.list(status=Status.DEAD)) == [every_status["b_dead"]]


def test_stats_leave_out_kept_records(storage: Storage, every_status: dict[str, uuid.UUID]) -> None:
    # Queue "a" holds only kept records: absent.
    assert storage.stats() == {"b": QueueStats(pending=1, running=1, dead=1, scheduled=1)}
    assert storage.next_due("a") is None


def test_a_queue_of_ended_jobs_has_empty_stats(storage: Storage) -> None:
    job_ids = storage.push_many([new_job(policy=KEPT) for _ in range(5)])
    for claim in storage.pop(QUEUE, "r1", limit=3):
        storage.complete(claim.id, "r1", JobResult.success())
    for job_id in job_ids[3:]:
        storage.cancel(job_id, "no")
    assert storage.stats() == {}
    assert len(storage.list()) == 5


# -- rule 7: settling an ended record --------------------------------------------------


@pytest.mark.parametrize("ending", ["succeeded", "cancelled"])
def test_an_ended_record_is_not_held_by_anyone(storage: Storage, ending: str) -> None:
    job_id = storage.push(new_job(policy=KEPT))
    if ending == "succeeded":
        run(storage, job_id, JobResult.success(encode(1)))
    else:
        run(storage, job_id, JobResult.cancelled("stop"))
    before = info(storage, job_id)

    assert storage.heartbeat("r1", [job_id]) == [job_id]
    for result in (
        JobResult.success(),
        JobResult.failure("late"),
        JobResult.cancelled("late"),
        JobResult.unexecuted(),
    ):
        assert storage.complete(job_id, "r1", result) is Disposition.NOT_HELD
    assert storage.release("r1", JobResult.failure("died")) == []
    disposition, popped = storage.complete_and_pop(
        [(job_id, "r1", JobResult.success())], [(QUEUE, "r1", 5)]
    )
    assert (disposition, popped) == ([Disposition.NOT_HELD], [[]])
    assert info(storage, job_id) == before
