"""Rounds: how many senders' batches reach a StorageActor as one round.

Contract: ``submit`` leaves a Batch (one with an ``answer`` callback) and never
blocks on the actor. The actor is told one ``Round`` for the first batch
left; when it handles it, it ``take``s every batch left by then and runs them
together. A batch still reaches the actor before any message its sender
sends after leaving it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pykka

from actors.ops import Batch


class Rounds:
    """Where the links leave their batches for a StorageActor.

    The actor is told once for the first batch left; every batch left before
    it gets to them runs with it as one round (see
    ``StorageActor._run_round``). So when many runners send at once, their
    completions and pops share one storage call and one commit, instead of
    one each; on a database server that is most of the cost of a job. A batch
    still reaches the actor before any message sent after it was left.
    """

    def __init__(self, storage: pykka.ActorRef[Any]) -> None:
        self._storage = storage
        self._lock = threading.Lock()
        self._pending: list[Batch] = []

    def submit(self, batch: Batch) -> None:
        with self._lock:
            self._pending.append(batch)
            first = len(self._pending) == 1
        if first:
            self._storage.tell(Round(self))

    def take(self) -> list[Batch]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken


@dataclass(frozen=True, slots=True)
class Round:
    """Run what ``rounds`` holds."""

    rounds: Rounds
