"""Middleware: code of the application's that runs around every job.

Contract: ``WorkerConfig(middleware=[...])`` takes Middleware instances.
They are pickled once, when the config is frozen into an ArbiterSpec, and
each arbiter process unpickles its own copies: so a middleware must be
picklable and its class importable by name (not defined in ``__main__`` or
inside a function), and state it keeps (a counter, a connection) is per
arbiter process, never shared with the host or the other arbiters.

In an arbiter, for every job that runs, in the job's own thread or task:
``before_job`` in the order given, then the job, then ``after_job`` in the
same order, with the JobOutcome. ``after_job`` runs after the returned
value was encoded, so a value that cannot be stored is seen as FAILED. A
hook that raises is logged (``jobarbiter.worker``, an error with its
traceback) and skipped: the job still runs and reports, and the other
middleware still run. A job stopped with its arbiter (killed past its grace,
or an arbiter that died) runs no ``after_job``: nothing is left to run it.

In the host, ``arbiter_died`` is called by the Manager each time an arbiter
process ends other than by a planned stop or recycle (a crash, a kill, a
job stopped for real), with the jobs it was running. It runs on the
Manager's thread: it should be quick, and never block.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actors.context import JobContext
from storage.events import EventLog

log = EventLog("worker")
host_log = EventLog("manager")


class OutcomeStatus(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # raised, or returned a value that cannot be stored
    TIMED_OUT = "timed out"  # stopped at its TIMEOUT; the attempt failed
    CANCELLED = "cancelled"  # a cancel was asked while it ran; never retried


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOutcome:
    """How a job ended, as ``after_job`` sees it. ``value`` is what ``run``
    returned (None unless it succeeded); ``error`` the stored error, a
    traceback for a failure; ``duration`` the seconds it ran."""

    status: OutcomeStatus
    error: str | None
    value: object
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ArbiterDied:
    """An arbiter process ended unplanned. ``exit`` says how ("signal SIGKILL",
    "exit code 3 ..."); ``job_ids`` are the jobs it had started and not
    reported done."""

    arbiter: int
    pid: int | None
    exit: str
    job_ids: tuple[uuid.UUID, ...]


class Middleware:
    """Subclass and override the hooks you need; each is a no-op here.

    Instances must be picklable (see the module docstring): configure them
    with plain values, and open connections lazily, in the arbiter."""

    def before_job(self, ctx: JobContext) -> None:
        """Before the job's ``run``, in its thread or task."""

    def after_job(self, ctx: JobContext, outcome: JobOutcome) -> None:
        """After the job ended and its result was decided, before it is reported."""

    def arbiter_died(self, event: ArbiterDied) -> None:
        """In the host: an arbiter process died (see ArbiterDied)."""


def before(middleware: Sequence[Middleware], ctx: JobContext) -> None:
    for hook in middleware:
        try:
            hook.before_job(ctx)
        except Exception as exc:
            _failed(hook, "before_job", ctx, exc)


def after(middleware: Sequence[Middleware], ctx: JobContext, outcome: JobOutcome) -> None:
    for hook in middleware:
        try:
            hook.after_job(ctx, outcome)
        except Exception as exc:
            _failed(hook, "after_job", ctx, exc)


def died(middleware: Sequence[Middleware], event: ArbiterDied) -> None:
    for hook in middleware:
        try:
            hook.arbiter_died(event)
        except Exception as exc:
            host_log.error(
                "middleware hook failed",
                hook="arbiter_died",
                middleware=type(hook).__qualname__,
                arbiter=event.arbiter,
                exc_info=exc,
            )


def _failed(hook: Middleware, name: str, ctx: JobContext, exc: Exception) -> None:
    log.error(
        "middleware hook failed",
        hook=name,
        middleware=type(hook).__qualname__,
        job_id=ctx.id,
        job_name=ctx.name,
        exc_info=exc,
    )


def check_middleware(middleware: Any) -> tuple[Middleware, ...]:
    """``middleware`` as a tuple of Middleware; TypeError naming what is not one."""
    if isinstance(middleware, Middleware) or not isinstance(middleware, Sequence | set):
        raise TypeError(f"middleware must be a list of Middleware instances; got {middleware!r}")
    found = tuple(middleware)
    for item in found:
        if isinstance(item, type) and issubclass(item, Middleware):
            raise TypeError(
                f"middleware {item.__qualname__} is a class: pass an instance, "
                f"{item.__qualname__}()"
            )
        if not isinstance(item, Middleware):
            raise TypeError(
                f"middleware must be Middleware instances (subclass "
                f"supervisor.Middleware); got {item!r} ({type(item).__qualname__})"
            )
    return found
