"""Two hosts share one schema; one is SIGKILLed mid-run; nothing is lost.

Host A (2 arbiters) queues 5,000 jobs; host B (1 arbiter) works alongside.
Once a fifth of the jobs have run, host A's own process is killed with
SIGKILL: no release, no goodbye. Its arbiters end when their socket closes
(any left are killed by pid). Host B must then run everything that is left,
including the jobs A held, which come back once their claims go stale (five
0.2 s heartbeat intervals). Every number must appear; a job that A was running
when it died may appear twice (at-least-once), and the count is reported.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from .pg_host import fresh_schema, require_postgres

ROOT = Path(__file__).resolve().parents[2]
JOBS = 5000

pytestmark = pytest.mark.processes


class Host:
    """One host process, its stdout read line by line in a thread."""

    def __init__(self, dsn: str, schema: str, out: Path, go: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "tests.durable.pg_host", "--dsn", dsn]
        command += ["--schema", schema, "--out", str(out), "--go", str(go), *extra]
        # The host's log goes beside the output, to read when a run fails.
        self.log = go.with_suffix(".log")
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True
            )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())
        self._lines.put("<eof>")

    def expect(self, word: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise AssertionError(f"host did not say {word!r} within {timeout} s") from None
            if line == word:
                return
            if line in ("<eof>", "timeout"):
                raise AssertionError(f"host said {line!r} while we waited for {word!r}")

    def kill(self) -> None:
        """SIGKILL the host process, then make sure its arbiters are gone too."""
        children = psutil.Process(self.process.pid).children(recursive=True)
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        # Arbiters end by themselves when the host's socket closes.
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            child.kill()

    def end(self) -> None:
        if self.process.poll() is None:
            self.kill()


def _numbers(out: Path) -> list[int]:
    if not out.exists():
        return []
    return [int(line) for line in out.read_text().split()]


def test_a_host_killed_mid_run_loses_no_job(tmp_path: Path) -> None:
    dsn = require_postgres()
    out = tmp_path / "marks.log"
    queue_go, count_go = tmp_path / "queue.go", tmp_path / "count.go"
    with fresh_schema(dsn) as schema:
        a = Host(dsn, schema, out, queue_go, "--queue", str(JOBS), "--processes", "2")
        b = Host(dsn, schema, out, count_go, "--processes", "1")
        try:
            a.expect("started", 60)
            b.expect("started", 60)
            queue_go.touch()
            a.expect("queued", 60)
            count_go.touch()  # all jobs are committed: B may now conclude

            deadline = time.monotonic() + 60
            while len(_numbers(out)) < JOBS // 5:
                assert time.monotonic() < deadline, "jobs did not start running"
                time.sleep(0.005)
            a.kill()
            killed_at = len(_numbers(out))
            assert killed_at < JOBS, "host A was killed too late: all jobs had run"

            started = time.monotonic()
            b.expect("done", 120)
            finish = time.monotonic() - started
            assert b.process.wait(timeout=30) == 0
        finally:
            a.end()
            b.end()

    counts = collections.Counter(_numbers(out))
    missing = sorted(set(range(JOBS)) - set(counts))
    duplicates = sum(n - 1 for n in counts.values())
    print(
        f"\npostgres crash: killed host A after {killed_at} runs; host B finished in "
        f"{finish:.2f} s; {len(counts)} distinct of {JOBS}, {duplicates} duplicate runs"
    )
    assert missing == []
    assert set(counts) == set(range(JOBS))
    # Only jobs host A held when it died can run twice: at most its 2 x 4 workers'
    # worth, plus any it had claimed ahead; far fewer than a batch.
    assert duplicates <= 100
