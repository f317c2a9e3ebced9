"""``list`` by keyset: id order, ``after``, ``limit`` and the filters
(queue, status, scheduled, name), with expired records left out."""

from __future__ import annotations

import uuid

import pytest

from storage import Backoff, Disposition, JobResult, ManualClock, Status, Storage

from .support import ids, new_job, policy, pop_one

PENDING, RUNNING, DEAD = Status.PENDING, Status.RUNNING, Status.DEAD
SUCCEEDED, CANCELLED = Status.SUCCEEDED, Status.CANCELLED

# label: (queue, status, scheduled), in the order the fixture queues them;
# scheduled is None for all but pending jobs.
SHOWN = {
    "a_dead": ("a", DEAD, None),
    "b_running": ("b", RUNNING, None),
    "a_due": ("a", PENDING, False),
    "b_backoff": ("b", PENDING, False),  # failed once: waiting, but not scheduled
    "a_later": ("a", PENDING, True),
    "b_succeeded": ("b", SUCCEEDED, None),
    "a_cancelled": ("a", CANCELLED, None),
    # "b_expired" comes here: its record expired this very instant.
    "a_now_due": ("a", PENDING, False),  # was scheduled, due exactly now
    "b_retry_due": ("b", PENDING, False),
    "b_later": ("b", PENDING, True),
}


@pytest.fixture
def zoo(storage: Storage, clock: ManualClock) -> dict[str, uuid.UUID]:
    """Jobs of queues "a" and "b" in every state SHOWN names, queued in its
    order, and one expired record (not listed) among them."""
    now = clock.now()
    jobs = {
        "a_dead": storage.push(new_job(queue="a", policy=policy(retries=0))),
        "b_running": storage.push(new_job(queue="b")),
        "a_due": storage.push(new_job(queue="a")),
        "b_backoff": storage.push(new_job(queue="b", policy=policy(backoff=Backoff.linear(30)))),
        "a_later": storage.push(new_job(queue="a", run_at=now + 100)),
        "b_succeeded": storage.push(new_job(queue="b")),
        "a_cancelled": storage.push(new_job(queue="a")),
        "b_expired": storage.push(new_job(queue="b", policy=policy(result_ttl=1))),
        "a_now_due": storage.push(new_job(queue="a", run_at=now + 1)),
        "b_retry_due": storage.push(new_job(queue="b", policy=policy(backoff=Backoff.linear(0)))),
        "b_later": storage.push(new_job(queue="b", run_at=now + 50)),
    }
    assert pop_one(storage, queue="a").id == jobs["a_dead"]
    assert storage.complete(jobs["a_dead"], "r1", JobResult.failure("x")) is Disposition.DEAD
    assert storage.cancel(jobs["a_cancelled"], "no") is Status.PENDING
    popped = ids(storage.pop("b", "r1", limit=10))
    assert popped == [jobs[n] for n in ("b_running", "b_backoff", "b_succeeded", "b_expired")] + [
        jobs["b_retry_due"]
    ]
    for name, result in (
        ("b_backoff", JobResult.failure("boom")),
        ("b_succeeded", JobResult.success()),
        ("b_expired", JobResult.success()),
        ("b_retry_due", JobResult.failure("boom")),
    ):
        assert storage.complete(jobs[name], "r1", result) is not Disposition.NOT_HELD
    clock.advance(1)  # b_expired's record expires now; a_now_due falls due
    storage.commit()
    return jobs


def _expected(
    jobs: dict[str, uuid.UUID],
    queue: str | None,
    status: Status | None,
    scheduled: bool | None,
) -> list[uuid.UUID]:
    return [
        jobs[name]
        for name, (q, s, sched) in SHOWN.items()
        if queue in (None, q)
        and status in (None, s)
        and (scheduled is None or (s is PENDING and sched is scheduled))
    ]


def _walk(storage: Storage, limit: int, **filters: object) -> list[uuid.UUID]:
    """Every page, each from just past the last id of the page before."""
    walked: list[uuid.UUID] = []
    after = None
    for _ in range(100):
        page = ids(storage.list(after=after, limit=limit, **filters))  # type: ignore[arg-type]
        assert len(page) <= limit
        walked += page
        if len(page) < limit:
            return walked
        after = page[-1]
    raise AssertionError("the walk does not end")


def test_the_listing_is_in_id_order_without_the_expired_record(
    storage: Storage, zoo: dict[str, uuid.UUID]
) -> None:
    listing = storage.list()
    assert ids(listing) == [zoo[name] for name in SHOWN]
    assert ids(listing) == sorted(ids(listing))  # UUIDv7: queue order is id order
    assert [(job.queue, job.status) for job in listing] == [(q, s) for q, s, _ in SHOWN.values()]
    assert storage.info(zoo["b_expired"]) is None
    assert zoo["b_expired"] not in ids(storage.list(status=SUCCEEDED, queue="b"))


@pytest.mark.parametrize("queue", [None, "a", "b"])
@pytest.mark.parametrize("status", [None, *Status])
def test_every_filter_walks_its_jobs_once_in_id_order(
    storage: Storage, zoo: dict[str, uuid.UUID], queue: str | None, status: Status | None
) -> None:
    for scheduled in (None, True, False):
        expected = _expected(zoo, queue, status, scheduled)
        filters = {"queue": queue, "status": status, "scheduled": scheduled}
        assert ids(storage.list(**filters)) == expected, filters  # type: ignore[arg-type]
        for limit in (1, 2, 3):
            assert _walk(storage, limit, **filters) == expected, (filters, limit)


def test_scheduled_is_the_pending_jobs_not_due_that_never_failed(
    storage: Storage, zoo: dict[str, uuid.UUID]
) -> None:
    assert ids(storage.list(scheduled=True)) == [zoo["a_later"], zoo["b_later"]]
    assert ids(storage.list(status=PENDING, scheduled=False)) == [
        zoo[n] for n in ("a_due", "b_backoff", "a_now_due", "b_retry_due")
    ]
    for status in (RUNNING, DEAD, SUCCEEDED, CANCELLED):
        # Only pending jobs are scheduled or not: nothing is both.
        assert storage.list(status=status, scheduled=True) == []
        assert storage.list(status=status, scheduled=False) == []


def test_after_may_be_any_uuid(storage: Storage, zoo: dict[str, uuid.UUID]) -> None:
    whole = ids(storage.list())
    middle = whole[4].int
    version = 0xF << 76
    afters = [
        uuid.UUID(int=0),
        uuid.UUID(int=(1 << 128) - 1),
        uuid.UUID(int=middle - 1),  # same time and counter, just below
        uuid.UUID(int=middle + 1),  # just above
        uuid.UUID(int=middle & ~version),  # same time and counter, version 0
        uuid.UUID(int=middle | version),  # version 15
        uuid.UUID(int=(middle >> 64) << 64),  # same time and counter, least tail
        uuid.UUID(int=((middle >> 64) << 64) | ((1 << 64) - 1)),  # greatest tail
        uuid.UUID("00000000-0000-4000-8000-000000000000"),
        uuid.uuid4(),
    ]
    for after in afters:
        expected = [job_id for job_id in whole if job_id.int > after.int]
        assert ids(storage.list(after=after)) == expected, after
        assert ids(storage.list(after=after, limit=2)) == expected[:2], after
    assert ids(storage.list(after=whole[4])) == whole[5:]


def test_limit(storage: Storage, zoo: dict[str, uuid.UUID]) -> None:
    whole = ids(storage.list())
    assert ids(storage.list(limit=3)) == whole[:3]
    assert ids(storage.list(limit=len(whole))) == whole
    assert storage.list(limit=0) == []
    assert storage.list(limit=-1) == []


def test_a_walk_meets_no_job_twice_while_jobs_change_between_pages(
    storage: Storage, clock: ManualClock
) -> None:
    queued = storage.push_many([new_job() for _ in range(8)])
    seen: list[uuid.UUID] = []
    page = ids(storage.list(status=PENDING, limit=3))
    while page:
        seen += page
        # Between pages: the oldest pending job starts (leaves the filter),
        # and one more is queued (it joins the end of the walk).
        storage.pop("default", "r1", limit=1)
        if len(queued) < 12:
            queued.append(storage.push(new_job()))
        page = ids(storage.list(status=PENDING, after=page[-1], limit=3))
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    running = set(ids(storage.list(status=RUNNING)))
    # Every job pending throughout the walk was met; the rest started.
    assert set(queued) - running <= set(seen)
    assert set(seen) | running == set(queued)


def test_a_walk_goes_on_past_a_job_that_is_gone(storage: Storage) -> None:
    first, second, third = storage.push_many(
        [new_job(policy=policy(retries=0)), new_job(), new_job()]
    )
    assert pop_one(storage).id == first
    storage.complete(first, "r1", JobResult.failure("fatal"))
    assert storage.purge_dead() == 1
    assert ids(storage.list(after=first)) == [second, third]


@pytest.mark.parametrize("page", [1, 7, 100])
def test_many_jobs_of_many_queues_walk_once(storage: Storage, page: int) -> None:
    queued = storage.push_many([new_job(queue=f"q{n % 3}") for n in range(30)])
    assert _walk(storage, page) == queued
    assert _walk(storage, page, queue="q1") == queued[1::3]
    assert _walk(storage, page, queue="q2", status=PENDING) == queued[2::3]


def test_a_name_keeps_the_jobs_of_that_name_with_every_filter(storage: Storage) -> None:
    names = ("tests.Mail", "tests.Report")
    queued = storage.push_many(
        [
            new_job(name=names[n % 2], queue="ab"[n // 2 % 2], policy=policy(retries=0))
            for n in range(16)
        ]
    )
    # What becomes of each (by position modulo 4) once all are running.
    ends = [JobResult.success(), JobResult.failure("x"), JobResult.cancelled("no"), None]
    statuses = [SUCCEEDED, DEAD, CANCELLED, RUNNING]
    claimed = [claim.id for q in "ab" for claim in storage.pop(q, "r1", limit=100)]
    assert sorted(claimed) == queued
    for n, job_id in enumerate(queued):
        if ends[n % 4] is not None:
            storage.complete(job_id, "r1", ends[n % 4])  # type: ignore[arg-type]
    pending = storage.push_many([new_job(name=names[n % 2], queue="ab"[n // 2]) for n in range(4)])
    storage.commit()
    jobs = [
        (job_id, names[n % 2], "ab"[n // 2 % 2], statuses[n % 4]) for n, job_id in enumerate(queued)
    ] + [(job_id, names[n % 2], "ab"[n // 2], PENDING) for n, job_id in enumerate(pending)]
    for name in names:
        for queue in (None, "a", "b"):
            for status in (None, *Status):
                expected = [
                    job_id
                    for job_id, n, q, s in jobs
                    if n == name and queue in (None, q) and status in (None, s)
                ]
                filters = {"name": name, "queue": queue, "status": status}
                assert ids(storage.list(**filters)) == expected, filters
                assert _walk(storage, 1, **filters) == expected, filters
    assert ids(storage.list(name=names[0], scheduled=False)) == [pending[0], pending[2]]
    assert storage.list(name=names[0], scheduled=True) == []
    assert storage.list(name="tests.Nobody") == []
    assert storage.list(name="tests") == []  # the whole name, not a prefix
