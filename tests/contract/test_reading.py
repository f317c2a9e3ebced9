"""Reading: info, list (order, filters, paging), stats, next_due."""

from __future__ import annotations

import uuid

import pytest

from storage import JobResult, ManualClock, QueueStats, Status, Storage

from .support import QUEUE, ids, kill, new_job, policy, pop_one

PENDING, RUNNING, DEAD = Status.PENDING, Status.RUNNING, Status.DEAD


@pytest.fixture
def populated(storage: Storage, clock: ManualClock) -> dict[str, uuid.UUID]:
    """Queue "b": one job each pending, running, dead. Queue "a": two pending."""
    jobs = {
        "b_dead": storage.push(new_job(queue="b", policy=policy(retries=0))),
        "b_running": storage.push(new_job(queue="b")),
        "b_pending": storage.push(new_job(queue="b", run_at=clock.now() + 50)),
        "a_first": storage.push(new_job(queue="a", run_at=clock.now() + 10)),
        "a_second": storage.push(new_job(queue="a", run_at=clock.now() + 20)),
    }
    kill(storage, jobs["b_dead"], queue="b")
    assert pop_one(storage, queue="b").id == jobs["b_running"]
    return jobs


def test_list_orders_by_queue_then_pending_running_dead(
    storage: Storage, populated: dict[str, uuid.UUID]
) -> None:
    listing = storage.list()

    assert [(job.queue, job.status) for job in listing] == [
        ("a", PENDING),
        ("a", PENDING),
        ("b", PENDING),
        ("b", RUNNING),
        ("b", DEAD),
    ]
    assert set(ids(listing)) == set(populated.values())
    assert ids(listing)[2:] == [populated["b_pending"], populated["b_running"], populated["b_dead"]]
    assert storage.list() == listing  # stable


def test_list_filters(storage: Storage, populated: dict[str, uuid.UUID]) -> None:
    assert set(ids(storage.list(queue="a"))) == {populated["a_first"], populated["a_second"]}
    assert ids(storage.list(status=DEAD)) == [populated["b_dead"]]
    assert ids(storage.list(status=RUNNING)) == [populated["b_running"]]
    assert ids(storage.list(queue="b", status=PENDING)) == [populated["b_pending"]]
    assert storage.list(queue="a", status=RUNNING) == []
    assert storage.list(queue="nowhere") == []
    assert {job.status for job in storage.list(status=PENDING)} == {PENDING}


@pytest.mark.parametrize("page", [1, 2, 3, 5])
def test_list_pages_cover_the_listing_once(
    storage: Storage, populated: dict[str, uuid.UUID], page: int
) -> None:
    whole = ids(storage.list())
    paged: list[uuid.UUID] = []
    for offset in range(0, len(whole) + page, page):
        chunk = ids(storage.list(offset=offset, limit=page))
        assert len(chunk) <= page
        paged += chunk
    assert paged == whole
    assert storage.list(offset=len(whole)) == []
    assert storage.list(limit=0) == []
    assert ids(storage.list(queue="b", offset=1, limit=1)) == [populated["b_running"]]


def test_stats_counts_per_queue(storage: Storage, populated: dict[str, uuid.UUID]) -> None:
    assert storage.stats() == {
        "a": QueueStats(pending=2, running=0, dead=0, scheduled=2),
        "b": QueueStats(pending=1, running=1, dead=1, scheduled=1),
    }


def test_stats_leaves_out_queues_with_nothing_left(
    storage: Storage, populated: dict[str, uuid.UUID]
) -> None:
    storage.complete(populated["b_running"], "r1", JobResult.success())
    storage.purge_dead()
    assert set(storage.stats()) == {"a", "b"}
    assert storage.stats()["b"] == QueueStats(pending=1, running=0, dead=0, scheduled=1)


def test_next_due(storage: Storage, clock: ManualClock) -> None:
    now = clock.now()
    assert storage.next_due(QUEUE) is None

    storage.push(new_job(run_at=now + 30))
    assert storage.next_due(QUEUE) == now + 30
    storage.push(new_job(run_at=now + 20))
    assert storage.next_due(QUEUE) == now + 20
    storage.push(new_job())
    assert storage.next_due(QUEUE) == now  # due already
    assert storage.next_due("other") is None


def test_next_due_of_a_held_job_is_when_its_claim_goes_stale(
    storage: Storage, clock: ManualClock
) -> None:
    storage.push(new_job(policy=policy(heartbeat=2.0)))
    pop_one(storage, "r1")
    expires = clock.now() + 10

    due = storage.next_due(QUEUE)

    assert due is not None
    assert expires < due <= expires + 0.001
    storage.push(new_job(run_at=clock.now() + 5))
    assert storage.next_due(QUEUE) == clock.now() + 5
    clock.advance(10.001)
    assert len(storage.pop(QUEUE, "r2", limit=5)) == 2
