"""What becomes of a held job when it ends: the one place that decides.

Every backend settles a job the same way, and only stores what ``settle``
returns: it never counts attempts, reads a retry limit or computes a backoff
itself. The rules:

* success: the job is finished: its record (status succeeded, the value)
  is kept for its policy's ``result_ttl``, or removed when that is 0;
* cancelled (a running job stopped by a cancel): never retried; its record
  (status cancelled, the reason as its last error) kept like a success's;
* unexecuted (it never started: a shutdown, a dead runner's buffer): pending
  again at its old run_at, so it keeps its place, with its count and error;
* unregistered (no runner knows its name): pending again after the
  storage's delay for those, the error recorded, no attempt counted;
* failure: an attempt counted and the error recorded; pending again after
  ``Backoff.delay(attempts)`` while ``MaxRetries`` allows it, else dead.

Times are relative (``delay_us``), so that a database backend can add them
to its own clock in SQL.
"""

from __future__ import annotations

from typing import NamedTuple

from storage.model import Disposition, JobResult, Outcome
from storage.policy import Backoff, MaxRetries

_US = 1_000_000


class Settlement(NamedTuple):
    """What to store for a held job that ended."""

    # FINISHED or CANCELLED: ended, kept for result_ttl; REQUEUED or RETRYING:
    # pending; DEAD: kept until requeued or purged
    disposition: Disposition
    retry_count: int  # to store
    delay_us: int | None  # pending: due this long from now; None: at the run_at it has
    error: str | None  # the last error to store; None: the one it has


def settle(
    result: JobResult,
    *,
    retry_count: int,
    max_retries: MaxRetries,
    backoff: Backoff,
    unregistered_delay_us: int,
) -> Settlement:
    """Decide what becomes of a held job that has failed ``retry_count``
    times before this attempt ended with ``result``."""
    outcome = result.outcome
    if outcome is Outcome.SUCCESS:
        return Settlement(Disposition.FINISHED, retry_count, None, None)
    if outcome is Outcome.CANCELLED:
        return Settlement(Disposition.CANCELLED, retry_count, None, result.error)
    if outcome is Outcome.UNEXECUTED:
        return Settlement(Disposition.REQUEUED, retry_count, None, None)
    if outcome is Outcome.UNREGISTERED:
        return Settlement(Disposition.REQUEUED, retry_count, unregistered_delay_us, result.error)
    failures = retry_count + 1
    if max_retries.allows(failures):
        delay = round(backoff.delay(failures) * _US)
        return Settlement(Disposition.RETRYING, failures, delay, result.error)
    return Settlement(Disposition.DEAD, failures, None, result.error)
