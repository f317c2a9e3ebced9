"""Pauses: which queues a host holds back, and why.

A queue is held when its pause is stored (``Storage.set_paused``: every host
sharing the storage obeys it, and it outlives a restart) or when this host
alone was told to hold it (``local_only``, gone when the host stops). A held
queue's pops stay parked (actors/parking.py); queueing is still accepted and
running jobs finish. A resume lifts the stored pause and this host's own
hold; a local resume lifts only this host's. The StorageActor owns one, reads
the stored pauses of a shared storage again every ``READ_EVERY`` seconds (and
on a NOTIFY), and gives ``held`` to its Parked after every change.
"""

from __future__ import annotations

import time

from storage.events import EventLog

log = EventLog("storage")

# Seconds between two reads of a shared storage's paused queues: another
# host's pause holds here within about this long (its NOTIFY brings it sooner).
READ_EVERY = 0.25


class Pauses:
    def __init__(self) -> None:
        self.stored: frozenset[str] = frozenset()
        self.here: frozenset[str] = frozenset()  # held by this host alone
        self.held: frozenset[str] = frozenset()  # either
        self.next_read = 0.0  # monotonic: when the stored pauses are due to be read

    def set(self, queue: str, paused: bool, *, local_only: bool) -> frozenset[str]:
        """Record a pause or resume given here; returns the queues it released."""
        if not local_only:
            self.stored = self.stored | {queue} if paused else self.stored - {queue}
        if paused and local_only:
            self.here = self.here | {queue}
        elif not paused:
            self.here = self.here - {queue}
        return self._changed("this host", "this host" if local_only else "all hosts")

    def read(self, stored: frozenset[str]) -> frozenset[str]:
        """The stored pauses as just read; returns the queues that were released."""
        self.next_read = time.monotonic() + READ_EVERY
        if stored == self.stored:
            return frozenset()
        self.stored = stored
        return self._changed("the storage", "all hosts")

    def _changed(self, by: str, scope: str) -> frozenset[str]:
        before, self.held = self.held, self.stored | self.here
        for queue in sorted(self.held - before):
            log.info("queue paused; its jobs wait", queue=queue, scope=scope, by=by)
        released = before - self.held
        for queue in sorted(released):
            log.info("queue resumed", queue=queue, by=by)
        return released
