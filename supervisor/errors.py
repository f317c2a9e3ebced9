"""The exceptions a user of a Manager may catch; each message names the fix."""

from __future__ import annotations

import re
import uuid

from storage.events import last_line


class ManagerStopped(RuntimeError):  # noqa: N818 - the name says what happened
    """The Manager was stopped; every later call raises this."""

    def __init__(self, call: str) -> None:
        super().__init__(f"{call}() on a stopped Manager: start a new one with config.start()")


class CrashLoopError(RuntimeError):
    """Every arbiter keeps dying before it could run a job.

    ``errors`` holds each arbiter's last error (None where it died without
    saying why, killed by a signal say).
    """

    def __init__(self, errors: tuple[str | None, ...]) -> None:
        self.errors = errors
        known = sorted({line for e in errors if (line := last_line(e))})
        why = "; ".join(known) if known else "no error was reported (killed by a signal?)"
        super().__init__(
            f"every arbiter ({len(errors)}) is in a crash loop, dying at start-up: {why}"
        )


class JobNotFound(LookupError):  # noqa: N818 - the name says what happened
    """No record of the job: it was never queued, or its record expired (its
    RESULT_TTL passed, or it was 0)."""

    def __init__(self, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        super().__init__(
            f"no job {job_id}: never queued, or its record expired "
            "(kept for RESULT_TTL seconds after it ends; 0 keeps none)"
        )


class JobFailed(Exception):  # noqa: N818 - the name says what happened
    """The job is dead: it failed every attempt it was allowed.

    ``error`` is its last error as stored (a traceback, or what ended its
    arbiter); ``error_type`` and ``message`` are read from its last line
    (``error_type`` None when no exception was raised: a killed arbiter).
    """

    def __init__(self, job_id: uuid.UUID, error: str | None) -> None:
        self.job_id = job_id
        self.error = error or ""
        self.traceback = self.error if self.error.startswith("Traceback") else None
        last = last_line(self.error) or ""
        found = _RAISED.match(last) if self.traceback is not None else None
        self.error_type: str | None = found.group(1) if found else None
        self.message = (found.group(2) or "") if found else last
        super().__init__(f"job {job_id} is dead: {last or 'no error recorded'}")


class JobCancelled(Exception):  # noqa: N818 - the name says what happened
    """The job was cancelled (before it ran, or while it ran); ``reason`` says by what."""

    def __init__(self, job_id: uuid.UUID, reason: str | None) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"job {job_id} was cancelled: {reason or 'no reason given'}")


# The last line of a traceback: "module.Type: message", or "Type" alone.
_RAISED = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$", re.DOTALL)
