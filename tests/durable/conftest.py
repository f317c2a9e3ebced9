"""Fixtures of the PostgreSQL tests: a fresh schema per test, and its hosts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from storage.postgres import PostgresStorage

from .pg_host import fresh_schema, require_postgres


@pytest.fixture
def dsn() -> str:
    return require_postgres()


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    with fresh_schema(dsn) as name:
        yield name


@pytest.fixture
def hosts(dsn: str, schema: str) -> Iterator[Callable[..., PostgresStorage]]:
    """Makes storages ("hosts") on the test's schema; closes them afterwards."""
    made: list[PostgresStorage] = []

    def make(**kwargs: Any) -> PostgresStorage:
        storage = PostgresStorage(dsn, schema=schema, **kwargs).open()
        made.append(storage)
        return storage

    yield make
    for storage in made:
        storage.close()
