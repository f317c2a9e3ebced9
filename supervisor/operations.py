"""Operations: what an operator can look at and change, wherever it is.

Three things answer it: a running ``Manager`` (everything), a storage opened
directly by URL (``storage_operations``: no workers, so no ``scale``), and a
running service's HTTP API (``supervisor.http_client``). The CLI works on any
of them, and the HTTP API serves one, so each command has one meaning.

``status`` in ``jobs`` is a ``Status`` or one of LISTED's names; "scheduled"
lists the pending jobs not due yet that never failed.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from storage import JobInfo, Status
from supervisor.stats import ManagerStats

LISTED = ("pending", "scheduled", "waiting", "running", "dead", "succeeded", "cancelled")


def list_filter(status: Status | str | None) -> tuple[Status | None, bool | None]:
    """``jobs``' status as ``Storage.list`` takes it: (status, scheduled).

    "scheduled" is the pending jobs not due yet that never failed; "pending"
    is every pending job, scheduled ones included (as the stats count them).
    Raises ValueError naming what was given.
    """
    if status is None or isinstance(status, Status):
        return status, None
    if status == "scheduled":
        return Status.PENDING, True
    if status in LISTED:
        return Status(status), None
    raise ValueError(f"unknown status {status!r}: expected one of {', '.join(LISTED)}")


class Operations(Protocol):
    def stats(self) -> ManagerStats:
        """Every queue's figures (and, when running, the arbiters')."""
        ...

    def jobs(
        self,
        queue: str | None = None,
        status: Status | str | None = None,
        *,
        name: str | None = None,
        limit: int = 100,
        after: uuid.UUID | str | None = None,
    ) -> list[JobInfo]:
        """Jobs in the order they were queued, from just past ``after`` (keyset
        paging: pass the last id of one page to get the next); ``queue``,
        ``status`` and ``name`` (the job's name, matched exactly) keep only
        those."""
        ...

    def info(self, job_id: uuid.UUID | str) -> JobInfo | None:
        """One job's record, or None."""
        ...

    def requeue(self, job_id: uuid.UUID | str) -> bool:
        """Give a dead job a fresh set of retries, due now; False if it is not dead."""
        ...

    def requeue_dead(self, queue: str | None = None) -> int:
        """Requeue every dead job (of ``queue``); returns how many."""
        ...

    def purge_dead(self, older_than: float | None = None) -> int:
        """Forget dead jobs that died more than ``older_than`` s ago (all if None)."""
        ...

    def pause(self, queue: str, *, local_only: bool = False) -> None:
        """Hand out no job of ``queue`` until ``resume``."""
        ...

    def resume(self, queue: str, *, local_only: bool = False) -> None:
        """Hand out ``queue``'s jobs again."""
        ...

    def set_worker_count(self, queue: str, count: int) -> None:
        """Give ``queue`` ``count`` slots in every arbiter (a running service only)."""
        ...

    def cancel(self, job_id: uuid.UUID | str) -> bool:
        """Cancel a job; False if it has already ended or has no record."""
        ...
