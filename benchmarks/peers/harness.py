"""The one harness every library runs through; each library only says how.

A trial is one library and one workload:

1. ``peer.reset()`` empties that library's broker: its own Redis database, or
   a freshly created PostgreSQL database with the library's schema;
2. its worker commands start as subprocesses, each in a session of its own,
   and ``peer.in_process`` starts the workers the harness hosts itself
   (jobarbiter's Manager, the ProcessPoolExecutor);
3. warm-up: ``WARMUP`` no-op jobs must finish, so every worker is connected;
4. throughput: the harness queues N jobs while the workers run; jobs/s is N
   over the time from the start of queueing to the N-th completion, and the
   queueing alone is timed too;
5. or crash: one crash probe is queued; once it has started, the process
   running it is killed with SIGKILL, and the harness waits for the probe to
   start again. Meanwhile a worker command that exits is started again, as a
   process supervisor (systemd, Kubernetes) would;
6. always: every process the trial started is ended, by pid: SIGTERM to each
   worker command's session, then SIGKILL to it and to every descendant seen.

Every step has a time limit; a library that fails or runs out of time is
reported as such and the run goes on.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import psutil

from benchmarks.peers import marks

ROOT = Path(__file__).resolve().parents[2]  # the directory holding the benchmarks package
WARMUP = 50
POLL = 0.005  # seconds between two looks at the done file
STOP_GRACE = 2.0
LOG_TAIL = 12


@dataclass(frozen=True, slots=True)
class Spec:
    """What a trial runs."""

    workload: str  # "noop", "sleep" or "crash"
    jobs: int
    sleep_ms: float
    processes: int  # worker processes
    concurrency: int | None  # jobs at once per process, where the library has a knob; None: default
    crash_hold: float  # seconds the crash probe sleeps on its first run


@dataclass(frozen=True, slots=True)
class Limits:
    ready: float  # worker start-up and warm-up
    run: float  # queueing plus processing of one workload
    crash: float  # from the kill to the probe's second start
    setup: float = 60.0  # reset of the broker


# -- what a library supplies -----------------------------------------------------------


class Peer(abc.ABC):
    """One library: how to empty its broker, start its workers and queue its jobs."""

    name: ClassVar[str]
    distributions: ClassVar[tuple[str, ...]]  # whose versions the report records
    broker: ClassVar[str]
    reliability: ClassVar[str]  # the at-least-once settings used, in one line

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Empty the broker; called before every trial."""

    def worker_commands(self, spec: Spec) -> list[list[str]]:
        """The worker processes to start, as argument lists."""
        return []

    @contextlib.contextmanager
    def in_process(self, spec: Spec) -> Iterator[Callable[[], list[int]]]:
        """Workers the harness hosts; yields a function giving their pids now."""
        yield list

    @abc.abstractmethod
    def enqueue(self, workload: str, count: int, spec: Spec) -> None:
        """Queue ``count`` jobs of ``workload`` (noop, sleep or crash)."""

    def describe(self, spec: Spec) -> list[str]:
        """How the workers run, for the report: the commands by default."""
        return [shown(command) for command in self.worker_commands(spec)]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the producer's connections."""


T = TypeVar("T")


def task_for(workload: str, spec: Spec, tasks: Mapping[str, T]) -> tuple[T, tuple[float, ...]]:
    """A library's task for ``workload`` and its positional arguments:
    none for noop, the milliseconds for sleep, the hold seconds for crash."""
    args = {"noop": (), "sleep": (spec.sleep_ms,), "crash": (spec.crash_hold,)}[workload]
    return tasks[workload], args


def python_module(module: str, *args: str) -> list[str]:
    """A command running ``python -m module`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def shown(command: list[str]) -> str:
    """A command as a shell line, with the interpreter written as ``python``."""
    head = ["python"] if command and command[0] == sys.executable else command[:1]
    return shlex.join([*head, *command[1:]])


def flush_redis(db: int) -> None:
    """Empty Redis database ``db`` (each library has its own)."""
    import redis  # noqa: PLC0415 - only the Redis libraries need it

    client = redis.Redis.from_url(marks.redis_url(db), socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


def recreate_pg_database() -> None:
    """Drop and create the benchmark's PostgreSQL database."""
    import psycopg  # noqa: PLC0415 - only the PostgreSQL libraries need it

    with psycopg.connect(marks.pg_dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {marks.PG_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {marks.PG_DATABASE}")


# -- processes ---------------------------------------------------------------------


def process_tree(pids: Iterable[int]) -> list[psutil.Process]:
    """The processes ``pids`` and all their descendants that are alive now."""
    found: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            found += [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
    return found


def tree_cpu(pids: Iterable[int]) -> float:
    """CPU seconds of ``pids``, their live descendants and the children they reaped."""
    total = 0.0
    for proc in process_tree(pids):
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


class Workers:
    """A trial's worker subprocesses: started, restarted on request, always ended."""

    def __init__(self, commands: list[list[str]], env: dict[str, str], log_dir: Path) -> None:
        self._commands = commands
        self._env = env
        self._log_dir = log_dir
        self._running: list[subprocess.Popen[bytes]] = []
        self._ended: list[subprocess.Popen[bytes]] = []
        self.restarts = 0

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        with (self._log_dir / f"worker-{index}.log").open("ab") as log:
            return subprocess.Popen(
                self._commands[index],
                env=self._env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: ended as a whole
            )

    def start(self) -> None:
        for index in range(len(self._commands)):
            self._running.append(self._spawn(index))

    def supervise(self) -> None:
        """Start again any worker command that has exited."""
        for index, proc in enumerate(self._running):
            if proc.poll() is not None:
                self._ended.append(proc)
                self._running[index] = self._spawn(index)
                self.restarts += 1

    def pids(self) -> list[int]:
        return [p.pid for p in self._running]

    def check(self) -> None:
        """RuntimeError if a worker command has exited (outside the crash case)."""
        for proc in self._running:
            if proc.poll() is not None:
                raise RuntimeError(f"a worker command exited with code {proc.returncode}")

    def stop(self) -> None:
        seen = process_tree(p.pid for p in self._running if p.poll() is None)
        for proc in self._running:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self._running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self._running:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for leftover in seen:  # descendants that moved to a group of their own (rq's horses)
            with contextlib.suppress(psutil.Error):
                if leftover.is_running():
                    leftover.kill()
        for proc in self._running + self._ended:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def log_tail(self) -> str:
        """The last lines of the first worker log that has any."""
        for log in sorted(self._log_dir.glob("worker-*.log")):
            lines = log.read_text(errors="replace").splitlines()
            if lines:
                return "\n".join(lines[-LOG_TAIL:])
        return ""


def worker_env() -> dict[str, str]:
    """This process's environment, with the repository root importable."""
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def bounded(timeout: float, what: str, fn: Callable[..., None], *args: Any) -> None:
    """Call ``fn(*args)`` in a thread; TimeoutError if it has not returned in time."""
    failure: list[BaseException] = []

    def call() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=call, name=f"peers-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not return within {timeout:g} s")
    if failure:
        raise failure[0]


def wait_done(
    directory: Path, target: int, deadline: float, tick: Callable[[], None] | None = None
) -> int:
    """Wait until ``target`` jobs are done or the monotonic ``deadline``; the count then."""
    while (done := marks.done_count(directory)) < target and time.monotonic() < deadline:
        if tick is not None:
            tick()
        time.sleep(POLL)
    return done


# -- trials ------------------------------------------------------------------------


@dataclass
class Crash:
    killed_pid: int
    ran_again: bool
    after_s: float | None  # from the kill to the second start
    completed: bool  # the second run finished
    waited_s: float


@dataclass
class Trial:
    library: str
    workload: str
    jobs: int
    status: str = "ok"  # ok, timeout, failed, missing
    detail: str = ""
    done: int = 0
    seconds: float | None = None  # queueing started -> last completion
    enqueue_seconds: float | None = None
    jobs_per_s: float | None = None
    enqueue_per_s: float | None = None
    harness_cpu_s: float | None = None  # the producer (and jobarbiter's host)
    worker_cpu_s: float | None = None
    setup: list[str] = field(default_factory=list)
    restarts: int = 0  # worker commands started again after they exited
    crash: Crash | None = None


def run_trial(load: Callable[[], Peer], name: str, spec: Spec, limits: Limits) -> Trial:
    """Run one library on one workload; never raises, the outcome is in the Trial."""
    trial = Trial(name, spec.workload, jobs=1 if spec.workload == "crash" else spec.jobs)
    try:
        peer = load()
    except ImportError as exc:
        trial.status, trial.detail = "missing", f"not installed: {exc}"
        return trial
    directory = Path(tempfile.mkdtemp(prefix="jobarbiter-peers-"))
    os.environ[marks.DIR_ENV] = str(directory)  # in-process workers inherit it
    trial.setup = peer.describe(spec)
    workers = Workers(peer.worker_commands(spec), worker_env(), directory)
    try:
        bounded(limits.setup, "reset", peer.reset)
        workers.start()
        with peer.in_process(spec) as local_pids:

            def pids() -> list[int]:
                return workers.pids() + local_pids()

            bounded(limits.ready, "warm-up enqueue", peer.enqueue, "noop", WARMUP, spec)
            ready = wait_done(directory, WARMUP, time.monotonic() + limits.ready, workers.check)
            if ready < WARMUP:
                raise TimeoutError(
                    f"workers not ready: {ready} of {WARMUP} warm-up jobs done "
                    f"after {limits.ready:g} s"
                )
            if spec.workload == "crash":
                trial.crash = crash(
                    peer=peer,
                    spec=spec,
                    limits=limits,
                    workers=workers,
                    pids=pids,
                    directory=directory,
                )
            else:
                throughput(
                    peer=peer,
                    spec=spec,
                    limits=limits,
                    workers=workers,
                    pids=pids,
                    directory=directory,
                    trial=trial,
                )
    except Exception as exc:
        trial.status = "timeout" if isinstance(exc, TimeoutError) else "failed"
        trial.detail = f"{type(exc).__name__}: {exc}"
        tail = workers.log_tail()
        if tail:
            trial.detail += f"\nworker log tail:\n{tail}"
    finally:
        workers.stop()
        trial.restarts = workers.restarts
        with contextlib.suppress(Exception):
            peer.close()
        shutil.rmtree(directory, ignore_errors=True)
    return trial


def throughput(
    *,
    peer: Peer,
    spec: Spec,
    limits: Limits,
    workers: Workers,
    pids: Callable[[], list[int]],
    directory: Path,
    trial: Trial,
) -> None:
    before = marks.done_count(directory)
    workers_cpu, harness_cpu = tree_cpu(pids()), own_cpu()
    started = time.perf_counter()
    deadline = time.monotonic() + limits.run
    bounded(limits.run, "enqueue", peer.enqueue, spec.workload, spec.jobs, spec)
    queued = time.perf_counter()
    done = wait_done(directory, before + spec.jobs, deadline, workers.check) - before
    finished = time.perf_counter()
    trial.worker_cpu_s = tree_cpu(pids()) - workers_cpu
    trial.harness_cpu_s = own_cpu() - harness_cpu
    trial.done = done
    trial.seconds = finished - started
    trial.enqueue_seconds = queued - started
    trial.jobs_per_s = done / trial.seconds
    trial.enqueue_per_s = spec.jobs / trial.enqueue_seconds
    if done < spec.jobs:
        trial.status = "timeout"
        trial.detail = f"{done:,} of {spec.jobs:,} jobs done after {limits.run:g} s"


def crash(
    *,
    peer: Peer,
    spec: Spec,
    limits: Limits,
    workers: Workers,
    pids: Callable[[], list[int]],
    directory: Path,
) -> Crash:
    before = marks.done_count(directory)
    bounded(limits.ready, "enqueue", peer.enqueue, "crash", 1, spec)
    deadline = time.monotonic() + limits.ready
    while not (first := marks.starts(directory)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the crash probe did not start within {limits.ready:g} s")
        time.sleep(POLL)
    victim = first[0].pid
    if victim not in {p.pid for p in process_tree(pids())}:
        raise RuntimeError(f"the probe ran in pid {victim}, not in a process this run started")
    os.kill(victim, signal.SIGKILL)
    killed_at, killed = time.time(), time.monotonic()
    again: marks.Start | None = None
    while time.monotonic() < killed + limits.crash:
        workers.supervise()
        found = marks.starts(directory)
        if len(found) > 1:
            again = found[1]
            break
        time.sleep(0.02)
    completed = False
    if again is not None:
        done = wait_done(directory, before + 1, time.monotonic() + 10, workers.supervise)
        completed = done > before
    return Crash(
        killed_pid=victim,
        ran_again=again is not None,
        after_s=None if again is None else again.at - killed_at,
        completed=completed,
        waited_s=time.monotonic() - killed,
    )
