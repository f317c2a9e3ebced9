"""Blocking calls on a StorageActor, for in-process callers.

Contract: each sends one op and blocks its caller, never the actor, until the
answer comes or ``timeout`` seconds pass. ``wait_for`` is for ops that answer
through a callback; ``pop_wait`` pops through a ``FutureReply``, and on
timeout withdraws its parked pop so that no job is claimed for a caller that
has gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka

from actors.ops import Pop, Unpark
from storage import Claim


def wait_for(
    ref: pykka.ActorRef[Any],
    make_op: Callable[[Callable[[Any], None]], object],
    timeout: float | None,
) -> Any:
    """Send an op that answers through a callback, and block for that answer."""
    future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    ref.tell(make_op(future.set))
    return future.get(timeout=timeout)


class FutureReply:
    """A Reply for in-process callers: the first delivery resolves a future."""

    def __init__(self) -> None:
        self.future: pykka.ThreadingFuture[list[Claim]] = pykka.ThreadingFuture()

    def deliver(self, token: Any, jobs: list[Claim]) -> None:
        self.future.set(jobs)

    def flush(self) -> None:
        pass


def pop_wait(
    ref: pykka.ActorRef[Any],
    queue: str,
    runner: str,
    *,
    limit: int = 1,
    timeout: float | None = None,
) -> list[Claim]:
    """Pop, waiting up to ``timeout`` seconds for a job to fall due.

    On timeout the parked pop is withdrawn, so a job that arrives later is not
    claimed for a caller that has gone; a job delivered just before the
    withdrawal is still returned.
    """
    reply = FutureReply()
    ref.tell(Pop(queue, runner, limit, reply))
    try:
        jobs: list[Claim] = reply.future.get(timeout=timeout)
        return jobs
    except pykka.Timeout:
        ref.ask(Unpark(reply))
        try:
            late: list[Claim] = reply.future.get(timeout=0)
            return late
        except pykka.Timeout:
            raise TimeoutError(f"no job on queue {queue!r} within {timeout} s") from None
