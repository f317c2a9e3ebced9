"""The messages between the host and an arbiter, one frozen value each.

On the wire a message is a msgpack array: its tag, then its fields in order
(``encode``); ``decode`` turns one back into its value through one table, so
nothing reads a message by index. They are NamedTuples: frozen, named, and
cheap to build, which matters at several per job. Ids travel as 16 raw bytes; job arguments
as msgpack bin, never decoded on the way.

    arbiter -> host                          host -> arbiter
    Want(queue, n, idle) credits: n more     Spec(fields)       first, once
    Started(job_id)     a job began to run   Deliver(...)       a job to run
    Done(job_id, ...)   a job ended          Answer(request...) to a PushJobs
    WaitJob(request, job_id)  a job waits for another's end (its Answer then)
    Beat(job_ids)       held jobs are alive  Stop()             finish and leave
    PushJobs(request, jobs)  jobs queue jobs
    LoopBlocked(job, seconds) the event loop is stuck
    Ready() Recycling(reason) Fatal(error) Bye()   StopJob(job_id, reason, cancel)
    Slots(queue, slots) slots now            Scale(queue, slots)  live slots
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ProtocolError(Exception):
    """A message that is not one of ours, or not in its shape."""


# -- arbiter -> host -------------------------------------------------------------


class Want(NamedTuple):
    """Credits: the arbiter can take ``n`` more jobs of ``queue``; ``idle`` of
    its workers have nothing to run now (the others' jobs would wait in its
    buffer)."""

    queue: str
    n: int
    idle: int


class Started(NamedTuple):
    """A delivered job began to run: from now on its death is an attempt, and
    its TIMEOUT counts."""

    job_id: bytes


class Done(NamedTuple):
    """A delivered job ended: ``outcome`` is an Outcome's value; ``value`` is
    the msgpack of what ``run`` returned, if not None."""

    job_id: bytes
    outcome: str
    error: str | None
    value: bytes | None


class Beat(NamedTuple):
    """The arbiter still holds these jobs (buffered or running)."""

    job_ids: list[bytes]


class PushJobs(NamedTuple):
    """Jobs queued by jobs; answered by an Answer with the same ``request``."""

    request: int
    jobs: list[list[Any]]  # see actors.wire.pack_new_job


class WaitJob(NamedTuple):
    """A running job waits for ``job_id`` to end (a parent's result, say);
    answered by an Answer with the same ``request`` once it has ended:
    ``[status, last error, result]``, or None when it has no record."""

    request: int
    job_id: bytes


class LoopBlocked(NamedTuple):
    """The arbiter's event loop has not turned for ``seconds``: ``job`` (a
    name and id, if one was found on it) is blocking it."""

    job: str | None
    seconds: float


class Ready(NamedTuple):
    """Every worker built its state: the arbiter is past start-up."""


class Recycling(NamedTuple):
    """The arbiter reached a limit and drains itself, to be replaced."""

    reason: str


class Fatal(NamedTuple):
    """The arbiter cannot go on (it could not start, a worker failed)."""

    error: str


class Bye(NamedTuple):
    """Drained: the process ends next."""


class Slots(NamedTuple):
    """``queue`` has ``slots`` worker slots now (after a Scale; a slot being
    retired counts until its job ends)."""

    queue: str
    slots: int


# -- host -> arbiter -------------------------------------------------------------


class Spec(NamedTuple):
    """The ArbiterSpec's fields: always the first message."""

    fields: dict[str, Any]


class Deliver(NamedTuple):
    """A claimed job for the arbiter to run."""

    queue: str
    job_id: bytes
    name: str
    args: bytes
    retry_count: int
    timeout: float | None
    parents: bytes = b""  # the job's parent ids, storage.dependencies.pack'd


class Answer(NamedTuple):
    request: int
    ok: bool
    # The pushed jobs' ids, or the error's text; [UNKNOWN_PARENT, id] when
    # a parent named in after= is not stored.
    payload: Any


UNKNOWN_PARENT = "unknown_parent"


class StopJob(NamedTuple):
    """Stop this one running job: JobInterrupted in its thread (its task
    cancelled, for an async job). ``cancel`` False: its TIMEOUT passed, and
    the attempt fails with ``reason`` as its error; True: a cancel, its
    context says ``cancelled`` and it ends CANCELLED whatever it does next."""

    job_id: bytes
    reason: str
    cancel: bool


class Scale(NamedTuple):
    """Give ``queue`` ``slots`` worker slots, without a restart: busy slots
    that go finish their job first."""

    queue: str
    slots: int


class Stop(NamedTuple):
    """Run nothing more: hand back what is buffered, finish what runs, leave."""


_TYPES: tuple[type, ...] = (
    Want,
    Started,
    Done,
    Beat,
    PushJobs,
    WaitJob,
    LoopBlocked,
    Ready,
    Recycling,
    Fatal,
    Bye,
    Slots,
    Spec,
    Deliver,
    Answer,
    StopJob,
    Scale,
    Stop,
)
_TAG = {kind: kind.__name__ for kind in _TYPES}
_BY_TAG: dict[str, Any] = {kind.__name__: kind for kind in _TYPES}
_ARITY = {kind.__name__: len(kind._fields) for kind in _TYPES}  # type: ignore[attr-defined]


def encode(message: Any) -> tuple[Any, ...]:
    """``message`` as it goes on the wire: ``(tag, *fields)``."""
    return (_TAG[type(message)], *message)


def decode(raw: Any) -> Any:
    """The message ``raw`` (from ``encode``) stands for; ProtocolError if none."""
    if not isinstance(raw, list) or not raw:
        raise ProtocolError(f"a message is a non-empty array, got {type(raw).__name__}")
    tag = raw[0]
    kind = _BY_TAG.get(tag) if isinstance(tag, str) else None
    if kind is None:
        raise ProtocolError(f"unknown message {tag!r}")
    if len(raw) - 1 != _ARITY[tag]:
        raise ProtocolError(f"{tag} takes {_ARITY[tag]} fields, got {len(raw) - 1}")
    return kind._make(raw[1:])
