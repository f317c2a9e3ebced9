"""Times that are not binary fractions (0.3 s, 1.438 s) still land on their boundaries.

A backend that keeps times in another unit than float seconds must convert
without drifting: advancing the clock by exactly the backoff makes a retry due,
and exactly five heartbeat intervals is never yet stale.
"""

from __future__ import annotations

import pytest

from storage import Backoff, Disposition, JobResult, ManualClock, Storage

from .support import QUEUE, info, new_job, policy, pop_one, utc


@pytest.mark.parametrize(("work", "backoff"), [(5.6, 0.6), (8.6, 0.3), (1.8, 3.6), (6.1, 1.8)])
def test_a_retry_is_due_exactly_one_backoff_after_completion(
    storage: Storage, clock: ManualClock, work: float, backoff: float
) -> None:
    job_id = storage.push(new_job(policy=policy(backoff=Backoff.linear(backoff))))
    pop_one(storage)
    clock.advance(work)
    completed = clock.now()
    assert storage.complete(job_id, "r1", JobResult.failure("x")) is Disposition.RETRYING
    assert info(storage, job_id).run_at == utc(completed + backoff)

    clock.advance(backoff)

    assert pop_one(storage).id == job_id


@pytest.mark.parametrize(
    ("before", "heartbeat"), [(5.47, 1.438), (4.88, 2.252), (1.56, 2.601), (8.54, 2.078)]
)
def test_a_claim_is_not_stale_at_exactly_five_intervals(
    storage: Storage, clock: ManualClock, before: float, heartbeat: float
) -> None:
    clock.advance(before)
    job_id = storage.push(new_job(policy=policy(heartbeat=heartbeat)))
    pop_one(storage, "r1")

    clock.advance(5 * heartbeat)
    assert storage.pop(QUEUE, "r2") == []

    clock.advance(0.001)
    assert pop_one(storage, "r2").id == job_id
