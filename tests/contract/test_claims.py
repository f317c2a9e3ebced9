"""Claims: heartbeats, stale takeover, settling only by the holder."""

from __future__ import annotations

import uuid

from storage import Backoff, Disposition, JobResult, ManualClock, Status, Storage

from .support import QUEUE, ids, info, new_job, policy, pop_one

# Heartbeat every 2 s: a claim goes stale after 5 x 2 = 10 s without one.
HEARTBEAT = 2.0
LEASE = 5 * HEARTBEAT
TICK = 1 / 64  # a moment, exact in floating point


def _held_by(storage: Storage, job_id: uuid.UUID) -> tuple[Status, str | None, int]:
    job = info(storage, job_id)
    return job.status, job.runner, job.retry_count


def test_a_claim_is_taken_over_only_after_five_missed_heartbeats(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=policy(heartbeat=HEARTBEAT)))
    pop_one(storage, "r1")

    clock.advance(LEASE - TICK)
    assert storage.pop(QUEUE, "r2") == []
    clock.advance(TICK)  # exactly 5 intervals: not yet stale
    assert storage.pop(QUEUE, "r2") == []
    assert _held_by(storage, job_id) == (Status.RUNNING, "r1", 0)

    clock.advance(TICK)  # strictly older than 5 intervals
    taken = pop_one(storage, "r2")

    assert taken.id == job_id
    assert _held_by(storage, job_id) == (Status.RUNNING, "r2", 0)


def test_heartbeat_extends_the_claim(storage: Storage, clock: ManualClock) -> None:
    job_id = storage.push(new_job(policy=policy(heartbeat=HEARTBEAT)))
    pop_one(storage, "r1")

    clock.advance(LEASE - 2)
    assert storage.heartbeat("r1", [job_id]) == []
    clock.advance(LEASE)  # 18 s after the pop, but exactly 10 s after the heartbeat
    assert storage.pop(QUEUE, "r2") == []
    assert storage.heartbeat("r1", [job_id]) == []
    clock.advance(LEASE)
    assert storage.pop(QUEUE, "r2") == []

    clock.advance(TICK)
    assert pop_one(storage, "r2").id == job_id


def test_heartbeat_even_late_keeps_a_claim_nobody_took(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=policy(heartbeat=HEARTBEAT)))
    pop_one(storage, "r1")
    clock.advance(LEASE + 1)  # stale, but no other runner came

    assert storage.heartbeat("r1", [job_id]) == []
    assert storage.pop(QUEUE, "r2") == []
    assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.FINISHED


def test_heartbeat_reports_the_jobs_the_runner_does_not_hold(storage: Storage) -> None:
    mine, theirs, waiting = (storage.push(new_job()) for _ in range(3))
    assert ids(storage.pop(QUEUE, "r1")) == [mine]
    assert ids(storage.pop(QUEUE, "r2")) == [theirs]
    unknown = uuid.uuid4()

    lost = storage.heartbeat("r1", [mine, theirs, waiting, unknown])

    assert set(lost) == {theirs, waiting, unknown}
    assert len(lost) == 3
    assert storage.heartbeat("r1", []) == []


def test_stale_claims_come_first_earliest_expiry_first(
    storage: Storage, clock: ManualClock
) -> None:
    slow = storage.push(new_job(policy=policy(heartbeat=4.0)))  # stale after 20 s
    fast = storage.push(new_job(policy=policy(heartbeat=1.0)))  # stale after 5 s
    assert ids(storage.pop(QUEUE, "r1", limit=2)) == [slow, fast]
    early = storage.push(new_job(run_at=clock.now() - 100))  # pending, long overdue

    clock.advance(21)

    assert ids(storage.pop(QUEUE, "r2", limit=3)) == [fast, slow, early]


def test_only_the_holder_settles_a_job(storage: Storage) -> None:
    job_id = storage.push(new_job())
    pop_one(storage, "r1")

    for result in (JobResult.success(), JobResult.failure("x"), JobResult.unexecuted()):
        assert storage.complete(job_id, "r2", result) is Disposition.NOT_HELD
    assert _held_by(storage, job_id) == (Status.RUNNING, "r1", 0)
    assert info(storage, job_id).last_error is None

    assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.FINISHED
    assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.NOT_HELD


def test_a_job_taken_over_cannot_be_settled_by_its_old_runner(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=policy(heartbeat=HEARTBEAT)))
    pop_one(storage, "r1")
    clock.advance(LEASE + TICK)
    assert pop_one(storage, "r2").id == job_id

    assert storage.complete(job_id, "r1", JobResult.failure("late")) is Disposition.NOT_HELD
    assert storage.heartbeat("r1", [job_id]) == [job_id]
    assert storage.release("r1", JobResult.failure("r1 died")) == []
    assert _held_by(storage, job_id) == (Status.RUNNING, "r2", 0)
    assert info(storage, job_id).last_error is None

    assert storage.complete(job_id, "r2", JobResult.success()) is Disposition.FINISHED


def test_jobs_not_running_cannot_be_completed(storage: Storage, clock: ManualClock) -> None:
    pending = storage.push(new_job())
    scheduled = storage.push(new_job(run_at=clock.now() + 60))

    for job_id in (pending, scheduled, uuid.uuid4()):
        assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.NOT_HELD
    assert info(storage, pending).status is Status.PENDING
    assert info(storage, scheduled).status is Status.PENDING


def test_complete_and_pop_settles_as_one_by_one(storage: Storage, clock: ManualClock) -> None:
    a, b, c, d = (storage.push(new_job()) for _ in range(4))
    held = ids(storage.pop(QUEUE, "r1", limit=3))
    assert held == [a, b, c]
    assert ids(storage.pop(QUEUE, "r2")) == [d]

    settled, popped = storage.complete_and_pop(
        [
            (a, "r1", JobResult.success()),
            (b, "r1", JobResult.failure("boom")),
            (c, "r1", JobResult.success()),
            (d, "r1", JobResult.success()),  # held by r2: not r1's to settle
            (a, "r1", JobResult.success()),  # twice: the second finds it gone
        ],
        [],
    )
    assert settled == [
        Disposition.FINISHED,
        Disposition.RETRYING,
        Disposition.FINISHED,
        Disposition.NOT_HELD,
        Disposition.NOT_HELD,
    ]
    assert popped == []
    assert info(storage, a).status is Status.SUCCEEDED
    assert info(storage, c).status is Status.SUCCEEDED
    assert info(storage, b).retry_count == 1
    assert info(storage, d).runner == "r2"


def test_complete_and_pop_deals_jobs_in_request_order(storage: Storage, clock: ManualClock) -> None:
    first = [storage.push(new_job()) for _ in range(4)]
    other = storage.push(new_job(queue="other"))

    settled, popped = storage.complete_and_pop(
        [],
        [(QUEUE, "r1", 2), ("other", "r1", 3), (QUEUE, "r2", 1), (QUEUE, "r3", 2)],
    )
    assert settled == []
    assert [ids(jobs) for jobs in popped] == [first[:2], [other], first[2:3], first[3:]]
    assert info(storage, first[3]).runner == "r3"
    assert info(storage, first[2]).runner == "r2"


def test_complete_and_pop_completes_before_it_pops(storage: Storage, clock: ManualClock) -> None:
    now_due = policy(backoff=Backoff.linear(0.0), heartbeat=1.0)
    failing = storage.push(new_job(policy=now_due))
    stale = storage.push(new_job(policy=now_due))
    assert ids(storage.pop(QUEUE, "r1", limit=2)) == [failing, stale]
    clock.advance(5.5)  # r1's claims are stale now

    settled, popped = storage.complete_and_pop(
        [(failing, "r1", JobResult.failure("boom")), (stale, "r1", JobResult.success())],
        [(QUEUE, "r2", 5)],
    )
    # The success took the stale claim out first; the failure is due again at once.
    assert settled == [Disposition.RETRYING, Disposition.FINISHED]
    assert [ids(jobs) for jobs in popped] == [[failing]]


def test_complete_and_pop_by_a_stranger_leaves_a_stale_claim_to_take(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(policy=policy(heartbeat=1.0)))
    storage.pop(QUEUE, "r1")
    clock.advance(5.5)

    settled, popped = storage.complete_and_pop(
        [(job_id, "r2", JobResult.success())], [(QUEUE, "r2", 1)]
    )
    assert settled == [Disposition.NOT_HELD]
    assert [ids(jobs) for jobs in popped] == [[job_id]]
    assert info(storage, job_id).runner == "r2"


def test_any_runner_name_claims_and_settles(storage: Storage, clock: ManualClock) -> None:
    odd = 'r "1", {x} \\ NULL'
    first, second = storage.push(new_job()), storage.push(new_job())

    _, popped = storage.complete_and_pop([], [(QUEUE, odd, 1), (QUEUE, "NULL", 1)])
    assert [ids(jobs) for jobs in popped] == [[first], [second]]
    assert info(storage, first).runner == odd
    assert info(storage, second).runner == "NULL"

    settled, _ = storage.complete_and_pop(
        [(first, odd, JobResult.success()), (second, "NULL", JobResult.success())], []
    )
    assert settled == [Disposition.FINISHED, Disposition.FINISHED]
