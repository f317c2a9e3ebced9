"""PostgreSQL test support, and a host process for the crash test.

Support: the server comes from JOBARBITER_TEST_PG (default: the local server,
database postgres); the tests work in a database of their own, made if
missing, and in a schema of their own that is dropped afterwards, so they
never touch anything else. Without a server the tests are skipped with the
reason, unless CI is set: then they fail.

Host: ``python -m tests.durable.pg_host --dsn D --schema S --out F [--queue N]``
runs one host (a Manager with its arbiters) on the shared schema. With
``--queue N`` it queues ``Mark(0..N-1)`` and prints ``queued`` once
queue_many has returned (so the jobs are committed). Every host prints
``started`` once its arbiters run, waits for the file ``--go`` (so that the
test decides when to queue, and when a host may conclude that all is done),
then prints ``done`` and exits 0 once the schema holds nothing pending or
running. Arbiters import this module for ``Mark``, so
importing it does no work.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storage import ManualClock
from storage.postgres import PostgresStorage, migrate, quote_ident
from supervisor import Backoff, Job, MaxRetries, WorkerConfig

DSN_VAR = "JOBARBITER_TEST_PG"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_DATABASE = "jobarbiter_test"

# -- the test server ----------------------------------------------------------------

_probed: tuple[str, str | None] | None = None  # (test database DSN, why unusable)


def _probe() -> tuple[str, str | None]:
    global _probed
    if _probed is None:
        base = os.environ.get(DSN_VAR, DEFAULT_DSN)
        dsn = make_conninfo(base, dbname=TEST_DATABASE)
        try:
            with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
                found = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", [TEST_DATABASE]
                ).fetchone()
                if found is None:
                    try:
                        conn.execute(f"CREATE DATABASE {TEST_DATABASE}")
                    except psycopg.errors.DuplicateDatabase:
                        pass  # another test run made it just now
            _probed = (dsn, None)
        except psycopg.Error as exc:
            where = conninfo_to_dict(base)
            server = f"{where.get('host', 'localhost')}:{where.get('port', 5432)}"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _probed = (dsn, f"no PostgreSQL server answers at {server} (${DSN_VAR}): {first}")
    return _probed


def require_postgres() -> str:
    """The DSN of the test database; skips the test (fails it under CI) without one."""
    import pytest  # noqa: PLC0415 (not at import: arbiters import this module)

    dsn, reason = _probe()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so PostgreSQL tests must run")
        pytest.skip(reason)
    return dsn


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A storage left open (a test that failed midway) must not hang us.
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")


@contextmanager
def fresh_schema(dsn: str) -> Iterator[str]:
    """A schema name no one uses; dropped, with all it holds, afterwards."""
    schema = f"t_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    try:
        yield schema
    finally:
        drop_schema(dsn, schema)


# -- the contract backend -----------------------------------------------------------

_contract: tuple[psycopg.Connection[Any], str] | None = None


def contract_storage(clock: ManualClock) -> PostgresStorage:
    """An empty PostgresStorage on this session's contract schema.

    The schema is made once per session and emptied for each storage: making
    one per hypothesis example would cost more than the example itself.
    """
    global _contract
    dsn = require_postgres()
    if _contract is None:
        schema = f"contract_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        admin = psycopg.connect(dsn, autocommit=True)
        migrate(admin, schema)
        _contract = (admin, schema)

        def cleanup() -> None:
            admin.close()
            drop_schema(dsn, schema)

        atexit.register(cleanup)
    admin, schema = _contract
    admin.execute(f"DELETE FROM {quote_ident(schema)}.jobs")
    admin.execute(f"DELETE FROM {quote_ident(schema)}.queues")
    admin.execute(f"DELETE FROM {quote_ident(schema)}.schedule_ticks")
    return PostgresStorage(dsn, clock=clock, schema=schema, pool_size=1).open()


# -- the host -------------------------------------------------------------------------


@dataclass
class Mark(Job):
    """Appends its number to ``out``: one O_APPEND write, so lines never mix."""

    MAX_RETRIES = MaxRetries.infinite()
    BACKOFF = Backoff.linear(0.05)
    HEARTBEAT_INTERVAL = 0.2  # a dead host's claims go stale after 1 s

    n: int
    out: str

    def run(self, state: Any) -> None:
        fd = os.open(self.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{self.n}\n".encode())
        finally:
            os.close(fd)
        time.sleep(0.001)


def _say(word: str) -> None:
    sys.stdout.write(word + "\n")
    sys.stdout.flush()


def _wait_for(path: str | None, deadline: float) -> bool:
    while path is not None and not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def host(args: argparse.Namespace) -> int:
    # Run as ``-m``, this file is __main__: take Mark from the module by its
    # real name, which is the one the arbiters import.
    mark: type[Mark] = importlib.import_module("tests.durable.pg_host").Mark
    storage = PostgresStorage(args.dsn, schema=args.schema, poll_interval=0.5)
    config = WorkerConfig(storage=storage).register(mark).set_worker_count("default", args.workers)
    manager = config.start(processes=args.processes)
    deadline = time.monotonic() + args.timeout
    try:
        while sum(a.alive and a.state == "running" for a in manager.stats().arbiters) < (
            args.processes
        ):
            time.sleep(0.01)
        _say("started")
        if not _wait_for(args.go, deadline):
            _say("timeout")
            return 1
        if args.queue:
            manager.queue_many(mark(n=i, out=args.out) for i in range(args.queue))
            _say("queued")
        # join() knows only this host's actor: with a shared schema, ask the
        # storage itself whether anything is left anywhere. (stats() also
        # names queues that merely have workers here, or ended jobs.)
        while any(q.pending or q.running for q in manager.stats().queues.values()):
            if time.monotonic() > deadline:
                _say("timeout")
                return 1
            time.sleep(0.1)
        _say("done")
        return 0
    finally:
        manager.stop(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.durable.pg_host")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--queue", type=int, default=0, help="queue Mark(0..N-1) first")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--go", help="wait for this file to exist before queueing or counting")
    parser.add_argument("--timeout", type=float, default=120.0)
    return host(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
