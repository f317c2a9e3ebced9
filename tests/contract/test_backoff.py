"""Backoff at any retry count: capped, never overflowing, on every backend."""

from __future__ import annotations

import math
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import Backoff, Disposition, JobResult, ManualClock, Status, Storage

from .backends import set_retry_count
from .support import info, new_job, policy, pop_one, utc


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    failures=st.integers(min_value=0, max_value=10**9),
    base=st.floats(min_value=1.0, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=30 * 24 * 3600.0),
)
def test_a_failure_after_any_number_waits_at_most_the_cap(
    storage: Storage, clock: ManualClock, failures: int, base: float, cap: float
) -> None:
    backoff = Backoff.exponential(base, max=cap)
    queue = f"q{uuid.uuid4().hex}"  # examples share the storage: a queue each
    job_id = storage.push(new_job(queue=queue, policy=policy(retries=None, backoff=backoff)))
    assert pop_one(storage, queue=queue).id == job_id
    set_retry_count(storage, job_id, failures)
    failed_at = clock.now()
    assert storage.complete(job_id, "r1", JobResult.failure("boom")) is Disposition.RETRYING
    storage.commit()
    job = info(storage, job_id)
    assert (job.status, job.retry_count, job.backoff) == (Status.PENDING, failures + 1, backoff)
    waited = (job.run_at - utc(failed_at)).total_seconds()
    # base ** (failures + 1) as a float, where one exists; past that it is the cap.
    small = (failures + 1) * math.log(base) < 700
    expected = min(base ** (failures + 1), cap) if small else cap
    assert math.isclose(waited, expected, rel_tol=1e-9, abs_tol=1e-6)
