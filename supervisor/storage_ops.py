"""Operations on a storage opened directly, and opening one by URL.

``StorageOperations(storage)`` answers the ``Operations`` protocol on an
opened storage, with no actors and no workers: the CLI is one thread, and
calls it from that thread only, as a Storage requires. Every write is
committed before the call returns. What only a running host can do raises
``NeedsServiceError`` (a NotImplementedError) saying to use the service's
URL: ``set_worker_count`` (a storage has no workers) and ``pause``/
``resume`` with ``local_only=True`` (no host here to hold a pause of its
own). A malformed id, status, queue or limit raises ``BadRequestError`` (a
ValueError), as a Manager raises ValueError. Its ``stats`` has no arbiters
and no counts since start; a queue's pause is the stored one, which every
host holds.

``open_operations(url)`` gives the Operations behind an operator's URL, and
the function that closes them:

* ``sqlite:///jobs.db`` (relative to the current directory) or
  ``sqlite:////var/lib/app/jobs.db`` (absolute): an existing jobarbiter
  file. A missing file, or one that holds no jobarbiter tables, is an error
  naming the path; nothing is ever created. One host owns a file at a time,
  so a file in use by a running host cannot be opened: use its service.
  Opening is what a host's start does, migration and recovery included:
  jobs that a crashed host left running count as failed attempts then.
* ``postgresql://...`` or ``postgres://...``: a libpq URI; the query
  parameter ``schema`` picks the schema (default ``jobarbiter``), which must
  exist already. An unreachable server is named (host:port) in the error.
* ``http://...`` or ``https://...``: a running service's JSON API
  (``supervisor.http_client.HttpOperations``), with ``auth`` its token.

Every error it raises for an operator's mistake or an unreachable storage is
an ``OperationError`` with a one-line message and an exit ``status`` (2: the
request itself is wrong; 1: it could not be done).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from actors.ops import Figures
from storage import JobInfo, SqliteStorage, Status, Storage
from supervisor.handle import check_job_name, check_queue_name
from supervisor.handle import job_id as parse_job_id
from supervisor.http_client import HttpOperations
from supervisor.operations import Operations, list_filter
from supervisor.stats import ManagerStats, queue_figures

if TYPE_CHECKING:
    from storage.postgres import PostgresStorage

__all__ = [
    "URL_FORMS",
    "BadRequestError",
    "NeedsServiceError",
    "OperationError",
    "StorageOperations",
    "open_operations",
    "parse_id",
]

URL_FORMS = (
    "sqlite:///relative/path.db",
    "sqlite:////absolute/path.db",
    "postgresql://user@host:5432/db[?schema=NAME]",
    "http://host:port",
    "https://host:port",
)

NEEDS_SERVICE = "needs a running service (--url http://HOST:PORT)"
PAGE = 500  # dead jobs requeued per page (and per commit) by requeue_dead
SQLITE_LOCK_WAIT = 1.0  # s: a host holds its file's lock until it stops; waiting is no use
PG_CONNECT_TIMEOUT = 10  # s, unless the URL says: a black-holed address must not hang the CLI
PG_DEFAULT_SCHEMA = "jobarbiter"  # PostgresStorage's default


class OperationError(Exception):
    """A request that cannot be done; the message says why, in one line, and
    ``status`` is the CLI's exit status for it."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class BadRequestError(OperationError, ValueError):
    """The request itself is wrong (a malformed id, an unknown status): a
    ValueError, which the HTTP API answers with 400 like any other."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


class NeedsServiceError(OperationError, NotImplementedError):
    """Only a running host can do it: a NotImplementedError, which the HTTP
    API answers with 501 when it serves a storage opened directly."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


def check_queue(queue: object, what: str) -> str:
    """A queue name, or a BadRequestError saying what was given."""
    return _bad_request(check_queue_name, queue, what)


def check_name(name: object, what: str) -> str:
    """A job name, or a BadRequestError saying what was given."""
    return _bad_request(check_job_name, name, what)


def _bad_request(check: Callable[[object, str], str], value: object, what: str) -> str:
    try:
        return check(value, what)
    except (TypeError, ValueError) as exc:
        raise BadRequestError(str(exc)) from None


def parse_id(job_id: uuid.UUID | str) -> uuid.UUID:
    """The job id, or a BadRequestError naming what was given."""
    try:
        return parse_job_id(job_id)
    except (TypeError, ValueError) as exc:
        raise BadRequestError(str(exc)) from None


class StorageOperations:
    """Operations on an opened storage, from the caller's thread alone.

    It neither opens nor closes the storage (``open_operations`` does both).
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def __repr__(self) -> str:
        return f"StorageOperations({self._storage!r})"

    def stats(self) -> ManagerStats:
        """Every queue holding a job or paused: its stored counts and pause."""
        figures = Figures(
            stored=self._storage.stats(),
            # A stored pause is held by every host, and so by this view.
            paused_stored=self._storage.paused(),
            paused_here=frozenset(),
            tally={},  # counts since start are a host's: there is none here
            now=self._storage.now(),
        )
        return ManagerStats(queues=queue_figures(figures, (), {}), arbiters=())

    def jobs(
        self,
        queue: str | None = None,
        status: Status | str | None = None,
        *,
        name: str | None = None,
        limit: int = 100,
        after: uuid.UUID | str | None = None,
    ) -> list[JobInfo]:
        """Jobs in the order they were queued, from just past ``after``."""
        try:
            wanted, scheduled = list_filter(status)
        except ValueError as exc:
            raise BadRequestError(str(exc)) from None
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise BadRequestError(f"limit must be a whole number, at least 1; got {limit!r}")
        if queue is not None:
            check_queue(queue, "jobs() queue")
        if name is not None:
            check_name(name, "jobs() name")
        start = None if after is None else parse_id(after)
        return self._storage.list(
            queue=queue, status=wanted, scheduled=scheduled, name=name, after=start, limit=limit
        )

    def info(self, job_id: uuid.UUID | str) -> JobInfo | None:
        return self._storage.info(parse_id(job_id))

    def requeue(self, job_id: uuid.UUID | str) -> bool:
        """Give a dead job a fresh set of retries, due now; False if it is not dead."""
        done = self._storage.requeue(parse_id(job_id))
        self._storage.commit()
        return done

    def requeue_dead(self, queue: str | None = None) -> int:
        """Requeue every dead job (of ``queue``), a page per transaction."""
        if queue is not None:
            check_queue(queue, "requeue_dead() queue")
        storage, requeued, after = self._storage, 0, None
        while True:
            page = storage.list(queue=queue, status=Status.DEAD, after=after, limit=PAGE)
            requeued += sum(storage.requeue(job.id) for job in page)
            # Per page: a long backlog is not one transaction holding its rows.
            storage.commit()
            if len(page) < PAGE:
                return requeued
            # Keyset: a requeued job has left the dead ones, so an offset would skip some.
            after = page[-1].id

    def purge_dead(self, older_than: float | None = None) -> int:
        purged = self._storage.purge_dead(older_than)
        self._storage.commit()
        return purged

    def pause(self, queue: str, *, local_only: bool = False) -> None:
        """Store a pause of ``queue``: no host hands out its jobs until ``resume``."""
        self._set_paused(queue, paused=True, local_only=local_only)

    def resume(self, queue: str, *, local_only: bool = False) -> None:
        """Clear the stored pause of ``queue``."""
        self._set_paused(queue, paused=False, local_only=local_only)

    def _set_paused(self, queue: str, *, paused: bool, local_only: bool) -> None:
        check_queue(queue, f"{'pause' if paused else 'resume'}() queue")
        if local_only:
            what = "pausing" if paused else "resuming"
            raise NeedsServiceError(
                f"{what} one host only (--local-only) {NEEDS_SERVICE}: "
                "a storage has no host of its own"
            )
        self._storage.set_paused(queue, paused)
        self._storage.commit()

    def set_worker_count(self, queue: str, count: int) -> None:
        raise NeedsServiceError(f"scaling {queue} {NEEDS_SERVICE}: a storage has no workers")

    def cancel(self, job_id: uuid.UUID | str) -> bool:
        """Cancel a job; False if it has already ended or has no record.

        A pending, scheduled or waiting job is cancelled at once and never
        runs (its waiting children with it). A running one can only be
        stopped by the host whose arbiter runs it: on PostgreSQL the storage
        tells the other hosts, and that host stops it; on SQLite no host runs
        while this file is open here.
        """
        status = self._storage.cancel(parse_id(job_id), "cancelled by an operator")
        self._storage.commit()
        return status in (Status.PENDING, Status.WAITING, Status.RUNNING)


def open_operations(url: str, *, auth: str | None = None) -> tuple[Operations, Callable[[], None]]:
    """The Operations behind ``url``, and the function that closes them.

    Raises OperationError (one line, with an exit status) for a URL of no
    known form, a missing SQLite file, a PostgreSQL server that does not
    answer or a schema that is not there.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _http(url, auth)
    if scheme == "sqlite":
        storage: Storage = _sqlite(url)
    elif scheme in ("postgresql", "postgres"):
        storage = _postgres(url)
    else:
        raise OperationError(
            f"unknown URL {_safe(url)!r}: expected one of {', '.join(URL_FORMS)}", 2
        )
    return StorageOperations(storage), storage.close


def _http(url: str, auth: str | None) -> tuple[Operations, Callable[[], None]]:
    try:
        ops = HttpOperations(url, auth=auth)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None
    return ops, _nothing  # one request per call: nothing stays open


def _nothing() -> None:
    pass


def _sqlite(url: str) -> SqliteStorage:
    # As SQLAlchemy spells it: three slashes, then the path (a fourth for an
    # absolute one). sqlite://jobs.db would make "jobs.db" a host name.
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix) or len(url) == len(prefix):
        raise OperationError(
            f"a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db, "
            f"got {url!r}",
            2,
        )
    path = url[len(prefix) :]
    if not os.path.isfile(path):
        what = "a directory" if os.path.isdir(path) else "no such file"
        raise OperationError(f"cannot open {path}: {what} (the CLI never creates a database)")
    _check_jobarbiter_file(path)
    try:
        return SqliteStorage(path, timeout=SQLITE_LOCK_WAIT).open()
    except sqlite3.Error as exc:
        message = str(exc)
        if "another host" in message:
            message += "; while its host runs, use the host's service: --url http://HOST:PORT"
        raise OperationError(message) from None


def _check_jobarbiter_file(path: str) -> None:
    """Refuse a file that is not a jobarbiter database: opening it would add
    our tables to someone else's database (or to an empty file)."""
    uri = "file:" + _quote_path(path) + "?mode=ro"
    try:
        # No wait: locked now means a host holds it, and SqliteStorage.open
        # (which waits a little for a host that is stopping) says so.
        with closing(sqlite3.connect(uri, uri=True, timeout=0)) as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return  # a host has it open: SqliteStorage.open says so, better
        raise OperationError(f"cannot open {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise OperationError(f"cannot open {path}: {exc}") from None
    if found is None:
        raise OperationError(f"cannot open {path}: not a jobarbiter database (no jobs tables)")


def _quote_path(path: str) -> str:
    # In a file: URI, '?' and '#' would end the path, and '%' starts an escape.
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def _postgres(url: str) -> PostgresStorage:
    try:
        import psycopg  # noqa: PLC0415 - the postgres extra
        from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: PLC0415

        from storage.postgres import PostgresStorage  # noqa: PLC0415
    except ImportError as exc:
        raise OperationError(
            f"a postgresql:// URL needs the postgres extra (pip install 'jobarbiter[postgres]'): "
            f"{exc}"
        ) from None
    dsn, schema = _split_schema(url)
    try:
        params: dict[str, Any] = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise OperationError(f"not a PostgreSQL URL: {_first_line(exc)}", 2) from None
    if "connect_timeout" not in params:
        dsn = make_conninfo(dsn, connect_timeout=PG_CONNECT_TIMEOUT)
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
    database = params.get("dbname") or params.get("user") or "postgres"
    try:
        # Look first: PostgresStorage.open makes a missing schema, and an
        # operator's typo must not leave an empty one behind.
        with psycopg.connect(dsn, autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'jobs'", [schema]
            ).fetchone()
        if found is None:
            raise OperationError(
                f"no jobarbiter schema {schema!r} in database {database!r} at {where} "
                "(?schema=NAME picks another)"
            )
        return PostgresStorage(dsn, schema=schema, pool_size=1).open()
    except psycopg.Error as exc:
        raise OperationError(
            f"cannot reach PostgreSQL at {where} (database {database!r}): {_first_line(exc)}"
        ) from None


def _split_schema(url: str) -> tuple[str, str]:
    """The URL without its ``schema`` parameter (libpq knows none), and the schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if len(schemas) > 1 or (schemas and not schemas[0]):
        raise OperationError(f"give one non-empty schema in the URL, got {schemas}", 2)
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schemas[0] if schemas else PG_DEFAULT_SCHEMA


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _safe(url: str) -> str:
    """``url`` without a password, for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
