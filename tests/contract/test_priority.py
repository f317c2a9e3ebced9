"""Priorities: among the due jobs of a queue a higher priority is claimed
first, then the earlier run_at, then the first queued; a job not due yet
never holds back due jobs of a lower priority."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from storage import Disposition, Job, JobResult, ManualClock, QueueStats, Status, Storage
from storage.model import PRIORITY_RANGE
from supervisor.handle import new_job as queued

from .support import QUEUE, ids, info, kill, new_job, policy, pop_one


def popped(storage: Storage, limit: int = 100) -> list[uuid.UUID]:
    return [claim.id for claim in storage.pop(QUEUE, "r1", limit)]


def done(storage: Storage, job_ids: list[uuid.UUID]) -> None:
    for job_id in job_ids:
        assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.FINISHED


def test_a_higher_priority_is_claimed_first_among_due_jobs(storage: Storage) -> None:
    low = storage.push(new_job(priority=-1))
    default = storage.push(new_job())
    high = storage.push(new_job(priority=5))
    higher = storage.push(new_job(priority=9))
    high_too = storage.push(new_job(priority=5))
    assert [pop_one(storage).id for _ in range(5)] == [higher, high, high_too, default, low]
    assert storage.pop(QUEUE, "r1") == []


def test_one_pop_takes_from_one_level_after_another(storage: Storage) -> None:
    zero = storage.push_many([new_job() for _ in range(3)])
    one = storage.push_many([new_job(priority=1) for _ in range(2)])
    assert popped(storage, 3) == [*one, zero[0]]
    assert popped(storage, 3) == zero[1:]


def test_a_high_priority_job_not_due_yet_does_not_hold_back_due_ones(
    storage: Storage, clock: ManualClock
) -> None:
    later = storage.push(new_job(priority=100, run_at=clock.now() + 60))
    due = storage.push_many([new_job(priority=-3), new_job()])
    assert popped(storage) == [due[1], due[0]]
    done(storage, due)
    assert storage.next_due(QUEUE) == clock.now() + 60
    clock.advance(60)
    assert popped(storage) == [later]


def test_ties_go_by_run_at_then_queue_order(storage: Storage, clock: ManualClock) -> None:
    now = clock.now()
    due_now = storage.push(new_job(priority=2))
    earlier = storage.push(new_job(priority=2, run_at=now - 10))
    earlier_too = storage.push(new_job(priority=2, run_at=now - 10))
    lower = storage.push(new_job(priority=1, run_at=now - 20))
    assert popped(storage) == [earlier, earlier_too, due_now, lower]


def test_negative_and_extreme_priorities_order_as_ints(storage: Storage) -> None:
    levels = [-5, PRIORITY_RANGE.stop - 1, 0, PRIORITY_RANGE.start, -1, 3]
    pushed = {storage.push(new_job(priority=level)): level for level in levels}
    order = popped(storage)
    assert [pushed[job_id] for job_id in order] == sorted(levels, reverse=True)
    assert [info(storage, job_id).priority for job_id in order] == sorted(levels, reverse=True)


def test_a_pop_in_a_round_follows_priority(storage: Storage) -> None:
    zero = storage.push(new_job())
    high = storage.push(new_job(priority=4))
    _, claims = storage.complete_and_pop([], [(QUEUE, "r1", 1), (QUEUE, "r2", 1)])
    assert [[claim.id for claim in claim_list] for claim_list in claims] == [[high], [zero]]


def test_a_retry_keeps_its_priority_and_its_place(storage: Storage, clock: ManualClock) -> None:
    failing = storage.push(new_job(priority=3, policy=policy(retries=2)))
    assert pop_one(storage).id == failing
    storage.push(new_job())
    assert storage.complete(failing, "r1", JobResult.failure("boom")) is Disposition.RETRYING
    clock.advance(1)  # its linear 1 s backoff is over
    storage.push(new_job(priority=2))
    assert pop_one(storage).id == failing
    assert info(storage, failing).priority == 3
    assert storage.complete(failing, "r1", JobResult.unexecuted()) is Disposition.REQUEUED
    assert pop_one(storage).id == failing


def test_a_requeued_dead_job_keeps_its_priority(storage: Storage) -> None:
    doomed = storage.push(new_job(priority=7, policy=policy(retries=0)))
    kill(storage, doomed)
    zero = storage.push(new_job())
    assert info(storage, doomed).priority == 7
    assert storage.requeue(doomed)
    assert popped(storage) == [doomed, zero]


def test_records_show_their_priority(storage: Storage) -> None:
    job_id = storage.push(new_job(priority=-2))
    assert info(storage, job_id).priority == -2
    assert [job.priority for job in storage.list()] == [-2]
    pop_one(storage)
    assert info(storage, job_id).priority == -2
    storage.complete(job_id, "r1", JobResult.success())
    kept = info(storage, job_id)
    assert (kept.status, kept.priority) == (Status.SUCCEEDED, -2)


def test_a_cancelled_job_leaves_its_level(storage: Storage) -> None:
    high = storage.push(new_job(priority=1))
    zero = storage.push(new_job())
    assert storage.cancel(high, "not needed") is Status.PENDING
    assert popped(storage) == [zero]
    again = storage.push(new_job(priority=1))
    assert popped(storage) == [again]


def test_counts_and_times_span_every_level(storage: Storage, clock: ManualClock) -> None:
    now = clock.now()
    storage.push(new_job(priority=9, run_at=now + 30))
    storage.push(new_job(priority=-9, run_at=now - 5))
    storage.push(new_job())
    assert storage.stats() == {
        QUEUE: QueueStats(pending=3, running=0, dead=0, scheduled=1, oldest_due_at=now - 5)
    }
    assert storage.next_due(QUEUE) == now - 5
    assert len(storage.list(scheduled=True)) == 1
    assert len(storage.list(scheduled=False)) == 2
    done(storage, popped(storage))
    assert storage.next_due(QUEUE) == now + 30


def test_other_queues_keep_their_own_order(storage: Storage) -> None:
    other = storage.push(new_job(queue="other", priority=50))
    mine = storage.push(new_job())
    assert popped(storage) == [mine]
    assert [claim.id for claim in storage.pop("other", "r1")] == [other]
    assert ids(storage.list(status=Status.RUNNING)) == sorted([mine, other])


# -- with dependencies ------------------------------------------------------------------


def test_a_child_released_from_waiting_runs_at_its_own_priority(storage: Storage) -> None:
    parent = storage.push(new_job(priority=2))
    kids = [storage.push(new_job(priority=7)._replace(after=(parent,))) for _ in range(2)]
    low = storage.push(new_job(priority=1))
    assert [info(storage, kid).priority for kid in kids] == [7, 7]
    assert popped(storage, 1) == [parent]
    done(storage, [parent])
    released = storage.stats()[QUEUE]
    assert (released.pending, released.waiting) == (3, 0)
    assert [(info(storage, kid).status, info(storage, kid).priority) for kid in kids] == [
        (Status.PENDING, 7),
        (Status.PENDING, 7),
    ]
    assert storage.cancel(kids[1], "not needed") is Status.PENDING
    assert popped(storage) == [kids[0], low]


def test_a_batch_with_edges_keeps_each_jobs_priority(storage: Storage) -> None:
    parent, child, free = storage.push_many(
        [new_job(priority=3), new_job(priority=9)._replace(after=(0,)), new_job(priority=5)]
    )
    assert [info(storage, job).priority for job in (parent, child, free)] == [3, 9, 5]
    assert info(storage, child).status is Status.WAITING
    assert popped(storage) == [free, parent]
    later = storage.push(new_job(priority=8))
    done(storage, [parent])
    assert popped(storage) == [child, later]


# -- what queue() takes: the same for every backend ------------------------------------


@dataclass
class Plain(Job):
    n: int = 0


@dataclass
class Urgent(Job):
    PRIORITY = 10
    n: int = 0


def test_the_class_priority_is_the_default_and_queue_overrides_it() -> None:
    assert queued(Plain(), "queue()").priority == 0
    assert queued(Urgent(), "queue()").priority == 10
    assert queued(Urgent(), "queue()", priority=-4).priority == -4
    assert queued(Plain(), "schedule()", at=5, priority=2).priority == 2


@pytest.mark.parametrize(
    ("priority", "error", "words"),
    [
        (True, TypeError, "priority= must be an int (higher runs first); got True (bool)"),
        (1.0, TypeError, "priority= must be an int (higher runs first); got 1.0 (float)"),
        ("high", TypeError, "priority= must be an int (higher runs first); got 'high' (str)"),
        (2**63, ValueError, "priority= must fit in a signed 64-bit integer"),
        (-(2**63) - 1, ValueError, "priority= must fit in a signed 64-bit integer"),
    ],
)
def test_a_bad_priority_is_refused_at_queue(
    priority: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as raised:
        queued(Plain(), "queue()", priority=priority)
    assert words in str(raised.value)


def test_a_bad_class_priority_is_refused_naming_the_class() -> None:
    @dataclass
    class Wrong(Job):
        PRIORITY = False  # type: ignore[assignment]

    with pytest.raises(TypeError, match=r"job .*Wrong: PRIORITY must be an int"):
        queued(Wrong(), "queue()")
    assert dataclasses.is_dataclass(Wrong)
