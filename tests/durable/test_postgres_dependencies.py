"""Dependencies across hosts on one PostgreSQL schema.

Whichever host settles a parent releases (or cancels) its children in the
database, in the same transaction; a child pushed by one host while another
settles its parent is never left waiting (row locks order the two); and
through two Managers, a parent run by one host lets the other run the child,
woken by NOTIFY.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storage import Disposition, JobResult, Status
from storage.postgres import PostgresStorage
from supervisor import Manager, WorkerConfig

from ..contract.support import QUEUE, new_job, policy
from ..runtime.jobs import DIR_VAR, RemoteGather, Returns, counting_state
from ..runtime.support import start
from .pg_host import fresh_schema, require_postgres

Hosts = Callable[..., PostgresStorage]


def child_of(*parents: object) -> object:
    return new_job()._replace(after=parents)


def status(storage: PostgresStorage, job_id: object) -> Status:
    info = storage.info(job_id)  # type: ignore[arg-type]
    assert info is not None
    return info.status


def test_the_host_that_completes_the_parent_releases_the_child(hosts: Hosts) -> None:
    a, b = hosts(), hosts()
    parent = a.push(new_job())
    kid = a.push(child_of(parent))  # type: ignore[arg-type]
    a.commit()

    assert [claim.id for claim in b.pop(QUEUE, "rb", 5)] == [parent]
    b.commit()
    assert a.pop(QUEUE, "ra", 5) == []  # the child waits
    a.commit()
    assert b.complete(parent, "rb", JobResult.success()) is Disposition.FINISHED
    b.commit()
    claimed = a.pop(QUEUE, "ra", 5)
    assert [claim.id for claim in claimed] == [kid]
    assert claimed[0].parents == (parent,)


def test_a_parent_dead_on_one_host_cancels_the_subtree_another_pushed(hosts: Hosts) -> None:
    a, b = hosts(), hosts()
    parent = a.push(new_job(policy=policy(retries=0)))
    a.commit()
    kid = b.push(child_of(parent))  # type: ignore[arg-type]
    grandchild = b.push(child_of(kid))  # type: ignore[arg-type]
    b.commit()
    a.pop(QUEUE, "ra")
    assert a.complete(parent, "ra", JobResult.failure("boom")) is Disposition.DEAD
    a.commit()
    assert status(b, kid) is Status.CANCELLED
    grand = b.info(grandchild)
    assert grand is not None
    assert grand.last_error == f"parent {kid} was cancelled (ancestor {parent} died)"


def test_two_hosts_completing_both_parents_at_once_release_the_join(hosts: Hosts) -> None:
    a, b = hosts(), hosts()
    left, right, join = a.push_many([new_job(), new_job(), child_of(0, 1)])  # type: ignore[list-item]
    a.commit()
    assert {claim.id for claim in a.pop(QUEUE, "ra", 2)} == {left, right}
    a.commit()
    # Host b settles ``right`` in the transaction of a runner it took it
    # over from: both hosts change the join's row, one after the other.
    assert a.complete(left, "ra", JobResult.success()) is Disposition.FINISHED

    def other() -> None:
        assert b.complete(right, "ra", JobResult.success()) is Disposition.FINISHED
        b.commit()

    thread = threading.Thread(target=other)
    thread.start()
    time.sleep(0.2)  # let b reach the join's row lock, if it is to wait there
    a.commit()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert status(a, join) is Status.PENDING


@pytest.mark.parametrize("first", ["push", "complete"])
def test_a_child_pushed_while_its_parent_is_settled_elsewhere_is_not_stranded(
    hosts: Hosts, first: str
) -> None:
    a, b = hosts(), hosts()
    parent = a.push(new_job())
    a.commit()
    a.pop(QUEUE, "ra")
    a.commit()
    pushed: list[object] = []

    def push() -> None:
        pushed.append(b.push(child_of(parent)))  # type: ignore[arg-type]
        b.commit()

    def complete() -> None:
        assert a.complete(parent, "ra", JobResult.success()) is Disposition.FINISHED
        a.commit()

    # The first holds the parent's row uncommitted while the second runs
    # (and waits for it), then commits: either order must release the child.
    hold, then = (b, complete) if first == "push" else (a, push)
    if first == "push":
        pushed.append(b.push(child_of(parent)))  # type: ignore[arg-type]
    else:
        assert a.complete(parent, "ra", JobResult.success()) is Disposition.FINISHED
    thread = threading.Thread(target=then)
    thread.start()
    time.sleep(0.2)  # let the second reach the parent's row lock
    hold.commit()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert status(a, pushed[0]) is Status.PENDING


@pytest.fixture
def two_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Manager, Manager]]:
    """(parents, children): the first runs only Returns, the second only RemoteGather."""
    monkeypatch.setenv(DIR_VAR, str(tmp_path))
    dsn = require_postgres()
    managers: list[Manager] = []
    with fresh_schema(dsn) as schema:
        try:
            parents = WorkerConfig(storage=PostgresStorage(dsn, schema=schema)).register(Returns)
            children = WorkerConfig(
                storage=PostgresStorage(dsn, schema=schema), state=counting_state
            ).register(RemoteGather)
            yield start(managers, parents, processes=1), start(managers, children, processes=1)
        finally:
            for manager in managers:
                manager.stop(timeout=10)


@pytest.mark.processes
def test_host_a_runs_the_parents_and_host_b_the_child(
    two_hosts: tuple[Manager, Manager],
) -> None:
    host_a, host_b = two_hosts
    first, second, join = host_a.queue_many(
        [Returns(value="one", seconds=0.2), Returns(value="two"), RemoteGather()],
        after={2: [0, 1]},
    )
    assert host_a.wait(join, timeout=30) == {
        "parents": [str(first), str(second)],
        "values": ["one", "two"],
    }
    assert host_a.stats().queues["default"].ended["succeeded"] == 2
    assert host_b.stats().queues["joins"].ended["succeeded"] == 1
    assert (
        "joins" not in host_a.stats().queues
        or not host_a.stats().queues["joins"].ended["succeeded"]
    )
