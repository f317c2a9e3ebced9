"""Parked: the pops a StorageActor could not answer yet, per queue.

Contract: a pop that answers through a Reply and finds nothing due waits
here, in arrival order within its queue, until ``serve`` finds jobs due for
it; it is answered through ``deliver`` (the actor's, which records the
delivery and buffers it). A runner's kept pops (an arbiter's credits) wait as
one entry. ``serve`` goes in two passes: first the pops for idle workers,
then the prefetch credits, so that a job never waits in one arbiter's buffer
while another arbiter's worker is idle. A drained runner's parked pops are
answered empty, and so are its later ones. A paused queue's pops stay
parked and are not served until it is resumed. Only the actor's thread
calls it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from actors.ops import Pop
from storage import Claim, Storage

Deliver = Callable[[Pop, list[Claim]], None]


class Parked:
    """The parked pops of every queue, and the runners being drained."""

    def __init__(self, storage: Storage, deliver: Deliver) -> None:
        self._storage = storage
        self._deliver = deliver
        self._parked: dict[str, deque[Pop]] = {}
        self._draining: set[str] = set()
        self.paused: frozenset[str] = frozenset()  # set by the actor

    def __bool__(self) -> bool:
        """Whether any pop is parked."""
        return any(self._parked.values())

    def queues(self) -> list[str]:
        """The queues that have a pop parked."""
        return [queue for queue, parked in self._parked.items() if parked]

    def is_draining(self, runner: str) -> bool:
        return runner in self._draining

    def hand_out(self, pop: Pop, jobs: list[Claim]) -> None:
        """Deliver ``jobs`` for ``pop``; park it, or what is left of it, if it
        is not answered by them."""
        if jobs:
            self._deliver(pop, jobs)
        rest = pop.limit - len(jobs)
        if not jobs or (pop.keep and rest > 0):
            if jobs:
                pop = pop._replace(limit=rest, urgent=max(pop.urgent - len(jobs), 0))
            self.park(pop)

    def park(self, pop: Pop) -> None:
        parked = self._parked.setdefault(pop.queue, deque())
        if pop.keep:
            for at, other in enumerate(parked):
                if other.keep and other.runner == pop.runner:
                    # One entry per runner: its credits add up, and its newest
                    # word on idle workers holds.
                    limit = other.limit + pop.limit
                    parked[at] = other._replace(limit=limit, urgent=min(pop.urgent, limit))
                    return
        parked.append(pop)

    def serve(self, queue: str) -> None:
        """Serve the parked pops of ``queue`` while jobs are due: first those
        for idle workers, then the rest (prefetch credits), each in order."""
        parked = self._parked.get(queue)
        if not parked or queue in self.paused:
            return
        for urgent_only in (True, False):
            waiting, parked = parked, deque()
            self._parked[queue] = parked
            while waiting:
                op = waiting.popleft()
                want = op.urgent if urgent_only else op.limit
                jobs = self._storage.pop(queue, op.runner, want) if want else []
                if jobs:
                    self._deliver(op, jobs)
                    rest = op.limit - len(jobs)
                    if not op.keep or rest <= 0:
                        continue
                    op = op._replace(limit=rest, urgent=max(op.urgent - len(jobs), 0))
                parked.append(op)
                if want and len(jobs) < want:  # nothing more is due: keep the order
                    parked.extend(waiting)
                    return

    def serve_all(self) -> None:
        for queue in list(self._parked):
            self.serve(queue)

    def drain(self, runner: str) -> None:
        """The runner takes no more work: its parked pops are answered empty."""
        self._draining.add(runner)
        for op in self.withdraw(lambda op: op.runner == runner):
            self._deliver(op, [])

    def withdraw(self, doomed: Callable[[Pop], bool]) -> list[Pop]:
        """Withdraw the parked pops ``doomed`` picks; returns them."""
        withdrawn = []
        for parked in self._parked.values():
            kept = [op for op in parked if not doomed(op)]
            withdrawn += [op for op in parked if doomed(op)]
            parked.clear()
            parked.extend(kept)
        return withdrawn
