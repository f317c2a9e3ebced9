"""What the dashboard shows, as plain text: one queue's overview cells (its
pending jobs split by priority among them, in a cell of its own), the
throughput chart's geometry, and the formats of ages, sizes and times. The
pages and the overview's live JSON both take their values from here, so a
cell reads the same rendered or updated.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

from supervisor.jsonview import plain
from supervisor.stats import ManagerStats, QueueFigures, Recent

__all__ = [
    "OVERVIEW_FIELDS",
    "Cell",
    "Chart",
    "age",
    "chart",
    "live_cells",
    "moment",
    "overview_cells",
    "pretty",
    "priorities",
    "size",
    "summary",
]

OVERVIEW_FIELDS = (
    "pending",
    "priorities",
    "scheduled",
    "waiting",
    "running",
    "dead",
    "paused",
    "slots",
    "workers",
    "oldest",
    "rate",
)
RATE_WINDOW = 60.0  # seconds the "rate" cell averages over

# The chart's drawing box, in SVG user units.
CHART_WIDTH = 300
CHART_HEIGHT = 60


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    estimate: bool = False  # shown with "≈" and data-estimate="1"


def overview_cells(figures: QueueFigures) -> dict[str, Cell]:
    """One queue's cells, by OVERVIEW_FIELDS name."""
    recent = figures.recent
    estimated = figures.estimated

    def count(field: str, value: int) -> Cell:
        return Cell(str(value), estimate=field in estimated)

    return {
        "pending": count("pending", figures.pending),
        "priorities": priorities(figures),
        "scheduled": count("scheduled", figures.scheduled),
        "waiting": count("waiting", figures.waiting),
        "running": count("running", figures.running),
        "dead": count("dead", figures.dead),
        "paused": Cell("yes" if figures.paused else "no"),
        "slots": Cell(str(figures.slots)),
        "workers": Cell(str(figures.workers)),
        "oldest": Cell(age(figures.oldest_pending_age)),
        "rate": Cell("—" if recent is None else f"{recent.rate(RATE_WINDOW):.2f}"),
    }


def priorities(figures: QueueFigures) -> Cell:
    """The pending jobs per priority level, highest first ("10: 3 · 0: 1,200"),
    when they are at more than one; "" when at one or none (it would only
    repeat the pending cell)."""
    levels = figures.pending_by_priority
    if len(levels) < 2:
        return Cell("")
    text = " · ".join(f"{level}: {count:,}" for level, count in levels.items())
    return Cell(text, estimate="pending_by_priority" in figures.estimated)


@dataclass(frozen=True, slots=True)
class Chart:
    """Jobs/s per bucket of every queue together, as an SVG polyline's
    ``points``; ``available`` is False where there is no host's tally (a
    storage opened directly), and then there is nothing to draw."""

    available: bool
    points: str
    peak: float  # jobs/s at the top of the box
    minutes: int  # how far back the line goes
    label: str  # what the chart shows, for its title and for readers


def chart(stats: ManagerStats) -> Chart:
    recents = [q.recent for q in stats.queues.values() if q.recent is not None]
    # A running host with no queue yet has a tally too: its arbiters show it.
    if not recents and not stats.arbiters:
        return Chart(False, "", 0.0, 0, "no throughput history: no running service here")
    empty = Recent.empty()
    step = recents[0].step if recents else empty.step
    width = max((len(r.counts) for r in recents), default=len(empty.counts))
    totals = [0.0] * (width - 1)
    for recent in recents:
        rates = recent.per_second()
        offset = len(totals) - len(rates)  # align the newest buckets
        for i, rate in enumerate(rates):
            totals[offset + i] += rate
    peak = max(max(totals, default=0.0), 1.0)
    last = max(len(totals) - 1, 1)
    points = " ".join(
        f"{i * CHART_WIDTH / last:.1f},{CHART_HEIGHT - rate / peak * CHART_HEIGHT:.1f}"
        for i, rate in enumerate(totals)
    )
    minutes = round(len(totals) * step / 60)
    now = totals[-1] if totals else 0.0
    label = f"jobs/s over the last {minutes} minutes (peak {max(totals, default=0.0):.2f}, "
    label += f"last {step:g} s {now:.2f})"
    return Chart(True, points, peak, minutes, label)


def age(seconds: float | None) -> str:
    """A duration for reading: "0.4 s", "12 s", "3 min 4 s", "2 h 5 min"; "—" for None."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def summary(error: str | None, limit: int = 120) -> str:
    """An error in one line, cut to ``limit`` characters: a traceback's last
    line (its exception and message), else the first; "" for None."""
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def size(count: int | None) -> str:
    """Bytes for reading, in MiB; "—" for None."""
    return "—" if count is None else f"{count / 2**20:.1f} MiB"


def moment(at: dt.datetime | None) -> str:
    """An aware time as UTC to the second; "—" for None."""
    return "—" if at is None else at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty(value: object) -> str:
    """A decoded value (a result, arguments) as indented JSON text."""
    return json.dumps(plain(value), indent=2, ensure_ascii=False, sort_keys=True)


def live_cells(cells: Mapping[str, Cell]) -> dict[str, dict[str, object]]:
    """Cells as the overview's live JSON carries them."""
    return {name: {"text": c.text, "estimate": c.estimate} for name, c in cells.items()}
