"""Waker: the one timer thread of a StorageActor.

Contract: ``wake_at(t)`` asks for one ``Tick`` to the actor once its clock
reaches ``t`` (None: no tick wanted); a later call replaces the time asked
before. The thread sleeps until then, so nothing polls. ``stop`` ends it; a
tick due when the actor has already stopped is dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pykka

from actors.ops import Tick


class Waker:
    """One thread that tells the actor to Tick at the earliest asked-for time."""

    def __init__(self, ref: pykka.ActorRef[Any], clock: Callable[[], float]) -> None:
        self._ref = ref
        self._clock = clock
        self._cond = threading.Condition()
        self._at: float | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="jobarbiter-waker", daemon=True)
        self._thread.start()

    def wake_at(self, at: float | None) -> None:
        with self._cond:
            if at == self._at:
                return
            sooner = at is not None and (self._at is None or at < self._at)
            self._at = at
            if sooner:
                # Only then: a later time is found when the thread wakes at
                # the earlier one; waking it for each message would cost a
                # thread switch per message on a busy actor.
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._at is None:
                    self._cond.wait()
                    continue
                delay = self._at - self._clock()
                if delay > 0:
                    # Capped, so a clock that is moved by hand is noticed too.
                    self._cond.wait(min(delay, 1.0))
                    continue
                self._at = None
                try:
                    self._ref.tell(Tick())
                except pykka.ActorDeadError:
                    return  # the actor stopped between our checks
