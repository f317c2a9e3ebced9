"""storage.settle: the one rule every backend stores (the contract suite checks
that each stores it; this checks the rule)."""

from __future__ import annotations

import pytest

from storage import Backoff, Disposition, JobResult, MaxRetries
from storage.policy import DAY
from storage.settle import Settlement, settle

DELAY_US = 60_000_000


def decide(result: JobResult, retry_count: int = 0, **policy: object) -> Settlement:
    return settle(
        result,
        retry_count=retry_count,
        max_retries=policy.get("max_retries", MaxRetries.count(2)),  # type: ignore[arg-type]
        backoff=policy.get("backoff", Backoff.exponential(2)),  # type: ignore[arg-type]
        unregistered_delay_us=DELAY_US,
    )


def test_a_success_is_finished() -> None:
    assert decide(JobResult.success(), 1) == Settlement(Disposition.FINISHED, 1, None, None)


def test_an_unexecuted_job_keeps_its_place_count_and_error() -> None:
    assert decide(JobResult.unexecuted(), 1) == Settlement(Disposition.REQUEUED, 1, None, None)


def test_an_unregistered_job_waits_the_storages_delay_and_counts_no_attempt() -> None:
    verdict = decide(JobResult.unregistered("no such job"), 1)
    assert verdict == Settlement(Disposition.REQUEUED, 1, DELAY_US, "no such job")


@pytest.mark.parametrize(
    ("backoff", "retry_count", "delay_us"),
    [
        (Backoff.exponential(2), 0, 2_000_000),  # 2 ** 1 s after the first failure
        (Backoff.exponential(2), 1, 4_000_000),  # 2 ** 2 s after the second
        (Backoff.linear(0.25), 1, 250_000),
    ],
)
def test_a_failure_counts_an_attempt_and_waits_its_backoff(
    backoff: Backoff, retry_count: int, delay_us: int
) -> None:
    verdict = decide(JobResult.failure("boom"), retry_count, backoff=backoff)
    assert verdict == Settlement(Disposition.RETRYING, retry_count + 1, delay_us, "boom")


def test_the_failure_past_the_limit_is_dead() -> None:
    # count(2): two retries, so the third failure ends it.
    assert decide(JobResult.failure("boom"), 1).disposition is Disposition.RETRYING
    verdict = decide(JobResult.failure("boom"), 2)
    assert verdict == Settlement(Disposition.DEAD, 3, None, "boom")


def test_no_retries_and_infinite_retries() -> None:
    none = decide(JobResult.failure("boom"), 0, max_retries=MaxRetries.count(0))
    assert none.disposition is Disposition.DEAD
    forever = decide(JobResult.failure("boom"), 10_000, max_retries=MaxRetries.infinite())
    assert forever.disposition is Disposition.RETRYING


def test_an_exponential_backoff_stops_growing_at_its_max() -> None:
    # Without the cap, 2 ** 1025 s overflows a float: settling would fail.
    assert Backoff.exponential(2).delay(17) == DAY == 24 * 3600  # 2 ** 17 s is past a day
    assert Backoff.exponential(2).delay(16) == 2.0**16
    assert Backoff.exponential(3, max=60).delay(10**9) == 60
    verdict = decide(JobResult.failure("boom"), 10**9, max_retries=MaxRetries.infinite())
    assert verdict.delay_us == round(DAY * 1_000_000)
