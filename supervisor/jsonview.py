"""JSON forms of what the operations answer, and their inverses: the one
place the HTTP API's format is defined.

``stats_json``/``stats_from_json`` and ``job_json``/``job_from_json`` are
exact inverses: ``stats_from_json(stats_json(s)) == s`` and
``job_from_json(job_json(j)) == j`` (and each queue's ``pending_by_priority``,
which ``==`` leaves out, comes back the same too: a list of ``[priority,
count]`` pairs in JSON, highest first), so a client of the HTTP API gets back the
values a Manager answered. ``jobs_json`` is a page of ``/api/jobs``:
``{"jobs": [...], "next": id | null}``. Ids are strings, times ISO 8601
strings with their UTC offset (to the microsecond), bytes (a job's ``args``
and ``result``) base64 strings, enums their values.

A job's decoded ``arguments`` are not in its JSON form unless asked for
(``arguments=True``): they are whatever the producer was given, often by an
untrusted party, and are not to be shown as readable text by a page or a
tool that did not ask. (This is no secrecy: ``args``, the exact bytes, is
always there, base64, so that the record can be rebuilt; a service whose
arguments hold secrets keeps its API off shared networks.) When asked for,
they are converted to
plain JSON (datetimes and dates as ISO strings, UUIDs as strings, timedeltas
as seconds, bytes as base64, mapping keys as strings, non-finite floats as
strings), which loses types: ``args`` stays the exact form, and is what
``job_from_json`` reads.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from storage import Backoff, JobInfo, MaxRetries, Status
from storage.model import ESTIMABLE, by_priority
from supervisor.stats import (
    ArbiterState,
    ArbiterStats,
    Histogram,
    InFlight,
    ManagerStats,
    QueueFigures,
    Recent,
    ScheduleInfo,
    ScheduleKind,
)

__all__ = [
    "FormatError",
    "job_from_json",
    "job_json",
    "jobs_json",
    "plain",
    "stats_from_json",
    "stats_json",
]

# A JSON object as json.loads gives it.
Json = dict[str, Any]


class FormatError(ValueError):
    """A JSON document is not in the form this module writes."""


# -- stats ----------------------------------------------------------------------------


def stats_json(value: ManagerStats) -> Json:
    return {
        "queues": {name: _figures_json(q) for name, q in value.queues.items()},
        "arbiters": [_arbiter_json(a) for a in value.arbiters],
        "schedules": [_schedule_json(e) for e in value.schedules],
    }


def stats_from_json(data: object) -> ManagerStats:
    doc = _object(data, "stats")
    queues = _object(doc.get("queues"), "stats.queues")
    arbiters = doc.get("arbiters")
    schedules = doc.get("schedules", [])  # absent from an older service's answer
    if not isinstance(arbiters, list):
        raise FormatError("stats.arbiters is not a list")
    if not isinstance(schedules, list):
        raise FormatError("stats.schedules is not a list")
    try:
        return ManagerStats(
            queues={str(name): _figures_from_json(q) for name, q in queues.items()},
            arbiters=tuple(_arbiter_from_json(a) for a in arbiters),
            schedules=tuple(_schedule_from_json(e) for e in schedules),
        )
    except (KeyError, TypeError) as e:
        raise FormatError(f"not a stats document: {type(e).__name__}: {e}") from None


def _figures_json(q: QueueFigures) -> Json:
    return {
        "pending": q.pending,
        "running": q.running,
        "dead": q.dead,
        "scheduled": q.scheduled,
        "oldest_pending_age": q.oldest_pending_age,
        "waiting": q.waiting,
        "paused": q.paused,
        "paused_everywhere": q.paused_everywhere,
        "workers": q.workers,
        "slots": q.slots,
        "ended": dict(q.ended),
        "retries": q.retries,
        "run_seconds": _histogram_json(q.run_seconds),
        "wait_seconds": _histogram_json(q.wait_seconds),
        "recent": None if q.recent is None else _recent_json(q.recent),
        "estimated": sorted(q.estimated),
        # Pairs, highest priority first: a JSON object's keys are strings.
        "pending_by_priority": [[level, count] for level, count in q.pending_by_priority.items()],
    }


def _figures_from_json(data: object) -> QueueFigures:
    q = _object(data, "queue figures")
    age = q["oldest_pending_age"]
    ended = _object(q["ended"], "ended")
    return QueueFigures(
        pending=_int(q["pending"]),
        running=_int(q["running"]),
        dead=_int(q["dead"]),
        scheduled=_int(q["scheduled"]),
        oldest_pending_age=None if age is None else float(age),
        # A document from a version before dependencies has none.
        waiting=_int(q.get("waiting", 0)),
        paused=bool(q["paused"]),
        paused_everywhere=bool(q["paused_everywhere"]),
        workers=_int(q["workers"]),
        slots=_int(q["slots"]),
        # Read-only, as the Manager's is.
        ended=MappingProxyType({str(k): _int(v) for k, v in ended.items()}),
        retries=_int(q["retries"]),
        run_seconds=_histogram_from_json(q["run_seconds"]),
        wait_seconds=_histogram_from_json(q["wait_seconds"]),
        recent=_recent_from_json(q.get("recent")),
        estimated=_estimated(q.get("estimated", [])),  # absent from an older service's
        pending_by_priority=_levels(q.get("pending_by_priority", [])),  # so is this
    )


def _levels(data: object) -> Mapping[int, int]:
    if not isinstance(data, list) or not all(
        isinstance(pair, list) and len(pair) == 2 for pair in data
    ):
        raise FormatError(f"pending_by_priority is not a list of [priority, count]: {data!r}")
    return by_priority((_int(level), _int(count)) for level, count in data)


def _estimated(data: object) -> frozenset[str]:
    if not isinstance(data, list) or not all(name in ESTIMABLE for name in data):
        raise FormatError(f"estimated is not a list of {', '.join(sorted(ESTIMABLE))}: {data!r}")
    return frozenset(data)


def _recent_json(r: Recent) -> Json:
    return {"step": r.step, "counts": list(r.counts), "elapsed": r.elapsed}


def _recent_from_json(data: object) -> Recent | None:
    if data is None:
        return None
    r = _object(data, "recent endings")
    counts = r["counts"]
    if not isinstance(counts, list) or not counts:
        raise FormatError("recent.counts is not a list of counts")
    return Recent(float(r["step"]), tuple(_int(c) for c in counts), float(r["elapsed"]))


def _histogram_json(h: Histogram) -> Json:
    return {"bounds": list(h.bounds), "counts": list(h.counts), "total": h.total}


def _histogram_from_json(data: object) -> Histogram:
    h = _object(data, "histogram")
    bounds = tuple(float(b) for b in h["bounds"])
    counts = tuple(_int(c) for c in h["counts"])
    if len(counts) != len(bounds) + 1:
        raise FormatError(f"a histogram of {len(bounds)} bounds has {len(counts)} counts")
    return Histogram(bounds, counts, float(h["total"]))


def _arbiter_json(a: ArbiterStats) -> Json:
    return {
        "index": a.index,
        "pid": a.pid,
        "alive": a.alive,
        "restarts": a.restarts,
        "recycles": a.recycles,
        "rss": a.rss,
        "jobs_done": a.jobs_done,
        "state": a.state.value,
        "last_exit": a.last_exit,
        "last_error": a.last_error,
        "loop_blocks": a.loop_blocks,
        "slots": dict(a.slots),
        "cpu": a.cpu,
        "in_flight": [
            {"id": str(j.id), "name": j.name, "queue": j.queue, "seconds": j.seconds}
            for j in a.in_flight
        ],
    }


def _arbiter_from_json(data: object) -> ArbiterStats:
    a = _object(data, "arbiter")
    try:
        state = ArbiterState(a["state"])
    except ValueError:
        raise FormatError(f"unknown arbiter state {a['state']!r}") from None
    return ArbiterStats(
        index=_int(a["index"]),
        pid=_optional_int(a["pid"]),
        alive=bool(a["alive"]),
        restarts=_int(a["restarts"]),
        recycles=_int(a["recycles"]),
        rss=_optional_int(a["rss"]),
        jobs_done=_int(a["jobs_done"]),
        state=state,
        last_exit=_optional_str(a["last_exit"]),
        last_error=_optional_str(a["last_error"]),
        loop_blocks=_int(a["loop_blocks"]),
        slots=MappingProxyType(
            {str(k): _int(v) for k, v in _object(a["slots"], "arbiter slots").items()}
        ),
        cpu=None if a.get("cpu") is None else float(a["cpu"]),
        in_flight=tuple(_in_flight_from_json(j) for j in a.get("in_flight", [])),
    )


def _in_flight_from_json(data: object) -> InFlight:
    j = _object(data, "job in flight")
    try:
        job_id = uuid.UUID(_str(j["id"]))
    except ValueError:
        raise FormatError(f"not a job id: {j['id']!r}") from None
    return InFlight(
        id=job_id, name=_str(j["name"]), queue=_str(j["queue"]), seconds=float(j["seconds"])
    )


def _schedule_json(e: ScheduleInfo) -> Json:
    return {
        "name": e.name,
        "job": e.job,
        "queue": e.queue,
        "kind": e.kind.value,
        "spec": e.spec,
        "next_run": _optional_time(e.next_run),
        "tz": e.tz,
        "shared": e.shared,
    }


def _schedule_from_json(data: object) -> ScheduleInfo:
    e = _object(data, "schedule")
    try:
        kind = ScheduleKind(e["kind"])
    except ValueError:
        raise FormatError(f"unknown schedule kind {e['kind']!r}") from None
    return ScheduleInfo(
        name=_str(e["name"]),
        job=_str(e["job"]),
        queue=_str(e["queue"]),
        kind=kind,
        spec=_str(e["spec"]),
        next_run=_optional_from_time(e["next_run"]),
        tz=_str(e["tz"]),
        shared=bool(e["shared"]),
    )


# -- jobs -----------------------------------------------------------------------------


def jobs_json(
    found: Sequence[JobInfo], *, arguments: bool = False, next_id: str | None = None
) -> Json:
    """A page of jobs; ``next_id`` is the ``after`` that asks for the next
    page (None: this is the last)."""
    return {"jobs": [job_json(j, arguments=arguments) for j in found], "next": next_id}


def job_json(value: JobInfo, *, arguments: bool = False) -> Json:
    """A job as JSON; with ``arguments``, also its decoded arguments, made
    plain (see the module docstring), or ``arguments_error`` saying why they
    could not be decoded."""
    job = value
    doc: Json = {
        "id": str(job.id),
        "name": job.name,
        "queue": job.queue,
        "priority": job.priority,
        "status": job.status.value,
        "args": _b64(job.args),
        "retry_count": job.retry_count,
        "attempts": job.attempts,  # derived; for readers, ignored when decoding
        "max_retries": job.max_retries.limit,
        "backoff": {"kind": job.backoff.kind, "value": job.backoff.value, "max": job.backoff.max},
        "run_at": _time(job.run_at),
        "heartbeat_interval": job.heartbeat_interval,
        "timeout": job.timeout,
        "last_error": job.last_error,
        "runner": job.runner,
        "enqueued_at": _time(job.enqueued_at),
        "unique_key": job.unique_key,
        "result": None if job.result is None else _b64(job.result),
        "started_at": _optional_time(job.started_at),
        "finished_at": _optional_time(job.finished_at),
        "expires_at": _optional_time(job.expires_at),
        "parents": [str(parent) for parent in job.parents],
    }
    if arguments:
        try:
            doc["arguments"] = plain(job.arguments())
        except ValueError as e:  # bytes stored by hand: the record is still shown
            doc["arguments_error"] = str(e)
    return doc


def job_from_json(data: object) -> JobInfo:
    j = _object(data, "job")
    try:
        backoff = _object(j["backoff"], "backoff")
        result = j["result"]
        return JobInfo(
            id=uuid.UUID(j["id"]),
            name=_str(j["name"]),
            queue=_str(j["queue"]),
            args=_unb64(j["args"]),
            retry_count=_int(j["retry_count"]),
            max_retries=MaxRetries(_optional_int(j["max_retries"])),
            backoff=Backoff(backoff["kind"], float(backoff["value"]), float(backoff["max"])),
            run_at=_from_time(j["run_at"]),
            heartbeat_interval=float(j["heartbeat_interval"]),
            timeout=None if j["timeout"] is None else float(j["timeout"]),
            status=Status(j["status"]),
            last_error=_optional_str(j["last_error"]),
            runner=_optional_str(j["runner"]),
            enqueued_at=_from_time(j["enqueued_at"]),
            unique_key=_optional_str(j["unique_key"]),
            result=None if result is None else _unb64(result),
            started_at=_optional_from_time(j["started_at"]),
            finished_at=_optional_from_time(j["finished_at"]),
            expires_at=_optional_from_time(j["expires_at"]),
            # A server from before priorities sends none: they all had 0.
            priority=_int(j.get("priority", 0)),
            # A document from a version before dependencies has none.
            parents=tuple(uuid.UUID(_str(p)) for p in j.get("parents", ())),
        )
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"not a job document: {type(e).__name__}: {e}") from None


def plain(value: object) -> Any:
    """``value`` (decoded msgpack) as something ``json.dumps(allow_nan=False)``
    takes: for reading, not for decoding back."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.date):  # a datetime is a date too
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return _b64(bytes(value))
    if isinstance(value, Mapping):
        return {_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    # Nothing else comes out of the codec but an unknown msgpack ExtType.
    return repr(value)


def _key(key: object) -> str:
    shown = plain(key)
    return shown if isinstance(shown, str) else repr(shown)


# -- atoms ----------------------------------------------------------------------------


def _object(data: object, what: str) -> Json:
    if not isinstance(data, dict):
        raise FormatError(f"{what} is not a JSON object")
    return data


def _int(value: object) -> int:
    # bool is an int, and a float may be 1.5: neither is a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"expected an integer, got {value!r}")
    return value


def _optional_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise FormatError(f"expected a string, got {value!r}")


def _optional_str(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise FormatError(f"expected a string or null, got {value!r}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise FormatError(f"expected base64 text, got {text!r}")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise FormatError("bad base64") from None


def _time(at: dt.datetime) -> str:
    return at.isoformat()


def _optional_time(at: dt.datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _from_time(text: object) -> dt.datetime:
    if not isinstance(text, str):
        raise FormatError(f"expected an ISO 8601 time, got {text!r}")
    at = dt.datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise FormatError(f"a time without a UTC offset: {text!r}")
    # The records' times are in UTC; one given with another offset is the
    # same instant, shown as they are.
    return at.astimezone(dt.UTC)


def _optional_from_time(text: object) -> dt.datetime | None:
    return None if text is None else _from_time(text)
