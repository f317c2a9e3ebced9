"""Unique jobs: one live job per key; finished and dead jobs free the key."""

from __future__ import annotations

from storage import JobResult, ManualClock, Status, Storage

from .support import QUEUE, info, kill, new_job, policy, pop_one


def test_a_second_push_with_a_live_key_returns_the_first(storage: Storage) -> None:
    first = storage.push(new_job(unique_key="k"))
    assert storage.push(new_job(unique_key="k", args=b"\x81\xa1a\x01")) == first
    assert storage.stats()[QUEUE].pending == 1
    assert info(storage, first).unique_key == "k"


def test_the_key_holds_while_running(storage: Storage) -> None:
    first = storage.push(new_job(unique_key="k"))
    pop_one(storage)
    assert storage.push(new_job(unique_key="k")) == first
    assert storage.stats()[QUEUE].running == 1
    assert storage.stats()[QUEUE].pending == 0


def test_push_many_keeps_one_per_key(storage: Storage) -> None:
    a, b, c = storage.push_many(
        [new_job(unique_key="k"), new_job(unique_key="k"), new_job(unique_key=None)]
    )
    assert a == b != c
    assert storage.stats()[QUEUE].pending == 2


def test_jobs_without_keys_never_collide(storage: Storage) -> None:
    assert storage.push(new_job()) != storage.push(new_job())


def test_a_finished_job_frees_its_key(storage: Storage) -> None:
    first = storage.push(new_job(unique_key="k"))
    pop_one(storage)
    storage.complete(first, "r1", JobResult.success())
    assert storage.push(new_job(unique_key="k")) != first


def test_a_retrying_job_keeps_its_key(storage: Storage, clock: ManualClock) -> None:
    first = storage.push(new_job(unique_key="k"))
    pop_one(storage)
    storage.complete(first, "r1", JobResult.failure("boom"))
    assert storage.push(new_job(unique_key="k")) == first


def test_a_dead_job_frees_its_key_and_requeue_takes_it_back_if_free(storage: Storage) -> None:
    dead = storage.push(new_job(unique_key="k", policy=policy(retries=0)))
    kill(storage, dead)
    fresh = storage.push(new_job(unique_key="k"))
    assert fresh != dead
    # The key is taken by the fresh job: requeueing the dead one still works.
    assert storage.requeue(dead)
    assert info(storage, dead).status is Status.PENDING
    assert storage.push(new_job(unique_key="k")) == fresh

    gone = storage.push(new_job(unique_key="g", policy=policy(retries=0)))
    pop_one(storage)  # the fresh job
    pop_one(storage)  # the requeued dead one
    kill(storage, gone)
    assert storage.requeue(gone)
    assert storage.push(new_job(unique_key="g")) == gone
