"""Dependencies between jobs through a Manager and real arbiters.

A diamond whose join job reads its parents' results from inside (its
parents' ids from ``current_job()``, their values by ``wait``); a dead parent
cancelling its waiting child, which ``wait`` reports with the reason; an
unknown parent refused at ``queue``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from supervisor import JobCancelled, Manager, Status, UnknownParent, WorkerConfig

from .jobs import AlwaysFails, Gather, QueuesAfter, Returns, counting_state
from .support import start


@pytest.fixture(autouse=True)
def _notes(workdir: Path) -> None:
    """Jobs here may note what they did."""


def config() -> WorkerConfig:
    return (
        WorkerConfig(state=counting_state)
        .register(Returns)
        .register(Gather)
        .register(AlwaysFails)
        .register(QueuesAfter)
        .set_worker_count("default", 4)
    )


def test_a_diamond_join_reads_its_parents_results(managers: list[Manager]) -> None:
    manager = start(managers, config(), processes=2)
    top, left, right, join = manager.queue_many(
        [
            Returns(value="top", seconds=0.2),
            Returns(value="left"),
            Returns(value="right"),
            Gather(),
        ],
        after={1: [0], 2: [0], 3: [1, 2]},
    )
    assert manager.info(join).status is Status.WAITING  # type: ignore[union-attr]

    gathered = manager.wait(join, timeout=30)
    assert gathered == {"parents": [str(left), str(right)], "values": ["left", "right"]}
    for parent in (top, left, right):
        info = manager.info(parent)
        assert info is not None and info.status is Status.SUCCEEDED
        assert info.finished_at <= manager.info(join).started_at  # type: ignore[operator, union-attr]
    manager.join(timeout=10)


def test_a_child_of_a_parent_that_already_succeeded_runs(managers: list[Manager]) -> None:
    manager = start(managers, config(), processes=1)
    parent = manager.queue(Returns(value=1))
    assert manager.wait(parent, timeout=20) == 1
    child = manager.queue(Gather(), after=[parent])
    assert manager.wait(child, timeout=20) == {"parents": [str(parent)], "values": [1]}


def test_a_dead_parent_cancels_its_waiting_child(managers: list[Manager]) -> None:
    manager = start(managers, config(), processes=1)
    parent = manager.queue(AlwaysFails(tag="parent"))
    child = manager.queue(Gather(), after=[str(parent)])
    grandchild = manager.queue(Gather(), after=[child])
    with pytest.raises(JobCancelled) as cancelled:
        manager.wait(grandchild, timeout=30)
    assert cancelled.value.reason == (f"parent {child} was cancelled (ancestor {parent} died)")
    info = manager.info(child)
    assert info is not None and info.last_error == f"parent {parent} died"
    manager.join(timeout=10)  # nothing left waiting
    assert manager.stats().queues["default"].ended["cancelled"] == 2


def test_join_waits_for_a_waiting_job_and_cancel_ends_it(managers: list[Manager]) -> None:
    manager = start(managers, config(), processes=1)
    parent = manager.schedule(Returns(value=1), at=60)
    child = manager.queue(Gather(), after=[parent])
    assert manager.stats().queues["default"].waiting == 1
    with pytest.raises(TimeoutError):
        manager.join(timeout=0.3)  # a waiting job is live work (its parent is for later)
    assert manager.cancel(child)
    with pytest.raises(JobCancelled):
        manager.wait(child, timeout=5)
    assert manager.stats().queues["default"].waiting == 0
    manager.join(timeout=10)  # the parent scheduled for later is not waited for


def test_an_unknown_parent_is_refused_at_queue(managers: list[Manager]) -> None:
    manager = start(managers, config(), processes=1)
    unknown = uuid.UUID(int=7)
    with pytest.raises(UnknownParent, match=str(unknown)):
        manager.queue_many([Returns(value=1), Gather()], after={1: [0, unknown]})
    assert manager.jobs() == []
    with pytest.raises(ValueError, match="position 1"):
        manager.queue_many([Returns(value=1), Gather()], after={1: [1]})
    with pytest.raises(TypeError, match="after="):
        manager.queue(Gather(), after=str(unknown))  # type: ignore[arg-type]


def test_a_job_queues_a_child_after_a_parent_from_inside(managers: list[Manager]) -> None:
    manager = start(managers, config(), processes=1)
    parent = manager.queue(Returns(value="parent", seconds=0.2))
    child = uuid.UUID(str(manager.wait(manager.queue(QueuesAfter(parent=str(parent))), timeout=20)))
    assert manager.wait(child, timeout=20) == "child"
    info = manager.info(child)
    assert info is not None and info.parents == (parent,)

    unknown = uuid.UUID(int=9)
    refused = manager.wait(manager.queue(QueuesAfter(parent=str(unknown))), timeout=20)
    assert refused == f"UnknownParent: {UnknownParent(unknown)}"
