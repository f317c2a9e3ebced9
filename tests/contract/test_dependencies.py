"""Dependencies between jobs: the rules of storage/dependencies.py, on every backend.

A child waits (WAITING, never popped) until every parent succeeded; a parent
that dies or is cancelled cancels its waiting subtree, each child's reason
naming its parent; parents are named by id or, within one push_many, by the
position of an earlier job; an unknown parent is refused and nothing stored.
"""

from __future__ import annotations

import uuid

import pytest

from storage import Disposition, JobResult, ManualClock, NewJob, Policy, Status, Storage
from storage.dependencies import CancelledChild, UnknownParent

from .support import DEFAULT_POLICY, QUEUE, info, kill, new_job, policy, pop_one

ONE_TRY = policy(retries=0)


def child(
    *after: uuid.UUID | int, unique_key: str | None = None, job_policy: Policy = DEFAULT_POLICY
) -> NewJob:
    """A job queued after ``after``: ids, or positions in its push_many."""
    return new_job(unique_key=unique_key, policy=job_policy)._replace(after=after)


def succeed(storage: Storage, job_id: uuid.UUID, runner: str = "r1") -> None:
    """Pop ``job_id`` (which must be the one job due) and complete it well."""
    assert pop_one(storage, runner).id == job_id
    assert storage.complete(job_id, runner, JobResult.success()) is Disposition.FINISHED


def status(storage: Storage, job_id: uuid.UUID) -> Status:
    return info(storage, job_id).status


def test_a_child_waits_for_its_parent_and_runs_once_it_succeeded(storage: Storage) -> None:
    parent = storage.push(new_job())
    kid = storage.push(child(parent))

    assert status(storage, kid) is Status.WAITING
    assert info(storage, kid).parents == (parent,)
    counts = storage.stats()[QUEUE]
    assert (counts.pending, counts.waiting) == (1, 1)
    claim = pop_one(storage)
    assert claim.id == parent  # the child is not claimable
    assert storage.pop(QUEUE, "r2") == []

    assert storage.complete(parent, "r1", JobResult.success()) is Disposition.FINISHED
    assert storage.dependents().released == frozenset({QUEUE})
    assert status(storage, kid) is Status.PENDING
    claimed = pop_one(storage)
    assert claimed.id == kid
    assert claimed.parents == (parent,)
    assert storage.dependents().released == frozenset()


def test_a_chain_runs_in_order(storage: Storage) -> None:
    ids = storage.push_many([new_job(), child(0), child(1)])
    for job_id in ids:
        assert [j.id for j in storage.pop(QUEUE, "r1", 10)] == [job_id]
        assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.FINISHED
    assert [status(storage, job_id) for job_id in ids] == [Status.SUCCEEDED] * 3


def test_a_diamond_joins_once_both_sides_succeeded(storage: Storage) -> None:
    top, left, right, join = storage.push_many([new_job(), child(0), child(0), child(1, 2)])
    assert info(storage, join).parents == (left, right)
    succeed(storage, top)
    sides = storage.pop(QUEUE, "r1", 10)
    assert {claim.id for claim in sides} == {left, right}

    assert storage.complete(left, "r1", JobResult.success()) is Disposition.FINISHED
    assert status(storage, join) is Status.WAITING  # one parent still runs
    assert storage.complete(right, "r1", JobResult.success()) is Disposition.FINISHED
    assert status(storage, join) is Status.PENDING
    assert pop_one(storage).id == join


def test_parents_settled_in_one_round_release_the_child_once(storage: Storage) -> None:
    left, right, join = storage.push_many([new_job(), new_job(), child(0, 1)])
    storage.pop(QUEUE, "r1", 2)
    done = [(left, "r1", JobResult.success()), (right, "r1", JobResult.success())]
    settled, popped = storage.complete_and_pop(done, [(QUEUE, "r1", 5)])
    assert settled == [Disposition.FINISHED, Disposition.FINISHED]
    assert [claim.id for claim in popped[0]] == [join]


def test_a_dead_parent_cancels_its_subtree_with_reasons(storage: Storage) -> None:
    top = storage.push(new_job(policy=ONE_TRY))
    left, right, join, aside = storage.push_many([child(top), child(top), child(0, 1), new_job()])
    storage.dependents()
    kill(storage, top)

    assert info(storage, left).last_error == f"parent {top} died"
    assert info(storage, right).last_error == f"parent {top} died"
    reason = info(storage, join).last_error
    assert reason in (
        f"parent {left} was cancelled (ancestor {top} died)",
        f"parent {right} was cancelled (ancestor {top} died)",
    )
    for job_id in (left, right, join):
        assert status(storage, job_id) is Status.CANCELLED
        assert info(storage, job_id).started_at is None
    told = storage.dependents()
    assert {c.id for c in told.cancelled} == {left, right, join}
    assert CancelledChild(left, QUEUE, f"parent {top} died") in told.cancelled
    assert status(storage, aside) is Status.PENDING  # not a descendant
    assert storage.stats()[QUEUE].waiting == 0


def test_a_requeued_dead_parent_leaves_its_cancelled_children_cancelled(
    storage: Storage,
) -> None:
    top = storage.push(new_job(policy=ONE_TRY))
    kid = storage.push(child(top))
    kill(storage, top)
    assert storage.requeue(top)
    succeed(storage, top)
    assert status(storage, kid) is Status.CANCELLED
    assert storage.pop(QUEUE, "r1") == []


def test_a_cancelled_parent_cancels_its_children(storage: Storage) -> None:
    top = storage.push(new_job())
    kid = storage.push(child(top))
    grandchild = storage.push(child(kid))
    assert storage.cancel(top, "no longer wanted") is Status.PENDING
    assert info(storage, kid).last_error == f"parent {top} was cancelled"
    assert info(storage, grandchild).last_error == (
        f"parent {kid} was cancelled (ancestor {top} was cancelled)"
    )
    assert storage.pop(QUEUE, "r1") == []


def test_a_parent_cancelled_while_running_cancels_its_children(storage: Storage) -> None:
    top = storage.push(new_job())
    kid = storage.push(child(top))
    pop_one(storage)
    assert storage.cancel(top, "stop") is Status.RUNNING  # its runner is asked
    assert status(storage, kid) is Status.WAITING
    assert storage.complete(top, "r1", JobResult.cancelled("stop")) is Disposition.CANCELLED
    assert info(storage, kid).last_error == f"parent {top} was cancelled"


def test_cancelling_a_waiting_child_cancels_its_own_children_only(storage: Storage) -> None:
    top, kid, grandchild = storage.push_many([new_job(), child(0), child(1)])
    assert storage.cancel(kid, "by hand") is Status.WAITING
    assert info(storage, kid).last_error == "by hand"
    assert info(storage, grandchild).last_error == f"parent {kid} was cancelled"
    succeed(storage, top)  # the parent of a cancelled child ends well: nothing more
    assert storage.pop(QUEUE, "r1") == []
    assert storage.stats() == {}


def test_a_parent_that_already_succeeded_counts_as_done(storage: Storage) -> None:
    parent = storage.push(new_job())
    succeed(storage, parent)
    kid = storage.push(child(parent))
    assert status(storage, kid) is Status.PENDING
    assert pop_one(storage).id == kid


def test_a_child_of_an_ended_bad_parent_is_cancelled_at_once(storage: Storage) -> None:
    dead = storage.push(new_job(policy=ONE_TRY))
    kill(storage, dead)
    cancelled = storage.push(new_job())
    storage.cancel(cancelled, "gone")
    storage.dependents()

    of_dead, of_cancelled = storage.push_many([child(dead), child(cancelled)])
    assert info(storage, of_dead).last_error == f"parent {dead} died"
    assert info(storage, of_cancelled).last_error == f"parent {cancelled} was cancelled"
    assert {c.id for c in storage.dependents().cancelled} == {of_dead, of_cancelled}
    assert storage.pop(QUEUE, "r1") == []


def test_a_parent_whose_record_expired_is_unknown(storage: Storage, clock: ManualClock) -> None:
    parent = storage.push(new_job(policy=policy(result_ttl=10)))
    succeed(storage, parent)
    clock.advance(11)
    with pytest.raises(UnknownParent, match=str(parent)):
        storage.push(child(parent))


def test_an_unknown_parent_is_refused_and_nothing_of_the_batch_is_stored(
    storage: Storage,
) -> None:
    known = storage.push(new_job())
    unknown = uuid.UUID(int=12345)
    with pytest.raises(UnknownParent, match=str(unknown)) as raised:
        storage.push_many([new_job(name="first"), child(known), child(unknown)])
    assert raised.value.parent == unknown
    assert isinstance(raised.value, LookupError)
    storage.commit()
    assert [claim.id for claim in storage.pop(QUEUE, "r1", 10)] == [known]
    assert storage.stats()[QUEUE].waiting == 0


@pytest.mark.parametrize("position", [1, 2, -1])
def test_a_position_that_is_not_an_earlier_job_is_refused(storage: Storage, position: int) -> None:
    with pytest.raises(ValueError, match=f"position {position}"):
        storage.push_many([new_job(), child(position)])
    assert storage.pop(QUEUE, "r1", 10) == []


def test_a_waiting_child_is_listed_and_holds_its_unique_key(storage: Storage) -> None:
    parent = storage.push(new_job())
    kid = storage.push(child(parent, unique_key="k"))
    assert storage.push(child(parent, unique_key="k")) == kid
    assert [job.id for job in storage.list(status=Status.WAITING)] == [kid]
    assert [job.id for job in storage.list()] == [parent, kid]


def test_a_failed_attempt_of_the_parent_keeps_the_child_waiting(storage: Storage) -> None:
    parent = storage.push(new_job())
    kid = storage.push(child(parent))
    pop_one(storage)
    assert storage.complete(parent, "r1", JobResult.failure("flaky")) is Disposition.RETRYING
    assert status(storage, kid) is Status.WAITING


def test_a_parent_with_no_kept_record_still_releases_its_child(storage: Storage) -> None:
    parent = storage.push(new_job(policy=policy(result_ttl=0)))
    kid = storage.push(child(parent))
    succeed(storage, parent)
    assert status(storage, kid) is Status.PENDING


CHAIN = 1000


def test_a_chain_of_1000_is_released_one_by_one_and_cancelled_at_once(
    storage: Storage,
) -> None:
    chain = [child(i, job_policy=ONE_TRY) for i in range(CHAIN - 1)]
    ids = storage.push_many([new_job(policy=ONE_TRY), *chain])
    assert storage.stats()[QUEUE].waiting == CHAIN - 1
    for job_id in ids[:10]:
        assert [claim.id for claim in storage.pop(QUEUE, "r1", 5)] == [job_id]
        assert storage.complete(job_id, "r1", JobResult.success()) is Disposition.FINISHED
    assert storage.stats()[QUEUE].waiting == CHAIN - 11
    storage.dependents()

    kill(storage, ids[10])  # the next one dies: the 989 after it go at once
    told = storage.dependents()
    assert len(told.cancelled) == CHAIN - 11
    assert info(storage, ids[-1]).last_error == (
        f"parent {ids[-2]} was cancelled (ancestor {ids[10]} died)"
    )
    counts = storage.stats()[QUEUE]
    assert (counts.pending, counts.waiting, counts.dead) == (0, 0, 1)
    assert storage.pop(QUEUE, "r1", 5) == []
