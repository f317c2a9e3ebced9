"""Printing the peers run: one summary table, then what each trial ran."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from benchmarks.peers.harness import Trial

BASELINE = "jobarbiter"
DETAIL_LINES = 8


def rate_cell(trial: Trial | None) -> str:
    if trial is None:
        return ""
    if trial.status == "ok" and trial.jobs_per_s is not None:
        return f"{trial.jobs_per_s:,.0f}"
    if trial.status == "timeout" and trial.jobs_per_s is not None and trial.done:
        return f"{trial.jobs_per_s:,.0f} (timeout)"
    return trial.status


def ratio_cell(trial: Trial | None, baseline: Trial | None) -> str:
    """The trial's jobs/s over jobarbiter's; a timed-out trial's rate counts what it did."""
    measured = ("ok", "timeout")
    if trial is None or baseline is None or baseline.status != "ok":
        return ""
    if trial.status not in measured or not trial.jobs_per_s or not baseline.jobs_per_s:
        return ""
    return f"{trial.jobs_per_s / baseline.jobs_per_s:.2f}x"


def crash_cell(trial: Trial | None) -> str:
    if trial is None:
        return ""
    if trial.crash is None:
        return trial.status
    c = trial.crash
    if not c.ran_again:
        return f"no (waited {c.waited_s:.0f} s)"
    finished = "" if c.completed else ", did not finish"
    return f"yes, after {c.after_s:.1f} s{finished}"


def grid(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([line(rows[0]), line(["-" * w for w in widths]), *map(line, rows[1:])])


def summary(
    trials: Sequence[Trial],
    libraries: Sequence[str],
    workloads: Sequence[str],
    sleep_ms: float,
    labels: Mapping[str, str],
) -> str:
    """Library by workload: jobs/s and the ratio to jobarbiter; whether the killed job ran again."""
    found = {(t.library, t.workload): t for t in trials}
    header = ["library"]
    right = [False]
    for workload in workloads:
        if workload == "crash":
            header.append("killed mid-job: ran again?")
            right.append(False)
        else:
            label = "no-op" if workload == "noop" else f"sleep {sleep_ms:g} ms"
            header += [f"{label} jobs/s", "vs jobarbiter"]
            right += [True, True]
    rows = [header]
    for library in libraries:
        row = [labels.get(library, library)]
        for workload in workloads:
            trial = found.get((library, workload))
            if workload == "crash":
                row.append(crash_cell(trial))
            else:
                baseline = found.get((BASELINE, workload))
                row += [rate_cell(trial), ratio_cell(trial, baseline)]
        rows.append(row)
    return grid(rows, right)


def details(trials: Sequence[Trial], labels: Mapping[str, str]) -> str:
    """Per trial: how its workers ran, what it cost, and what went wrong if anything did."""
    lines = []
    for t in trials:
        head = f"{labels.get(t.library, t.library)} / {t.workload}: {t.status}"
        if t.seconds is not None and t.enqueue_seconds is not None:
            head += (
                f"; {t.done:,} jobs in {t.seconds:.2f} s, queued in {t.enqueue_seconds:.2f} s"
                f" ({t.enqueue_per_s:,.0f}/s)"
            )
        if t.worker_cpu_s is not None and t.harness_cpu_s is not None:
            head += f"; cpu s: workers {t.worker_cpu_s:.2f}, harness {t.harness_cpu_s:.2f}"
        if t.crash is not None:
            c = t.crash
            again = f"ran again after {c.after_s:.1f} s" if c.ran_again else "did not run again"
            head += f"; killed pid {c.killed_pid} mid-job, {again}"
            if c.ran_again:
                head += ", finished" if c.completed else ", did not finish"
        if t.restarts:
            head += f"; worker commands restarted {t.restarts}x"
        lines.append(head)
        lines += [f"    $ {command}" for command in t.setup]
        detail = t.detail.splitlines()
        lines += [f"    ! {line}" for line in detail[:DETAIL_LINES]]
        if len(detail) > DETAIL_LINES:
            lines.append(f"    ! ... {len(detail) - DETAIL_LINES} more lines in the JSON")
    return "\n".join(lines)
