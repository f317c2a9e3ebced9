"""The operator commands: stats, jobs, show, requeue, purge-dead, pause,
resume, scale and cancel, on the Operations that ``--url`` names, printed as
tables for people or, with ``--json``, in the HTTP API's JSON form."""

from __future__ import annotations

import argparse
import datetime as dt
import json as jsonlib
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from storage import JobInfo, Status
from supervisor import jsonview
from supervisor.http_client import HttpError, Unreachable
from supervisor.operations import LISTED, Operations
from supervisor.stats import ManagerStats
from supervisor.storage_ops import OperationError, open_operations, parse_id
from supervisor.terminal import TOKEN_VAR, URL_VAR, at_least_one, emit, fail, first_line, one_line

URL_HELP = (
    f"the storage or service: sqlite:///jobs.db, postgresql://user@host/db?schema=NAME, "
    f"http://host:port (default: ${URL_VAR})"
)
ERROR_WIDTH = 60  # a job's last error in a table: the line naming it, cut here


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)")


def _duration(text: str) -> float:
    """30s, 15m, 12h, 7d, or plain seconds."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 30s, 15m, 12h, 7d or seconds, got {text!r}"
        )
    return float(found[1]) * _UNITS[found[2]]


def _at_least_zero(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text!r}")
    return value


# -- operator commands --------------------------------------------------------------


def _operator_options() -> argparse.ArgumentParser:
    """What every operator command takes: where, with what token, in which format."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("where")
    group.add_argument("--url", metavar="URL", help=URL_HELP)
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"the bearer token of a service that asks for one (default: ${TOKEN_VAR})",
    )
    options.add_argument(
        "--json", action="store_true", help="print one JSON document (the HTTP API's format)"
    )
    return options


def add_operator_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    log_options: argparse.ArgumentParser,
) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parents = [_operator_options(), log_options]

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=description, formatter_class=formatter, parents=parents
        )

    add(
        "stats",
        "every queue's counts and pause (and a service's arbiters)",
        "Every queue's stored counts (pending, scheduled, waiting, running, dead), how long\n"
        "its oldest due job has waited, and whether it is paused; its pending jobs by\n"
        "priority when they are at several levels; from a running service also its\n"
        "workers and arbiters.",
    )
    jobs = add(
        "jobs",
        "list jobs in the order they were queued",
        "List jobs in the order they were queued, a page at a time: pass the last\n"
        "id of one page as --after to get the next.",
    )
    jobs.add_argument("--queue", metavar="QUEUE", help="only this queue's jobs")
    jobs.add_argument(
        "--status",
        choices=LISTED,
        help="only jobs in this state; scheduled: pending, not due yet, never failed",
    )
    jobs.add_argument("--name", metavar="NAME", help="only jobs of this name (a Job class's NAME)")
    jobs.add_argument(
        "--limit", type=at_least_one, default=100, help="jobs per page (default: 100)"
    )
    jobs.add_argument("--after", metavar="ID", help="start just past this job id")
    show = add(
        "show",
        "one job's record",
        "One job's record: attempts, times, last error and result.",
    )
    show.add_argument("job_id", metavar="ID", help="the job's id")
    show.add_argument(
        "--arguments",
        action="store_true",
        help="also its decoded arguments (they may hold what should not be shown)",
    )
    requeue = add(
        "requeue",
        "give a dead job, or every dead job, a fresh set of retries",
        "Make a dead job pending again, due now, with a fresh retry count; or,\n"
        "with --all-dead, every dead job (of --queue).",
    )
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("job_id", metavar="ID", nargs="?", help="the dead job's id")
    which.add_argument("--all-dead", action="store_true", help="every dead job")
    requeue.add_argument("--queue", metavar="QUEUE", help="with --all-dead: only this queue's")
    purge = add(
        "purge-dead",
        "forget dead jobs",
        "Forget dead jobs for good: all of them, or those that died more than\n--older-than ago.",
    )
    purge.add_argument(
        "--older-than",
        type=_duration,
        metavar="DURATION",
        help="only those dead longer than this: 30s, 15m, 12h, 7d or seconds",
    )
    for name, verb in (("pause", "Hand out no job of"), ("resume", "Hand out again the jobs of")):
        command = add(
            name,
            f"{verb.lower()} a queue, on every host",
            f"{verb} QUEUE on every host sharing the storage (the pause is stored,\n"
            "so it outlives a restart); --local-only: on one running service only.",
        )
        command.add_argument("queue", metavar="QUEUE")
        command.add_argument(
            "--local-only",
            action="store_true",
            help="only the service at --url http://..., not stored",
        )
    scale = add(
        "scale",
        "set a queue's workers per arbiter (a running service)",
        "Give QUEUE N worker slots in every arbiter of a running service\n"
        "(--url http://...); a storage alone has no workers.",
    )
    scale.add_argument("queue", metavar="QUEUE")
    scale.add_argument("count", metavar="N", type=_at_least_zero, help="workers per arbiter")
    cancel = add(
        "cancel",
        "cancel a job",
        "Cancel a job: a pending or scheduled one never runs; a running one is\n"
        "stopped by the host running it.",
    )
    cancel.add_argument("job_id", metavar="ID", help="the job's id")


class _RefusedError(Exception):
    """The command ran and the answer is no (no such job, not dead); one line, status 1."""


def operate(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get(URL_VAR)
    if not url:
        return fail(
            f"say which storage or service: --url URL or ${URL_VAR} "
            "(sqlite:///jobs.db, postgresql://user@host/db, http://host:port)",
            2,
        )
    command: Callable[[Operations, argparse.Namespace], str] = _COMMANDS[args.command]
    try:
        # A malformed id is refused before anything is opened or sent.
        for name in ("job_id", "after"):
            if getattr(args, name, None) is not None:
                setattr(args, name, parse_id(getattr(args, name)))
        token = args.token if args.token is not None else os.environ.get(TOKEN_VAR)
        with _opened(url, token or None) as ops:
            text = command(ops, args)
    except OperationError as exc:
        return fail(str(exc), exc.status)
    except _RefusedError as exc:
        return fail(str(exc), 1)
    except (HttpError, Unreachable) as exc:
        # The service's own words, and its status: no class name to add.
        return fail(first_line(str(exc)), _http_status(exc))
    except Exception as exc:
        # A storage that broke midway, say: what it said, in one line, with
        # its kind (the message alone may not say).
        return fail(one_line(exc), 1)
    return 0 if emit(text) else 1


def _http_status(exc: Exception) -> int:
    # 400 and 501: the request was wrong for that service, as a bad id is.
    return 2 if isinstance(exc, ValueError | NotImplementedError) else 1


@contextmanager
def _opened(url: str, token: str | None) -> Iterator[Operations]:
    ops, close = open_operations(url, auth=token)
    try:
        yield ops
    finally:
        close()


def _stats(ops: Operations, args: argparse.Namespace) -> str:
    stats = ops.stats()
    if args.json:
        return _json(jsonview.stats_json(stats))
    return _stats_table(stats)


def _stats_table(stats: ManagerStats) -> str:
    # Workers, slots and counts since start are a host's: shown only from one.
    hosted = bool(stats.arbiters)
    headers = [
        "QUEUE",
        "PENDING",
        "SCHEDULED",
        "WAITING",
        "RUNNING",
        "DEAD",
        "OLDEST DUE",
        "PAUSED",
    ]
    if hosted:
        headers += ["WORKERS", "SLOTS", "SUCCEEDED", "FAILED"]
    headers.append("BY PRIORITY")
    rows = []
    for name, q in sorted(stats.queues.items()):
        paused = "yes" if q.paused_everywhere else "local" if q.paused else "no"
        age = "-" if q.oldest_pending_age is None else _age(q.oldest_pending_age)
        row = [name, q.pending, q.scheduled, q.waiting, q.running, q.dead, age, paused]
        if hosted:
            row += [q.workers, q.slots, q.succeeded, q.failed]
        # Last, as it may be long: only for a queue with more than one level
        # (at one, the split says nothing that PENDING does not).
        levels = q.pending_by_priority
        row.append(_levels(levels, q.estimated) if len(levels) > 1 else "-")
        rows.append(row)
    text = _table(headers, rows) if rows else "no queues hold a job"
    if hosted:
        arbiters = [
            [
                a.index,
                "-" if a.pid is None else a.pid,
                a.state.value,
                a.restarts,
                a.recycles,
                "-" if a.rss is None else f"{a.rss / 2**20:.0f}Mi",
                a.jobs_done,
                _cut(a.last_error or "-", ERROR_WIDTH),
            ]
            for a in stats.arbiters
        ]
        headers = ["ARBITER", "PID", "STATE", "RESTARTS", "RECYCLES", "RSS", "JOBS", "LAST ERROR"]
        text += "\n\n" + _table(headers, arbiters)
    return text


def _levels(by_priority: Mapping[int, int], estimated: frozenset[str]) -> str:
    """``10: 3, 0: 1200``, highest priority first; ``~`` before each figure
    when they are estimates."""
    mark = "~" if "pending_by_priority" in estimated else ""
    return ", ".join(f"{level}: {mark}{count}" for level, count in by_priority.items())


def _jobs(ops: Operations, args: argparse.Namespace) -> str:
    found = ops.jobs(args.queue, args.status, name=args.name, limit=args.limit, after=args.after)
    # The id to pass as --after for the next page, None on the last: a full
    # page may be the last one, and one more job read says whether it is.
    more = len(found) == args.limit and ops.jobs(
        args.queue, args.status, name=args.name, limit=1, after=found[-1].id
    )
    after = str(found[-1].id) if more else None
    if args.json:
        return _json(jsonview.jobs_json(found, next_id=after))  # as GET /api/jobs answers
    if after is not None:
        # On stderr, so that stdout stays a table.
        print(f"next page: --after {after}", file=sys.stderr)
    if not found:
        return "no jobs" + (" past that id" if args.after else "")
    now = time.time()
    rows = [
        [
            str(job.id),
            job.queue,
            job.name,
            _status(job, now),
            job.priority,
            job.attempts,
            _age(now - job.enqueued_at.timestamp()),
            _cut(job.last_error or "-", ERROR_WIDTH),
        ]
        for job in found
    ]
    headers = ["ID", "QUEUE", "NAME", "STATUS", "PRIORITY", "ATTEMPTS", "AGE", "LAST ERROR"]
    return _table(headers, rows)


def _show(ops: Operations, args: argparse.Namespace) -> str:
    job = _found(ops, args.job_id)
    if args.json:
        return _json(jsonview.job_json(job, arguments=args.arguments))
    now = time.time()
    retries = "forever" if job.max_retries.limit is None else str(job.max_retries.limit)
    fields = [
        ("ID", str(job.id)),
        ("Name", job.name),
        ("Queue", job.queue),
        ("Priority", str(job.priority)),
        ("Status", _status(job, now)),
        ("Attempts", f"{job.attempts} (retries allowed: {retries})"),
        ("Enqueued", _when(job.enqueued_at, now)),
        ("Run at", _when(job.run_at, now)),
        ("Started", _when(job.started_at, now)),
        ("Finished", _when(job.finished_at, now)),
        ("Expires", _when(job.expires_at, now)),
        ("Runner", job.runner or "-"),
        ("Unique key", job.unique_key or "-"),
        ("Timeout", "-" if job.timeout is None else f"{job.timeout:g}s"),
        # What it was first, then the whole traceback under it.
        ("Last error", _last_error(job.last_error)),
        ("Result", repr(job.value()) if job.status is Status.SUCCEEDED else "-"),
    ]
    if args.arguments:
        fields.append(("Arguments", _arguments(job)))
    width = max(len(name) for name, _ in fields) + 2
    lines = []
    for name, value in fields:
        # A traceback's lines line up under its first.
        first, *rest = value.splitlines() or [""]
        lines.append(f"{name + ':':<{width}}{first}".rstrip())
        lines.extend(" " * width + line for line in rest)
    return "\n".join(lines)


def _last_error(error: str | None) -> str:
    if error is None:
        return "-"
    summary = _summary(error)
    return summary if summary == error.strip() else f"{summary}\n{error.strip()}"


def _arguments(job: JobInfo) -> str:
    try:
        arguments = job.arguments()
    except Exception as exc:
        return f"cannot decode: {one_line(exc)}"
    # As the API shows them (datetimes as ISO text, bytes as base64), sorted.
    return jsonlib.dumps(jsonview.plain(arguments), ensure_ascii=False, sort_keys=True)


def _requeue(ops: Operations, args: argparse.Namespace) -> str:
    if args.all_dead:
        count = ops.requeue_dead(args.queue)
        if args.json:
            return _json({"requeued": count})
        return f"requeued {_jobs_count(count, 'dead job')}" + _of_queue(args.queue)
    if args.queue is not None:
        raise OperationError("--queue goes with --all-dead: an id names one job already", 2)
    if not ops.requeue(args.job_id):
        job = _found(ops, args.job_id)
        raise _RefusedError(f"job {job.id} is not dead: it is {job.status.value}")
    if args.json:
        return _json({"requeued": True})
    return f"requeued {args.job_id}: pending, due now"


def _purge_dead(ops: Operations, args: argparse.Namespace) -> str:
    count = ops.purge_dead(args.older_than)
    if args.json:
        return _json({"purged": count})
    older = "" if args.older_than is None else f" dead longer than {_age(args.older_than)}"
    return f"purged {_jobs_count(count, 'dead job')}{older}"


def _pause(ops: Operations, args: argparse.Namespace) -> str:
    ops.pause(args.queue, local_only=args.local_only)
    return _paused(args, paused=True)


def _resume(ops: Operations, args: argparse.Namespace) -> str:
    ops.resume(args.queue, local_only=args.local_only)
    return _paused(args, paused=False)


def _paused(args: argparse.Namespace, *, paused: bool) -> str:
    if args.json:
        return _json({"queue": args.queue, "paused": paused, "local_only": args.local_only})
    where = "on that service only" if args.local_only else "on every host"
    return f"{'paused' if paused else 'resumed'} {args.queue} {where}"


def _scale(ops: Operations, args: argparse.Namespace) -> str:
    ops.set_worker_count(args.queue, args.count)
    if args.json:
        return _json({"queue": args.queue, "count": args.count})
    return f"{args.queue}: {args.count} workers per arbiter"


def _cancel(ops: Operations, args: argparse.Namespace) -> str:
    if not ops.cancel(args.job_id):
        ended = _found(ops, args.job_id)
        raise _RefusedError(f"job {ended.id} has ended already: it is {ended.status.value}")
    if args.json:
        return _json({"cancelled": True})
    now = ops.info(args.job_id)
    # A pending job is cancelled at once; a running one when its host has
    # stopped it, and until then its record still says running.
    if now is not None and now.status is Status.RUNNING:
        return f"cancelling {args.job_id}: the host running it stops it"
    return f"cancelled {args.job_id}"


_COMMANDS: dict[str, Callable[[Operations, argparse.Namespace], str]] = {
    "stats": _stats,
    "jobs": _jobs,
    "show": _show,
    "requeue": _requeue,
    "purge-dead": _purge_dead,
    "pause": _pause,
    "resume": _resume,
    "scale": _scale,
    "cancel": _cancel,
}


def _found(ops: Operations, job_id: uuid.UUID) -> JobInfo:
    job = ops.info(job_id)
    if job is None:
        raise _RefusedError(f"no job {job_id}: never queued, or its record has expired")
    return job


def _json(document: object) -> str:
    # The documents are the API's (supervisor.jsonview): plain JSON, no NaN.
    return jsonlib.dumps(document, ensure_ascii=False, allow_nan=False)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns as ``kubectl get`` aligns them: left, three spaces apart."""
    cells = [list(headers), *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _status(job: JobInfo, now: float) -> str:
    # LISTED's names: a pending job not due yet that never failed is scheduled.
    if job.status is Status.PENDING and job.retry_count == 0 and job.run_at.timestamp() > now:
        return "scheduled"
    return job.status.value


def _age(seconds: float) -> str:
    """As ``kubectl get`` shows ages: 45s, 12m, 5h, 3d."""
    seconds = max(0.0, seconds)
    for unit, size, below in (("s", 1, 120), ("m", 60, 120 * 60), ("h", 3600, 48 * 3600)):
        if seconds < below:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds // 86400)}d"


def _when(at: dt.datetime | None, now: float) -> str:
    if at is None:
        return "-"
    delta = at.timestamp() - now
    relative = f"in {_age(delta)}" if delta > 0 else f"{_age(-delta)} ago"
    return f"{at.isoformat(sep=' ', timespec='milliseconds').replace('+00:00', 'Z')} ({relative})"


def _cut(text: str, width: int) -> str:
    """An error in one line of at most ``width``: a traceback's last line,
    which names the exception, else the first."""
    summary = _summary(text)
    return summary if len(summary) <= width else summary[: width - 3] + "..."


def _summary(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1].strip() if lines[0].startswith("Traceback") else lines[0]


def _jobs_count(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _of_queue(queue: str | None) -> str:
    return "" if queue is None else f" of {queue}"
