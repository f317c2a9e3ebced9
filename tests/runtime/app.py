"""A user module for ``jobarbiter run tests.runtime.app:config``.

The worker's state factory queues one Sleepy job the first time it runs, so a
test can SIGTERM the CLI while that job is running.
"""

from __future__ import annotations

import os
from pathlib import Path

from supervisor import QueueHandle, WorkerConfig

from .jobs import DIR_VAR, Sleepy


def deploy_state(handle: QueueHandle) -> None:
    marker = Path(os.environ[DIR_VAR]) / "queued"
    if not marker.exists():
        marker.touch()
        handle.queue(Sleepy(tag="deploy", seconds=float(os.environ["JOBARBITER_TEST_SLEEP"])))


config = WorkerConfig(state=deploy_state).register(Sleepy).set_worker_count("default", 1)
