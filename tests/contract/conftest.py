"""The one ``storage`` fixture, run once per backend in backends.BACKENDS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage import ManualClock, Storage

from .backends import BACKENDS, close


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Storage]:
    """A fresh, empty Storage that reads the time from the ``clock`` fixture."""
    backend = BACKENDS[request.param](clock)
    yield backend
    close(backend)
