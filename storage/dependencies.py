"""Dependencies between jobs: what every backend shares about parents and children.

A job queued with ``NewJob.after`` is a *child* of the jobs named there, its
*parents*. The rules every backend keeps (tests/contract/test_dependencies.py):

* at push, every parent must be known: a live or dead job, or a kept record
  (succeeded or cancelled, within its result_ttl). An unknown id raises
  UnknownParent and nothing of the batch is stored. So a parent that ended
  long ago can be named only while its record is kept;
* a parent that has already succeeded counts as done; a parent that is dead or
  cancelled already cancels the child at once (it is stored cancelled, with
  the reason), as it would have been had it waited;
* a child with a parent not yet succeeded is WAITING: live work (it holds its
  unique key, ``stats`` counts it as ``waiting``), never claimed;
* when a parent succeeds, each of its children whose parents have now all
  succeeded becomes PENDING, at its own run_at, in the same transaction;
* when a parent ends dead or cancelled, its waiting children are cancelled in
  the same transaction, and theirs, down the whole subtree, without recursion
  in Python: the reason names the parent (``reason()``). A dead parent
  requeued later does not bring them back: they stay cancelled;
* within one ``push_many`` an int in ``after`` is the position of an earlier
  job of the same call (a later or its own position is refused with
  ValueError), so a batch can carry its own edges.

What the ends of parents did to children is told to the runtime through
``Storage.dependents()`` (``Dependents``): the queues where children became
pending (their parked pops are served) and the children cancelled (their
waiters are told). Parent ids travel packed, 16 bytes each (``pack``), where a
flat value is wanted: a memory record, an SQLite column, the wire.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from storage.model import NewJob, Status


class UnknownParent(LookupError):  # noqa: N818 - the name says what was wrong
    """A job was queued after an id the storage does not know (never queued,
    or its record expired: name a parent while its record is kept)."""

    def __init__(self, parent: uuid.UUID) -> None:
        self.parent = parent
        super().__init__(
            f"unknown parent job {parent} in after=: never queued, or its record "
            "expired (a parent must be named while its record is kept, for its "
            "RESULT_TTL after it ends); nothing of the batch was stored"
        )


class CancelledChild(NamedTuple):
    """A waiting child cancelled because a parent (or an ancestor) ended badly."""

    id: uuid.UUID
    queue: str
    reason: str


@dataclass(frozen=True, slots=True)
class Dependents:
    """What the ends of parents did to children since ``dependents()`` was
    last asked: ``released``, the queues where waiting children became
    pending; ``cancelled``, the children cancelled, with their reasons."""

    released: frozenset[str] = frozenset()
    cancelled: tuple[CancelledChild, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.released or self.cancelled)


NONE = Dependents()


class Told:
    """What a backend gathers for ``dependents()`` as parents end: the
    queues whose children were released and the children cancelled. A
    backend clears it when a transaction rolls back (none of it happened)."""

    __slots__ = ("cancelled", "released")

    def __init__(self) -> None:
        self.released: set[str] = set()
        self.cancelled: list[CancelledChild] = []

    def take(self) -> Dependents:
        """What was gathered since the last take, and start again."""
        if not self.released and not self.cancelled:
            return NONE
        told = Dependents(frozenset(self.released), tuple(self.cancelled))
        self.clear()
        return told

    def clear(self) -> None:
        self.released = set()
        self.cancelled = []


def reason(parent: uuid.UUID, root: uuid.UUID, root_status: Status) -> str:
    """Why a child of ``parent`` is cancelled, when ``root`` ended with
    ``root_status`` (DEAD or CANCELLED): the parent is named, and the root too
    when it is further up (the parent was itself cancelled for it)."""
    ended = "died" if root_status is Status.DEAD else "was cancelled"
    if parent == root:
        return f"parent {parent} {ended}"
    return f"parent {parent} was cancelled (ancestor {root} {ended})"


class Standing(NamedTuple):
    """Where a child stands as it is stored: ``cancelled`` (the reason) when a
    parent is dead or cancelled already, else ``waiting_for``, the parents
    not succeeded yet (none: it is pending)."""

    cancelled: str | None
    waiting_for: tuple[uuid.UUID, ...]


def standing(
    parents: Sequence[uuid.UUID], status_of: Callable[[uuid.UUID], Status | None]
) -> Standing:
    """Where a child of ``parents`` stands, their statuses read by
    ``status_of``. A parent it cannot read (None) was checked known before,
    so it was cancelled as its batch was stored and kept for no time (or it
    ended in between, on a shared storage): counted as cancelled, so that
    nothing runs on a guess."""
    waiting: list[uuid.UUID] = []
    for parent in parents:
        status = status_of(parent) or Status.CANCELLED
        if status is Status.DEAD or status is Status.CANCELLED:
            return Standing(reason(parent, parent, status), ())
        if status is not Status.SUCCEEDED:
            waiting.append(parent)
    return Standing(None, tuple(waiting))


def any_after(jobs: Sequence[NewJob]) -> bool:
    """Whether a job of ``jobs`` has parents: a plain loop, since every push
    asks (a generator would be an object per push for the collector)."""
    for job in jobs:  # noqa: SIM110 - see above
        if job.after:
            return True
    return False


def check_after(after: Sequence[uuid.UUID | int], position: int) -> None:
    """Refuse, naming it, what ``after`` of the job at ``position`` of a push
    cannot mean: an int that is not an earlier position, or a non-id."""
    for parent in after:
        if isinstance(parent, bool) or not isinstance(parent, int | uuid.UUID):
            raise TypeError(
                f"after= holds job ids (UUID) or positions of earlier jobs of the "
                f"batch (int); job {position} names {parent!r} ({type(parent).__qualname__})"
            )
        if isinstance(parent, int) and not 0 <= parent < position:
            raise ValueError(
                f"after= of job {position} names position {parent}: a job of a batch "
                "may wait only for an earlier one (0 to its own position - 1)"
            )


def resolve(after: Sequence[uuid.UUID | int], ids: Sequence[uuid.UUID]) -> tuple[uuid.UUID, ...]:
    """``after`` with positions replaced by the ids stored for them (``ids``,
    in batch order so far), each parent once, in the order first named."""
    parents = (ids[p] if isinstance(p, int) else p for p in after)
    return tuple(dict.fromkeys(parents))


def pack(parents: Sequence[uuid.UUID]) -> bytes:
    """Parent ids as one flat bytes value, 16 bytes each."""
    return b"".join(parent.bytes for parent in parents)


def unpack(packed: bytes | None) -> tuple[uuid.UUID, ...]:
    """The ids ``pack`` made (None or empty: no parents)."""
    if not packed:
        return ()
    return tuple(uuid.UUID(bytes=packed[at : at + 16]) for at in range(0, len(packed), 16))
