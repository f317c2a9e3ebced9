"""``QueueStats.pending_by_priority``: a queue's pending jobs (the scheduled
among them, the waiting not) per priority level present, highest first, a
read-only mapping. One level: ``{level: pending}``. Several: each counted,
adding up to ``pending``, exact up to the count cap; above it on
PostgreSQL an estimate, flagged "pending_by_priority" in ``estimated``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from storage import JobResult, ManualClock, Storage
from storage.counts import LevelEstimate, by_level
from storage.model import NO_LEVELS

from .backends import analyze
from .support import CAP, QUEUE, new_job, pop_one


def levels(storage: Storage, queue: str = QUEUE) -> list[tuple[int, int]]:
    """The queue's split, in its order, checked to add up to its pending."""
    counts = storage.stats()[queue]
    split = counts.pending_by_priority
    assert isinstance(split, Mapping)
    with pytest.raises(TypeError):
        split[99] = 1  # type: ignore[index]
    if not counts.estimated:
        assert sum(split.values()) == counts.pending
    return list(split.items())


def test_one_level_is_all_the_pending_jobs(storage: Storage, clock: ManualClock) -> None:
    storage.push_many([new_job() for _ in range(3)])
    storage.push(new_job(run_at=clock.now() + 60))  # scheduled: pending too
    assert levels(storage) == [(0, 4)]
    storage.push_many([new_job(queue="high", priority=7) for _ in range(2)])
    assert levels(storage, "high") == [(7, 2)]


def test_a_queue_with_nothing_pending_has_no_levels(storage: Storage) -> None:
    job_id = storage.push(new_job(priority=3))
    assert pop_one(storage).id == job_id
    counts = storage.stats()[QUEUE]
    assert (counts.pending, counts.running) == (0, 1)
    assert counts.pending_by_priority == NO_LEVELS


def test_several_levels_due_and_scheduled_highest_first(
    storage: Storage, clock: ManualClock
) -> None:
    later = clock.now() + 60
    storage.push_many([new_job(priority=-2), new_job(priority=-2)])
    storage.push_many([new_job(), new_job(run_at=later), new_job(run_at=later)])
    storage.push(new_job(priority=10, run_at=later))  # a level of scheduled jobs alone
    storage.push_many([new_job(priority=5) for _ in range(4)])
    assert levels(storage) == [(10, 1), (5, 4), (0, 3), (-2, 2)]
    assert storage.stats()[QUEUE].scheduled == 3


def test_claims_and_completes_and_cancels_move_the_counts(
    storage: Storage, clock: ManualClock
) -> None:
    high = storage.push_many([new_job(priority=2) for _ in range(2)])
    low = storage.push_many([new_job() for _ in range(3)])
    assert levels(storage) == [(2, 2), (0, 3)]
    claims = storage.pop(QUEUE, "r1", 3)  # both of level 2, then one of level 0
    assert [claim.id for claim in claims] == [*high, low[0]]
    assert levels(storage) == [(0, 2)]
    for claim in claims:
        storage.complete(claim.id, "r1", JobResult.success())
    assert levels(storage) == [(0, 2)]
    storage.push(new_job(priority=1))
    storage.cancel(low[1], "not wanted")
    assert levels(storage) == [(1, 1), (0, 1)]
    storage.cancel(low[2], "not wanted")
    assert levels(storage) == [(1, 1)]


def test_a_retry_and_a_release_come_back_to_their_level(
    storage: Storage, clock: ManualClock
) -> None:
    failing = storage.push(new_job(priority=3))
    storage.push(new_job())
    assert pop_one(storage).id == failing
    assert levels(storage) == [(0, 1)]
    storage.complete(failing, "r1", JobResult.failure("boom"))  # retried after its backoff
    assert levels(storage) == [(3, 1), (0, 1)]
    clock.advance(60)
    assert pop_one(storage, "r2").id == failing
    assert levels(storage) == [(0, 1)]
    storage.release("r2", JobResult.failure("host died"))
    assert levels(storage) == [(3, 1), (0, 1)]


def test_a_released_dependency_child_joins_its_level_the_waiting_do_not(
    storage: Storage,
) -> None:
    parent = storage.push(new_job())
    storage.push(new_job(priority=4)._replace(after=(parent,)))
    assert levels(storage) == [(0, 1)]  # the child waits: not pending
    assert storage.stats()[QUEUE].waiting == 1
    assert pop_one(storage).id == parent
    storage.complete(parent, "r1", JobResult.success())
    assert levels(storage) == [(4, 1)]


def test_one_level_past_the_cap_is_the_rest_of_an_exact_pending(capped: Storage) -> None:
    capped.push_many([new_job() for _ in range(3 * CAP)])
    capped.push_many([new_job(priority=1) for _ in range(2)])
    capped.commit()
    counts = capped.stats()[QUEUE]
    if "pending" in counts.estimated:
        # Then the big level is an estimate too.
        assert "pending_by_priority" in counts.estimated
        assert counts.pending_by_priority[1] == 2
        assert counts.pending_by_priority[0] > CAP
    else:
        assert dict(counts.pending_by_priority) == {1: 2, 0: 3 * CAP}
        assert "pending_by_priority" not in counts.estimated


def test_levels_past_the_cap_are_flagged_estimates_on_postgresql(
    capped: Storage, clock: ManualClock
) -> None:
    capped.push_many([new_job(priority=2) for _ in range(5 * CAP)])
    capped.push_many([new_job() for _ in range(4 * CAP)])
    capped.push_many([new_job(priority=-1) for _ in range(CAP)])
    capped.commit()
    analyze(capped)
    counts = capped.stats()[QUEUE]
    split = counts.pending_by_priority
    assert list(split) == [2, 0, -1]
    assert split[-1] == CAP  # up to the cap: exact
    if type(capped).__name__ == "PostgresStorage":
        assert {"pending", "pending_by_priority"} <= counts.estimated
        for level, exact in ((2, 5 * CAP), (0, 4 * CAP)):
            assert split[level] > CAP
            assert abs(split[level] - exact) <= exact / 2, (level, split[level], exact)
    else:
        assert counts.estimated == frozenset()
        assert dict(split) == {2: 5 * CAP, 0: 4 * CAP, -1: CAP}


def exact_count(level: int) -> tuple[int, bool]:
    return {5: 50, 0: 70}[level], True


def planner(level: int) -> tuple[int, bool]:
    return {5: 3, 0: 90}[level], False  # a stale estimate may say fewer than the cap


def refused(level: int) -> tuple[int, bool]:
    raise AssertionError(f"level {level} asked for, under the cap")


@dataclass(frozen=True)
class Case:
    levels: tuple[int, ...]
    counts: tuple[int, ...]
    pending: int
    pending_exact: bool
    estimate: LevelEstimate
    split: dict[int, int]
    estimated: bool


CASES = [
    Case((), (), 0, True, refused, {}, False),
    Case((3,), (), 2 * CAP, True, refused, {3: 2 * CAP}, False),  # one level: nothing read
    Case((3,), (), 2 * CAP, False, refused, {3: 2 * CAP}, True),
    Case((5, 0), (CAP, 2), CAP + 2, True, refused, {5: CAP, 0: 2}, False),
    # One past the cap, pending exact (SQLite): the rest of it.
    Case((5, 0, -1), (2, CAP + 1, 1), 60, True, refused, {5: 2, 0: 57, -1: 1}, False),
    # Two past it: the backend's figure for each, exact or flagged.
    Case((5, 0, -1), (CAP + 1, CAP + 1, 1), 121, True, exact_count, {5: 50, 0: 70, -1: 1}, False),
    Case((5, 0), (CAP + 1, CAP + 1), 100, False, planner, {5: CAP + 1, 0: 90}, True),
    Case((5, 0), (CAP + 1, 1), 100, False, planner, {5: CAP + 1, 0: 1}, True),
]


@pytest.mark.parametrize("case", CASES)
def test_the_rule_of_the_levels(case: Case) -> None:
    found, flagged = by_level(
        case.levels,
        case.counts,
        pending=case.pending,
        pending_exact=case.pending_exact,
        cap=CAP,
        estimate=case.estimate,
    )
    assert list(found.items()) == list(case.split.items())
    assert flagged is case.estimated


def test_the_rule_refuses_counts_that_do_not_match_the_levels() -> None:
    with pytest.raises(ValueError, match="2 priority levels but 1 counts"):
        by_level((1, 0), (3,), pending=3, pending_exact=True, cap=CAP, estimate=refused)


def test_stats_without_levels_keeps_every_count(storage: Storage, clock: ManualClock) -> None:
    # What the runtime's idle check asks: the counts alike, the split at
    # most left out (where counting levels costs reads).
    storage.push_many([new_job(priority=p) for p in (3, 0, 0, -1)])
    storage.push(new_job(priority=3, run_at=clock.now() + 60))
    full, lean = storage.stats()[QUEUE], storage.stats(levels=False)[QUEUE]
    assert lean == full  # pending_by_priority takes no part in ==
    assert dict(full.pending_by_priority) == {3: 2, 0: 2, -1: 1}
    assert dict(lean.pending_by_priority) in ({}, dict(full.pending_by_priority))
