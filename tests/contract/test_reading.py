"""Reading: info, list (order, filters, paging), stats, next_due.

Keyset paging in depth is in test_listing.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from storage import Backoff, Job, JobResult, ManualClock, QueueStats, Status, Storage

from .support import QUEUE, ids, info, kill, new_job, policy, pop_one

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


def test_list_is_in_id_order_which_is_the_order_jobs_were_queued(
    storage: Storage, populated: dict[str, uuid.UUID]
) -> None:
    listing = storage.list()

    order = ["b_dead", "b_running", "b_pending", "a_first", "a_second"]
    assert ids(listing) == [populated[name] for name in order]
    assert ids(listing) == sorted(ids(listing))
    assert [(job.queue, job.status) for job in listing] == [
        ("b", DEAD),
        ("b", RUNNING),
        ("b", PENDING),
        ("a", PENDING),
        ("a", PENDING),
    ]
    assert storage.list() == listing  # stable


def test_list_filters(storage: Storage, populated: dict[str, uuid.UUID]) -> None:
    assert ids(storage.list(queue="a")) == [populated["a_first"], populated["a_second"]]
    assert ids(storage.list(status=DEAD)) == [populated["b_dead"]]
    assert ids(storage.list(status=RUNNING)) == [populated["b_running"]]
    assert ids(storage.list(queue="b", status=PENDING)) == [populated["b_pending"]]
    assert ids(storage.list(status=PENDING)) == [
        populated["b_pending"],
        populated["a_first"],
        populated["a_second"],
    ]
    assert storage.list(queue="a", status=RUNNING) == []
    assert storage.list(queue="nowhere") == []


@pytest.mark.parametrize("page", [1, 2, 3, 5])
def test_list_pages_cover_the_listing_once(
    storage: Storage, populated: dict[str, uuid.UUID], page: int
) -> None:
    whole = ids(storage.list())
    paged: list[uuid.UUID] = []
    after = None
    while True:
        chunk = ids(storage.list(after=after, limit=page))
        assert len(chunk) <= page
        paged += chunk
        if len(chunk) < page:
            break
        after = chunk[-1]
    assert paged == whole
    assert storage.list(after=whole[-1]) == []
    assert storage.list(limit=0) == []
    assert ids(storage.list(queue="b", after=populated["b_dead"], limit=1)) == [
        populated["b_running"]
    ]


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


def test_oldest_due_at_is_the_earliest_run_at_among_the_due(
    storage: Storage, clock: ManualClock
) -> None:
    start = clock.now()
    storage.push(new_job(run_at=start + 4))  # scheduled
    assert storage.stats()[QUEUE].oldest_due_at is None  # nothing is due
    late = storage.push(new_job())
    early = storage.push(new_job(run_at=start - 3))  # due before it was queued
    assert storage.stats()[QUEUE] == QueueStats(
        pending=3, running=0, dead=0, scheduled=1, oldest_due_at=start - 3
    )

    assert pop_one(storage).id == early
    assert storage.stats()[QUEUE].oldest_due_at == start  # a running job is not due
    assert pop_one(storage).id == late
    assert storage.stats()[QUEUE].oldest_due_at is None
    clock.advance(4)  # the scheduled one falls due, exactly now
    assert storage.stats()[QUEUE].oldest_due_at == start + 4


def test_oldest_due_at_counts_a_retry_once_its_backoff_is_over(
    storage: Storage, clock: ManualClock
) -> None:
    job_id = storage.push(new_job(queue="q", policy=policy(backoff=Backoff.linear(2))))
    storage.push(new_job(queue="other", run_at=clock.now() - 1))
    assert pop_one(storage, queue="q").id == job_id
    storage.complete(job_id, "r1", JobResult.failure("boom"))
    stats = storage.stats()
    assert stats["q"].oldest_due_at is None
    assert stats["other"].oldest_due_at == clock.now() - 1  # per queue
    clock.advance(2.5)
    assert storage.stats()["q"].oldest_due_at == clock.now() - 0.5


@dataclasses.dataclass
class Greet(Job):
    who: str
    when: dt.datetime
    ref: uuid.UUID
    tags: list[str]
    times: int = 1

    def run(self, state: object) -> None:
        pass


def test_arguments_are_the_jobs_fields_decoded(storage: Storage) -> None:
    greet = Greet(
        "world", dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC), uuid.UUID(int=7), ["a", "b"]
    )
    job_id = storage.push(greet.to_new())
    expected = {
        "who": "world",
        "when": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
        "ref": uuid.UUID(int=7),
        "tags": ["a", "b"],
        "times": 1,
    }
    assert info(storage, job_id).arguments() == expected
    (listed,) = storage.list()
    assert listed.arguments() == expected
    assert Greet(**listed.arguments()) == greet


@pytest.mark.parametrize("args", [b"\x01", b"\xc1", b"\x81", b"\x80\x80"])
def test_arguments_that_are_not_a_msgpack_map_raise_valueerror(
    storage: Storage, args: bytes
) -> None:
    job_id = storage.push(new_job(args=args))
    with pytest.raises(ValueError, match=str(job_id)):
        info(storage, job_id).arguments()
    assert info(storage, job_id).args == args  # stored as given all the same
