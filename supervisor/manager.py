"""Manager: supervises the arbiter processes; the public face of a running system.

``ManagerActor`` is the supervising pykka actor in the host. It spawns each
arbiter (``spawn`` start method), learns of a death the moment the process
ends (its sentinel, watched by one thread blocked in ``wait``), releases the
dead arbiter's jobs as failed attempts and restarts it after a backoff.
``Manager`` is what ``WorkerConfig.start`` returns: queue jobs, inspect them,
wait for them, stop.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, cast

import psutil
import pykka
import structlog

from actors.arbiter import EXIT_FATAL, ArbiterSpec, arbiter_main
from actors.host_link import HostLink
from actors.ops import (
    Batch,
    Complete,
    DoneCounts,
    Drain,
    Info,
    ListJobs,
    PurgeDead,
    Requeue,
    Retire,
    Stats,
    WhenIdle,
)
from actors.storage_actor import Rounds, StorageActor, wait_for
from storage import Job, JobInfo, JobResult, QueueStats, Status
from supervisor.every import Recurring
from supervisor.handle import QueueHandle, StorageTransport

if TYPE_CHECKING:
    from supervisor.config import WorkerConfig

log = structlog.get_logger("jobarbiter.manager")

FIRST_RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 10.0
STABLE_AFTER = 60.0  # an arbiter that lived this long resets the backoff
CRASH_LOOP_AFTER = 3  # quick deaths in a row before the state says "crash loop"
KILL_GRACE = 10.0  # how long stop() waits for killed arbiters to be reaped
LINK_DRAIN_TIMEOUT = 5.0  # reading what a dead arbiter left in its socket


@dataclass(frozen=True, slots=True)
class ArbiterStats:
    index: int
    pid: int | None
    alive: bool
    restarts: int  # after a death
    recycles: int  # planned replacements (memory or job-count limit)
    rss: int | None  # bytes
    jobs_done: int
    state: str  # "running", "restarting", "crash loop", "stopping", "stopped"
    last_exit: str | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ManagerStats:
    queues: dict[str, QueueStats]
    arbiters: tuple[ArbiterStats, ...]


def describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    if code == EXIT_FATAL:
        return f"exit code {code} (fatal at start)"
    return f"exit code {code}"


class _SentinelWatcher:
    """One thread blocked on every arbiter's sentinel (and a wake-up pipe)."""

    def __init__(self) -> None:
        self._read_end, self._write_end = os.pipe()
        self._lock = threading.Lock()
        self._watched: dict[
            int, tuple[multiprocessing.process.BaseProcess, Callable[[int | None], None]]
        ] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="jobarbiter-sentinels", daemon=True)
        self._thread.start()

    def watch(
        self, process: multiprocessing.process.BaseProcess, on_exit: Callable[[int | None], None]
    ) -> None:
        with self._lock:
            self._watched[process.sentinel] = (process, on_exit)
        os.write(self._write_end, b"w")

    def close(self) -> None:
        self._closed = True
        os.write(self._write_end, b"c")
        self._thread.join(timeout=5)
        os.close(self._read_end)
        os.close(self._write_end)

    def _run(self) -> None:
        while not self._closed:
            with self._lock:
                sentinels: list[Any] = [*self._watched, self._read_end]
            for ready in multiprocessing.connection.wait(sentinels):
                if ready == self._read_end:
                    os.read(self._read_end, 4096)
                    continue
                with self._lock:
                    process, on_exit = self._watched.pop(cast(int, ready))
                process.join(timeout=5)  # reap it, so exitcode is known
                on_exit(process.exitcode)


@dataclass
class _Slot:
    """One arbiter position; its process is replaced when it dies."""

    index: int
    process: multiprocessing.process.BaseProcess | None = None
    link: HostLink | None = None
    runner: str = ""
    runners: list[str] = field(default_factory=list)
    restarts: int = 0
    recycles: int = 0
    recycling: str | None = None
    timed_out: dict[uuid.UUID, str] = field(default_factory=dict)
    quick_deaths: int = 0
    started_at: float = 0.0
    state: str = "starting"
    last_exit: str | None = None
    last_error: str | None = None
    timer: threading.Timer | None = None


@dataclass(frozen=True, slots=True)
class _Exited:
    index: int
    runner: str
    code: int | None


@dataclass(frozen=True, slots=True)
class _LinkEvent:
    index: int
    runner: str
    kind: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class _RestartDue:
    index: int


@dataclass(frozen=True, slots=True)
class _BeginStop:
    done: Callable[[bool], None]


@dataclass(frozen=True, slots=True)
class _GiveUp:
    """The grace period is over: put back what is running, then kill."""


@dataclass(frozen=True, slots=True)
class _TimedOut:
    runner: str
    job_id: uuid.UUID
    timeout: float


class _TimeoutRelay:
    """Passes the StorageActor's timeout reports to the ManagerActor, which
    starts after it (it needs the StorageActor's ref)."""

    def __init__(self) -> None:
        self.target: pykka.ActorRef[Any] | None = None

    def __call__(self, runner: str, job_id: uuid.UUID, timeout: float) -> None:
        if self.target is not None:
            self.target.tell(_TimedOut(runner, job_id, timeout))


@dataclass(frozen=True, slots=True)
class _Snapshot:
    pass


class ManagerActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, config: WorkerConfig, processes: int, storage: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self._config = config
        self._storage = storage
        self._rounds = Rounds(storage)  # every link's batches, run together
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot(index) for index in range(processes)]
        self._stopping = False
        self._stopped_waiters: list[Callable[[bool], None]] = []
        self._watcher: _SentinelWatcher | None = None
        self._heartbeat = min(job.HEARTBEAT_INTERVAL for job in config.jobs.values())

    def on_start(self) -> None:
        self._watcher = _SentinelWatcher()
        for slot in self._slots:
            self._spawn(slot)

    def on_stop(self) -> None:
        for slot in self._slots:
            if slot.timer is not None:
                slot.timer.cancel()
        if self._watcher is not None:
            self._watcher.close()

    def on_receive(self, message: Any) -> Any:
        match message:
            case _Exited(index, runner, code):
                self._exited(self._slots[index], runner, code)
            case _LinkEvent(index, runner, kind, detail):
                self._link_event(self._slots[index], runner, kind, detail)
            case _RestartDue(index):
                slot = self._slots[index]
                slot.timer = None
                if not self._stopping:
                    slot.restarts += 1
                    self._spawn(slot)
            case _BeginStop(done):
                self._begin_stop(done)
            case _GiveUp():
                for slot in self._alive():
                    assert slot.process is not None
                    # Back in storage first, so nothing depends on the kill.
                    self._storage.ask(Retire(slot.runner, JobResult.unexecuted()))
                    slot.process.kill()
            case _TimedOut(runner, job_id, timeout):
                self._timed_out(runner, job_id, timeout)
            case _Snapshot():
                return self._snapshot()
        return None

    # -- arbiters -----------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        config = self._config
        runner = f"{uuid.uuid4().hex[:12]}-{slot.index}"
        spec = ArbiterSpec(
            index=slot.index,
            runner=runner,
            jobs=tuple(config.jobs.values()),
            queues=tuple((q, n) for q, n in config.queues.items() if n > 0),
            state_factory=config.state,
            handle_factory=QueueHandle,
            heartbeat_interval=self._heartbeat,
            max_rss=config.max_rss,
            max_jobs=config.max_jobs_per_arbiter,
        )
        host_end, arbiter_end = socket.socketpair()
        process = self._context.Process(
            target=arbiter_main,
            args=(spec, arbiter_end),
            name=f"jobarbiter-arbiter-{slot.index}",
            daemon=True,
        )
        process.start()
        arbiter_end.close()
        me = self.actor_ref
        index = slot.index
        link = HostLink(
            host_end,
            runner,
            self._rounds.submit,
            lambda kind, detail: me.tell(_LinkEvent(index, runner, kind, detail)),
        )
        link.start()
        slot.process, slot.link, slot.runner = process, link, runner
        slot.runners.append(runner)
        slot.started_at = time.monotonic()
        slot.state = "running"
        assert self._watcher is not None
        self._watcher.watch(process, lambda code: me.tell(_Exited(index, runner, code)))
        log.info(
            "arbiter restarted" if slot.restarts else "arbiter started",
            arbiter=index,
            pid=process.pid,
            runner=runner,
            restarts=slot.restarts,
        )

    def _exited(self, slot: _Slot, runner: str, code: int | None) -> None:
        if slot.runner != runner:
            return
        assert slot.process is not None and slot.link is not None
        # Its last completions may still sit in the socket: they reach the
        # StorageActor before the Retire below, or a finished job would run again.
        slot.link.drain(timeout=LINK_DRAIN_TIMEOUT)
        slot.link.close()
        how = describe_exit(code)
        slot.last_exit = how
        pid = slot.process.pid
        if self._stopping:
            # Whatever it still held never finished: back unchanged.
            self._storage.tell(Retire(runner, JobResult.unexecuted()))
            slot.state = "stopped"
            log.info("arbiter stopped", arbiter=slot.index, pid=pid, exit=how)
            self._maybe_all_stopped()
            return
        if slot.timed_out:
            # Killed for a job past its TIMEOUT: that job failed an attempt,
            # the others it was running never finished and go back unchanged.
            failed = [Complete(j, runner, JobResult.failure(e)) for j, e in slot.timed_out.items()]
            self._storage.tell(Batch((*failed, Retire(runner, JobResult.unexecuted()))))
            log.warning(
                "arbiter recycled after a timeout",
                arbiter=slot.index,
                pid=pid,
                jobs=[str(j) for j in slot.timed_out],
            )
            slot.timed_out = {}
            slot.recycles += 1
            self._spawn(slot)
            return
        if slot.recycling is not None and code == 0:
            # Planned: it drained itself, so anything still held never ran.
            self._storage.tell(Retire(runner, JobResult.unexecuted()))
            log.info("arbiter recycled", arbiter=slot.index, pid=pid, reason=slot.recycling)
            slot.recycling = None
            slot.recycles += 1
            self._spawn(slot)
            return
        slot.recycling = None
        self._storage.tell(Retire(runner, JobResult.failure(f"arbiter died ({how})")))
        lived = time.monotonic() - slot.started_at
        slot.quick_deaths = 1 if lived >= STABLE_AFTER else slot.quick_deaths + 1
        delay = min(FIRST_RESTART_DELAY * 2 ** (slot.quick_deaths - 1), MAX_RESTART_DELAY)
        if slot.quick_deaths >= CRASH_LOOP_AFTER:
            slot.state = "crash loop"
            log.error(
                "arbiter in a crash loop",
                arbiter=slot.index,
                pid=pid,
                exit=how,
                deaths_in_a_row=slot.quick_deaths,
                restart_in=delay,
                last_error=slot.last_error,
            )
        else:
            slot.state = "restarting"
            log.warning(
                "arbiter died",
                arbiter=slot.index,
                pid=pid,
                exit=how,
                lived=round(lived, 3),
                restart_in=delay,
            )
        me = self.actor_ref
        slot.timer = threading.Timer(delay, lambda: me.tell(_RestartDue(slot.index)))
        slot.timer.daemon = True
        slot.timer.start()

    def _timed_out(self, runner: str, job_id: uuid.UUID, timeout: float) -> None:
        slot = next((s for s in self._slots if s.runner == runner), None)
        if slot is None or slot.process is None or slot.process.exitcode is not None:
            return
        slot.timed_out[job_id] = f"timeout after {timeout:g} s"
        log.error(
            "job past its timeout; recycling its arbiter",
            arbiter=slot.index,
            pid=slot.process.pid,
            job_id=str(job_id),
            timeout=timeout,
        )
        slot.process.kill()

    def _link_event(self, slot: _Slot, runner: str, kind: str, detail: str | None) -> None:
        if slot.runner != runner:
            return
        if kind == "fatal":
            slot.last_error = detail
            log.error("arbiter could not start", arbiter=slot.index, error=detail)
        elif kind == "bad_frame":
            slot.last_error = f"bad frame: {detail}"
            log.error("arbiter broke the protocol; recycling it", arbiter=slot.index, reason=detail)
            if slot.process is not None:
                slot.process.kill()
        elif kind == "recycle":
            slot.recycling = detail
            log.info("arbiter recycling", arbiter=slot.index, reason=detail)
        # "bye" needs nothing: the process ends next and its sentinel says so.

    def _alive(self) -> list[_Slot]:
        return [
            s
            for s in self._slots
            if s.process is not None and s.state not in ("stopped",) and s.process.exitcode is None
        ]

    # -- stopping -----------------------------------------------------------------

    def _begin_stop(self, done: Callable[[bool], None]) -> None:
        self._stopping = True
        self._stopped_waiters.append(done)
        for slot in self._slots:
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            if (
                slot.state in ("restarting", "crash loop")
                and slot.process is not None
                and slot.process.exitcode is not None
            ):
                slot.state = "stopped"
        for slot in self._alive():
            assert slot.link is not None
            slot.state = "stopping"
            # Drain first: the storage must refuse this runner's next pops
            # before the arbiter hears "stop" and sends them.
            self._storage.tell(Drain(slot.runner))
            slot.link.stop_arbiter()
        self._maybe_all_stopped()

    def _maybe_all_stopped(self) -> None:
        if all(s.state == "stopped" or s.process is None for s in self._slots):
            waiters, self._stopped_waiters = self._stopped_waiters, []
            for done in waiters:
                done(True)

    # -- figures --------------------------------------------------------------------

    def _state_of(self, slot: _Slot, alive: bool) -> str:
        if not alive or slot.state != "running":
            return slot.state
        settling = time.monotonic() - slot.started_at < STABLE_AFTER
        return "crash loop" if settling and slot.quick_deaths >= CRASH_LOOP_AFTER else "running"

    def _snapshot(self) -> tuple[ArbiterStats, ...]:
        done = cast(dict[str, int], self._storage.ask(DoneCounts()))
        figures = []
        for slot in self._slots:
            process = slot.process
            alive = process is not None and process.exitcode is None
            rss = None
            if alive and process is not None and process.pid is not None:
                try:
                    rss = psutil.Process(process.pid).memory_info().rss
                except psutil.Error:
                    alive = False
            figures.append(
                ArbiterStats(
                    index=slot.index,
                    pid=None if process is None else process.pid,
                    alive=alive,
                    restarts=slot.restarts,
                    recycles=slot.recycles,
                    rss=rss,
                    jobs_done=sum(done.get(r, 0) for r in slot.runners),
                    state=self._state_of(slot, alive),
                    last_exit=slot.last_exit,
                    last_error=slot.last_error,
                )
            )
        return tuple(figures)


class Manager(QueueHandle):
    """A running jobarbiter: a StorageActor, a ManagerActor and its arbiters.

    It is a QueueHandle (``queue``, ``queue_many``, ``schedule``) onto its
    storage, plus supervision, inspection and stopping.

    Use it as a context manager, or call ``stop``; ``run_forever`` blocks until
    SIGTERM or SIGINT and then stops gracefully.
    """

    def __init__(self, config: WorkerConfig, processes: int) -> None:
        relay = _TimeoutRelay()
        self._storage = StorageActor.start(config.storage, on_timeout=relay)
        super().__init__(StorageTransport(self._storage))
        self._recurring = Recurring(self.queue)
        self._actor = ManagerActor.start(config, processes, self._storage)
        relay.target = self._actor
        self._stopped = False
        self._stop_lock = threading.Lock()

    # -- queueing ---------------------------------------------------------------------

    @property
    def handle(self) -> QueueHandle:
        """A plain QueueHandle onto the same storage, to hand to other code."""
        return QueueHandle(StorageTransport(self._storage))

    def every(self, interval: dt.timedelta | float, job: Job) -> None:
        """Queue ``job`` every ``interval``, first after one interval, until stop."""
        seconds = interval.total_seconds() if isinstance(interval, dt.timedelta) else interval
        self._recurring.add(float(seconds), job)

    # -- inspecting -------------------------------------------------------------------

    def info(self, job_id: uuid.UUID) -> JobInfo | None:
        return cast(JobInfo | None, self._storage.ask(Info(job_id)))

    def dead_jobs(self, queue: str | None = None, *, limit: int = 1000) -> list[JobInfo]:
        return cast(list[JobInfo], self._storage.ask(ListJobs(queue, Status.DEAD, 0, limit)))

    def requeue(self, job_id: uuid.UUID) -> bool:
        """Give a dead job a fresh set of retries, due now."""
        return cast(bool, self._storage.ask(Requeue(job_id)))

    def purge_dead(self, older_than: dt.timedelta | float | None = None) -> int:
        seconds = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        return cast(int, self._storage.ask(PurgeDead(seconds)))

    def stats(self) -> ManagerStats:
        return ManagerStats(
            queues=cast(dict[str, QueueStats], self._storage.ask(Stats())),
            arbiters=cast(tuple[ArbiterStats, ...], self._actor.ask(_Snapshot())),
        )

    def join(self, timeout: float | None = None) -> None:
        """Block until no job is pending or running; TimeoutError after ``timeout`` s."""
        try:
            wait_for(self._storage, WhenIdle, timeout)
        except pykka.Timeout:
            raise TimeoutError(f"jobs still pending or running after {timeout} s") from None

    # -- stopping ---------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> None:
        """Stop pulling, let running jobs finish for up to ``timeout`` s, then end
        the arbiters; what did not finish goes back unexecuted."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._recurring.stop()
        try:
            wait_for(self._actor, _BeginStop, timeout)
        except pykka.Timeout:
            log.warning(
                "jobs still running after the grace period; killing arbiters", timeout=timeout
            )
            future: pykka.ThreadingFuture[bool] = pykka.ThreadingFuture()
            self._actor.tell(_BeginStop(future.set))
            self._actor.tell(_GiveUp())
            try:
                future.get(timeout=KILL_GRACE)
            except pykka.Timeout:
                log.error("arbiters did not end after SIGKILL", timeout=KILL_GRACE)
        self._actor.stop()
        self._storage.stop()

    def run_forever(self, grace: float = 30.0) -> None:
        """Block until SIGTERM or SIGINT, then stop with ``grace`` seconds for running jobs."""
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal received, stopping", signal=signal.Signals(signum).name)
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not stop.wait(3600):
                pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.stop(timeout=grace)

    def __enter__(self) -> Manager:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
