"""The one ``storage`` fixture, run once per backend in backends.BACKENDS,
and ``capped``: that storage with a count cap of support.CAP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage import ManualClock, Storage

from .backends import BACKENDS, close, reopen
from .support import CAP


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Storage]:
    """A fresh, empty Storage that reads the time from the ``clock`` fixture."""
    backend = BACKENDS[request.param](clock)
    yield backend
    close(backend)


@pytest.fixture
def capped(storage: Storage, clock: ManualClock) -> Iterator[Storage]:
    """The fixture's storage, with a count cap of CAP where it takes one."""
    if type(storage).__name__ != "PostgresStorage":
        yield storage  # exact counts, no cap
        return
    again = reopen(storage, clock, count_cap=CAP)
    assert again is not None
    try:
        yield again
    finally:
        close(again)
