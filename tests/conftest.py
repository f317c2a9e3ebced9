"""Fixtures shared by the whole test suite.

Keep this file small and sectioned; fixtures that only one area needs belong in
that area's own conftest.py (for example tests/contract/conftest.py).
"""

from __future__ import annotations

import pytest

from storage import ManualClock

# -- clocks ----------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test advances it.

    It starts on a whole second, so advancing it by binary fractions (0.5, 0.25,
    1/64, ...) keeps every time exact in floating point.
    """
    return ManualClock(1_700_000_000.0)
