"""Queue counts that stay cheap on big tables: exact up to a cap, estimated above.

A database backend reads each count of a queue along a partial index but
stops after ``cap + 1`` rows (``COUNT_CAP`` unless the backend is told
otherwise), so a count costs at most that many index entries however long
the queue. A count read whole is exact. One that reached ``cap + 1`` is the
backend's estimate instead (PostgreSQL: the planner's), never less than
``cap + 1``, and ``QueueStats.estimated`` names it, unless the backend
answers it exactly after all. (SQLite and memory storage need none of this:
they keep every count, exact, in memory.)

``scheduled`` (pending, not due, never failed) is settled so that
``pending == scheduled`` exactly when none of the queue's pending jobs is
due or waiting out a backoff, whatever is estimated: the runtime's idle
check (``join``) reads that. Its exact complement, the due jobs plus the
retries waiting out a backoff, is cheap to count when it is small (each has
a range of its own), so a big scheduled count is the pending count less it.

``pending_by_priority`` (``levels``): a queue whose pending jobs are all at
one level gets ``{level: pending}``, nothing more read (the default case:
everything at priority 0). With several, each level is counted along its
range of the pending index up to ``cap + 1`` as well; a level that reaches
it is the pending count less the others when it alone does and pending is
exact, else the backend's estimate for that level, flagged
"pending_by_priority" in ``estimated``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from storage.model import NO_LEVELS, QueueStats, by_priority

COUNT_CAP = 10_000

# A backend's answer for a count above the cap: (figure, whether it is exact).
Estimate = Callable[[str], tuple[int, bool]]
# The same for one priority level's pending jobs.
LevelEstimate = Callable[[int], tuple[int, bool]]


@dataclass(frozen=True, slots=True)
class Read:
    """What a backend read of one queue's jobs: each count exact, or
    ``cap + 1`` where it stopped."""

    pending: int
    running: int
    dead: int
    scheduled: int
    # Read only when ``scheduled`` reached the cap: the rule needs them then alone.
    due: int  # pending and due now
    retrying: int  # pending, not due, failed before: waiting out a backoff
    oldest_due_at: float | None = None
    waiting: int = 0  # waiting for their parents (Status.WAITING)
    # The priority levels of the pending jobs, highest first, and (read only
    # when there are several) each level's count, in the same order.
    levels: Sequence[int] = ()
    by_level: Sequence[int] = ()


def check_cap(cap: object) -> int:
    """``cap`` if it can cap a count: an int of at least 1."""
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError(f"count_cap must be an int of at least 1; got {cap!r}")
    return cap


def queue_stats(
    read: Read, *, cap: int, estimate: Estimate, estimate_level: LevelEstimate | None = None
) -> QueueStats:
    """The queue's QueueStats from what was read, asking ``estimate(field)``
    for each count (of ``storage.model.ESTIMABLE``) that reached the cap,
    and ``estimate_level(priority)`` for each level's (see ``by_level``;
    None: ``read`` holds no level past the cap to ask about)."""
    estimated: set[str] = set()

    def settled(field: str, count: int) -> int:
        if count <= cap:
            return count
        figure, exact = estimate(field)
        if exact:
            return figure
        estimated.add(field)
        return max(figure, cap + 1)

    pending = settled("pending", read.pending)
    scheduled = read.scheduled
    if scheduled > cap:
        unscheduled = read.due + read.retrying
        if read.due <= cap and read.retrying <= cap:
            # Exact whenever pending is: the rest are few, and counted.
            if "pending" in estimated:
                estimated.add("scheduled")
                scheduled = max(pending - unscheduled, cap + 1)
                pending = scheduled + unscheduled
            else:
                scheduled = pending - unscheduled
        else:
            figure, exact = estimate("scheduled")
            scheduled = figure
            if not exact:
                estimated.add("scheduled")
                # More than the cap are scheduled, and more than it are not.
                scheduled = max(figure, cap + 1)
                if "pending" in estimated:
                    pending = max(pending, scheduled + cap + 1)
                else:
                    scheduled = min(scheduled, pending - cap - 1)
    levels, level_estimated = by_level(
        read.levels,
        read.by_level,
        pending=pending,
        pending_exact="pending" not in estimated,
        cap=cap,
        estimate=_no_level_estimate if estimate_level is None else estimate_level,
    )
    if level_estimated:
        estimated.add("pending_by_priority")
    # Each settled before ``estimated`` is frozen: settling one may add to it.
    running = settled("running", read.running)
    dead = settled("dead", read.dead)
    waiting = settled("waiting", read.waiting)
    return QueueStats(
        pending=pending,
        running=running,
        dead=dead,
        scheduled=scheduled,
        oldest_due_at=read.oldest_due_at,
        estimated=frozenset(estimated),
        waiting=waiting,
        pending_by_priority=levels,
    )


def _no_level_estimate(priority: int) -> tuple[int, bool]:
    raise ValueError(f"priority level {priority} is past the cap, and no estimate_level was given")


def by_level(
    levels: Sequence[int],
    counts: Sequence[int],
    *,
    pending: int,
    pending_exact: bool,
    cap: int,
    estimate: LevelEstimate,
) -> tuple[Mapping[int, int], bool]:
    """``pending_by_priority`` of a queue with ``pending`` jobs at ``levels``
    (highest first), and whether a figure of it is an estimate, under the
    rule above: ``counts`` holds each level's, read up to ``cap + 1``, when
    there are several levels (unread, and ignored, when there is one)."""
    if not levels:
        return NO_LEVELS, False
    if len(levels) == 1:
        return by_priority([(levels[0], pending)]), not pending_exact
    if len(counts) != len(levels):
        raise ValueError(f"{len(levels)} priority levels but {len(counts)} counts")
    figures = dict(zip(levels, counts, strict=True))
    over = [level for level, count in figures.items() if count > cap]
    estimated = False
    if len(over) == 1 and pending_exact:
        (level,) = over
        figures[level] = pending - sum(n for p, n in figures.items() if p != level)
    else:
        for level in over:
            figure, exact = estimate(level)
            if not exact:
                estimated = True
                figure = max(figure, cap + 1)
            figures[level] = figure
    return by_priority(figures.items()), estimated
