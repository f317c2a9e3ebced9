"""Fixtures shared by the whole test suite.

Keep this file small and sectioned; fixtures that only one area needs belong in
that area's own conftest.py (for example tests/contract/conftest.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from storage import ManualClock

# -- clocks ----------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test advances it.

    It starts on a whole second, so advancing it by binary fractions (0.5, 0.25,
    1/64, ...) keeps every time exact in floating point.
    """
    return ManualClock(1_700_000_000.0)


# -- the CLI ------------------------------------------------------------------------


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """Undo what configure_logging does to this process's logging and structlog."""
    root = logging.getLogger()
    ours = logging.getLogger("jobarbiter")
    handlers, root_level, our_level = list(root.handlers), root.level, ours.level
    raise_exceptions, config = logging.raiseExceptions, structlog.get_config()
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(root_level)
    ours.setLevel(our_level)
    logging.raiseExceptions = raise_exceptions
    structlog.configure(**config)
