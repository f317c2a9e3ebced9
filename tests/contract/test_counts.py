"""``stats`` on queues longer than a count cap (storage.counts): a count up
to the cap is exact and not flagged; above it, a backend may give an
estimate, named in ``QueueStats.estimated`` and close to the truth
(PostgreSQL, told a cap of CAP here: the planner's, once the table is
analyzed). SQLite and memory storage keep every count exact, whatever its
size. Whatever is estimated, ``pending == scheduled`` exactly when nothing
of the queue is due or waiting out a backoff, which is what ``join`` waits
for."""

from __future__ import annotations

import pytest

from storage import Backoff, JobResult, ManualClock, QueueStats, Status, Storage
from storage.counts import COUNT_CAP, Read, check_cap, queue_stats
from storage.model import ESTIMABLE
from supervisor.storage_ops import StorageOperations

from .backends import analyze, close, reopen
from .support import CAP, kill, new_job, policy

LATER = 3600.0


def push(storage: Storage, clock: ManualClock, count: int, queue: str, later: bool = False) -> None:
    run_at = clock.now() + LATER if later else None
    storage.push_many([new_job(queue=queue, run_at=run_at) for _ in range(count)])
    storage.commit()


def test_counts_up_to_the_cap_are_exact(capped: Storage, clock: ManualClock) -> None:
    push(capped, clock, CAP, "q")
    push(capped, clock, CAP, "q", later=True)  # pending 2 x CAP, scheduled CAP
    push(capped, clock, CAP, "small")
    for _ in range(CAP):
        job_id = capped.push(new_job(queue="dying", policy=policy(retries=0)))
        kill(capped, job_id, queue="dying")
    capped.commit()
    analyze(capped)
    stats = capped.stats()
    assert stats["q"].scheduled == CAP
    assert stats["q"].estimated <= {"pending", "pending_by_priority"}  # one level: as pending
    assert stats["small"] == QueueStats(
        pending=CAP, running=0, dead=0, scheduled=0, oldest_due_at=clock.now()
    )
    assert stats["dying"] == QueueStats(pending=0, running=0, dead=CAP)


@pytest.mark.parametrize("factor", [3, 10])
def test_above_the_cap_a_count_is_flagged_and_close(
    capped: Storage, clock: ManualClock, factor: int
) -> None:
    due, later = factor * CAP, 2 * factor * CAP
    push(capped, clock, due, "big")
    push(capped, clock, later, "big", later=True)
    push(capped, clock, 2, "small")
    analyze(capped)
    stats = capped.stats()
    big, small = stats["big"], stats["small"]
    assert small == QueueStats(pending=2, running=0, dead=0, oldest_due_at=clock.now())
    assert big.estimated <= ESTIMABLE - {"running", "dead"}
    for field, exact in (("pending", due + later), ("scheduled", later)):
        figure = getattr(big, field)
        if field in big.estimated:
            assert figure > CAP
            assert abs(figure - exact) <= exact / 2, (field, figure, exact)
        else:
            assert figure == exact, field
    # More than the cap are due: the estimate never says fewer.
    assert big.pending - big.scheduled > CAP
    assert big.running == big.dead == 0
    # The flag reaches what an operator reads.
    assert StorageOperations(capped).stats().queues["big"].estimated == big.estimated


def test_only_scheduled_jobs_is_pending_equal_to_scheduled(
    capped: Storage, clock: ManualClock
) -> None:
    push(capped, clock, 5 * CAP, "later", later=True)
    analyze(capped)
    figures = capped.stats()["later"]
    assert figures.pending == figures.scheduled  # idle: join does not wait for these
    assert figures.scheduled > CAP
    push(capped, clock, 1, "later")  # one due now
    figures = capped.stats()["later"]
    assert figures.pending - figures.scheduled == 1


def test_a_retry_waiting_out_its_backoff_is_not_scheduled(
    capped: Storage, clock: ManualClock
) -> None:
    retried = capped.push(new_job(queue="later", policy=policy(backoff=Backoff.linear(60))))
    (claim,) = capped.pop("later", "r1")
    assert claim.id == retried
    capped.complete(retried, "r1", JobResult.failure("boom"))  # pending, due in 60 s
    push(capped, clock, 5 * CAP, "later", later=True)
    analyze(capped)
    figures = capped.stats()["later"]
    assert figures.pending - figures.scheduled == 1
    assert figures.oldest_due_at is None  # nothing due yet


def test_scheduled_jobs_leave_the_count_when_due_or_cancelled_and_outlive_a_restart(
    storage: Storage, clock: ManualClock
) -> None:
    soon, late, gone = (
        storage.push(new_job(run_at=clock.now() + delay)) for delay in (10.0, 20.0, 30.0)
    )
    push(storage, clock, 2, "default")
    assert storage.cancel(gone, "no") is Status.PENDING
    storage.commit()
    assert storage.stats()["default"].scheduled == 2
    again = reopen(storage, clock) or storage
    try:
        assert again.stats()["default"].scheduled == 2
        clock.advance(10)  # soon falls due
        assert again.stats()["default"].scheduled == 1
        assert [claim.id for claim in again.pop("default", "r1", limit=5)][-1] == soon
        clock.advance(10)
        assert again.stats()["default"] == QueueStats(
            pending=1, running=3, dead=0, oldest_due_at=clock.now()
        )
        assert again.info(late) is not None
    finally:
        if again is not storage:
            close(again)


def test_the_rule_for_a_backend_that_estimates() -> None:
    """storage.counts alone, with an estimate that is far off: the flags, the
    floor of cap + 1, and pending against scheduled."""

    def low(field: str) -> tuple[int, bool]:
        return 1, False  # statistics from before the queue grew

    read = Read(pending=5, running=5, dead=3, scheduled=5, due=0, retrying=0)
    assert queue_stats(read, cap=4, estimate=low) == QueueStats(
        pending=5,
        running=5,
        dead=3,
        scheduled=5,
        estimated=frozenset({"pending", "running", "scheduled"}),
    )
    # Few due and retrying: scheduled is the pending estimate less them.
    read = Read(pending=5, running=0, dead=0, scheduled=5, due=2, retrying=1)
    stats = queue_stats(read, cap=4, estimate=lambda field: (100, False))
    assert (stats.pending, stats.scheduled) == (100, 97)
    assert stats.estimated == {"pending", "scheduled"}
    # Many of both: both estimated, and more than the cap apart.
    read = Read(pending=5, running=0, dead=0, scheduled=5, due=5, retrying=0)
    stats = queue_stats(read, cap=4, estimate=low)
    assert stats.scheduled == 5 and stats.pending == 10
    # An exact answer is not flagged.
    read = Read(pending=5, running=0, dead=0, scheduled=5, due=5, retrying=0)
    exact = {"pending": 50, "scheduled": 20}
    stats = queue_stats(read, cap=4, estimate=lambda field: (exact[field], True))
    assert (stats.pending, stats.scheduled, stats.estimated) == (50, 20, frozenset())


def test_the_cap_must_be_a_positive_int() -> None:
    assert check_cap(COUNT_CAP) == COUNT_CAP
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="count_cap must be an int of at least 1"):
            check_cap(bad)
