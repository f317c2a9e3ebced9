"""Fixtures for tests that start real arbiter processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import Manager

from .jobs import DIR_VAR

pytestmark = pytest.mark.processes


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the jobs write what they did (inherited by spawned arbiters)."""
    monkeypatch.setenv(DIR_VAR, str(tmp_path))
    return tmp_path


@pytest.fixture
def managers() -> Iterator[list[Manager]]:
    """Managers a test started; stopped at teardown even if the test failed."""
    started: list[Manager] = []
    yield started
    for manager in started:
        manager.stop(timeout=5)
