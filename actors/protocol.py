"""The messages between the host and an arbiter, one frozen value each.

On the wire a message is a msgpack array: its tag, then its fields in order
(``encode``); ``decode`` turns one back into its value through one table, so
nothing reads a message by index. Ids travel as 16 raw bytes; job arguments
as msgpack bin, never decoded on the way.

    arbiter -> host                          host -> arbiter
    Want(queue, n, idle) credits: n more     Spec(fields)       first, once
    Started(job_id)     a job began to run   Deliver(...)       a job to run
    Done(job_id, ...)   a job ended          Answer(request...) to a PushJobs
    Beat(job_ids)       held jobs are alive  Stop()             finish and leave
    PushJobs(request, jobs)  jobs queue jobs
    LoopBlocked(job, seconds) the event loop is stuck
    Ready() Recycling(reason) Fatal(error) Bye()   StopJob(job_id, reason)  one job
                                             Scale(queue, count)  live slots
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


class ProtocolError(Exception):
    """A message that is not one of ours, or not in its shape."""


# -- arbiter -> host -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Want:
    """Credits: the arbiter can take ``n`` more jobs of ``queue``; ``idle`` of
    its workers have nothing to run now (the others' jobs would wait in its
    buffer)."""

    queue: str
    n: int
    idle: int


@dataclass(frozen=True, slots=True)
class Started:
    """A delivered job began to run: from now on its death is an attempt, and
    its TIMEOUT counts."""

    job_id: bytes


@dataclass(frozen=True, slots=True)
class Done:
    """A delivered job ended: ``outcome`` is an Outcome's value."""

    job_id: bytes
    outcome: str
    error: str | None


@dataclass(frozen=True, slots=True)
class Beat:
    """The arbiter still holds these jobs (buffered or running)."""

    job_ids: list[bytes]


@dataclass(frozen=True, slots=True)
class PushJobs:
    """Jobs queued by jobs; answered by an Answer with the same ``request``."""

    request: int
    jobs: list[list[Any]]  # see actors.wire.pack_new_job


@dataclass(frozen=True, slots=True)
class LoopBlocked:
    """The arbiter's event loop has not turned for ``seconds``: ``job`` (a
    name and id, if one was found on it) is blocking it."""

    job: str | None
    seconds: float


@dataclass(frozen=True, slots=True)
class Ready:
    """Every worker built its state: the arbiter is past start-up."""


@dataclass(frozen=True, slots=True)
class Recycling:
    """The arbiter reached a limit and drains itself, to be replaced."""

    reason: str


@dataclass(frozen=True, slots=True)
class Fatal:
    """The arbiter cannot go on (it could not start, a worker failed)."""

    error: str


@dataclass(frozen=True, slots=True)
class Bye:
    """Drained: the process ends next."""


# -- host -> arbiter -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """The ArbiterSpec's fields: always the first message."""

    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Deliver:
    """A claimed job for the arbiter to run."""

    queue: str
    job_id: bytes
    name: str
    args: bytes
    retry_count: int
    timeout: float | None


@dataclass(frozen=True, slots=True)
class Answer:
    request: int
    ok: bool
    payload: Any  # the pushed jobs' ids, or the error's text


@dataclass(frozen=True, slots=True)
class StopJob:
    """Stop this one running job (its TIMEOUT passed): JobInterrupted in its
    thread, with ``reason`` as its error."""

    job_id: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Scale:
    """Give ``queue`` ``count`` worker slots, without a restart: busy slots
    that go finish their job first."""

    queue: str
    count: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Run nothing more: hand back what is buffered, finish what runs, leave."""


_TYPES: tuple[type, ...] = (
    Want,
    Started,
    Done,
    Beat,
    PushJobs,
    LoopBlocked,
    Ready,
    Recycling,
    Fatal,
    Bye,
    Spec,
    Deliver,
    Answer,
    StopJob,
    Scale,
    Stop,
)
_TAG = {kind: kind.__name__ for kind in _TYPES}
_BY_TAG = {kind.__name__: kind for kind in _TYPES}
_FIELDS = {kind: tuple(f.name for f in fields(kind)) for kind in _TYPES}


def encode(message: Any) -> list[Any]:
    """``message`` as it goes on the wire: ``[tag, *fields]``."""
    kind = type(message)
    return [_TAG[kind], *(getattr(message, name) for name in _FIELDS[kind])]


def decode(raw: Any) -> Any:
    """The message ``raw`` (from ``encode``) stands for; ProtocolError if none."""
    if not isinstance(raw, list) or not raw:
        raise ProtocolError(f"a message is a non-empty array, got {type(raw).__name__}")
    kind = _BY_TAG.get(raw[0]) if isinstance(raw[0], str) else None
    if kind is None:
        raise ProtocolError(f"unknown message {raw[0]!r}")
    if len(raw) - 1 != len(_FIELDS[kind]):
        raise ProtocolError(f"{raw[0]} takes {len(_FIELDS[kind])} fields, got {len(raw) - 1}")
    return kind(*raw[1:])
