"""Manager: supervises the arbiter processes; the public face of a running system.

``ManagerActor`` is the supervising pykka actor in the host. It spawns each
arbiter (``spawn`` start method), learns of a death the moment the process
ends (its sentinel, watched by one thread blocked in ``wait``), releases the
dead arbiter's jobs as failed attempts and restarts it after a backoff.
``Manager`` is what ``WorkerConfig.start`` returns: queue jobs, inspect them,
wait for them, stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import multiprocessing.connection
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, cast

import psutil
import pykka

from actors.arbiter import EXIT_FATAL, ArbiterSpec, load_middleware
from actors.host_link import HostLink
from actors.launch import ArbiterProcess, spawn
from actors.middleware import ArbiterDied, died
from actors.ops import (
    Batch,
    Cancel,
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
from actors.storage_actor import Opened, Rounds, StorageActor, wait_for
from actors.waiters import Ended
from storage import Job, JobInfo, JobResult, NewJob, Outcome, QueueStats, Status, Storage
from storage.events import EventLog, last_line
from supervisor import waiting
from supervisor.aio import AsyncHandle
from supervisor.errors import CrashLoopError, ManagerStopped
from supervisor.every import Recurring
from supervisor.handle import QueueHandle, StorageTransport, check_job
from supervisor.handle import job_id as parse_job_id
from supervisor.stats import ArbiterState, ArbiterStats, ManagerStats, QueueFigures

log = EventLog("manager")

# Signals sent from outside (an operator, a supervisor, the OOM killer), as
# opposed to faults the process raised itself (SIGSEGV, SIGABRT).
_OUTSIDE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
CRASH_LOOP_DELAY = 0.4  # the first wait once in a crash loop; it doubles
MAX_RESTART_DELAY = 10.0
CRASH_LOOP_AFTER = 3  # deaths in a row at start-up before the state says "crash loop"
KILL_GRACE = 10.0  # how long stop() waits for killed arbiters to be reaped
LINK_DRAIN_TIMEOUT = 5.0  # reading what a dead arbiter left in its socket
CANCEL_GRACE = 5.0  # a cancelled running job has this long to end, unless told otherwise
STOP_GRACE = 1.0  # a job stopped at its TIMEOUT has this long to end before its arbiter dies


def describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    if code == EXIT_FATAL:
        return f"exit code {code} (it reported a fatal error)"
    return f"exit code {code}"


class _SentinelWatcher:
    """One thread blocked on every arbiter's sentinel (and a wake-up pipe)."""

    def __init__(self) -> None:
        self._read_end, self._write_end = os.pipe()
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[ArbiterProcess, Callable[[int | None], None]]] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="jobarbiter-sentinels", daemon=True)
        self._thread.start()

    def watch(self, process: ArbiterProcess, on_exit: Callable[[int | None], None]) -> None:
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
    process: ArbiterProcess | None = None
    link: HostLink | None = None
    runner: str = ""
    runners: list[str] = field(default_factory=list)
    restarts: int = 0
    recycles: int = 0
    loop_blocks: int = 0
    recycling: str | None = None
    # Jobs it is killed to stop (past a TIMEOUT or a cancel's grace), and
    # what each ends with.
    stopped: dict[uuid.UUID, JobResult] = field(default_factory=dict)
    ready: bool = False  # all its workers built their state
    startup_deaths: int = 0  # deaths in a row before ready
    start_failures: int = 0  # deaths before ready, ever
    started_at: float = 0.0
    state: ArbiterState = ArbiterState.STARTING
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


@dataclass(frozen=True, slots=True)
class ScaleQueue:
    """Give ``queue`` ``count`` worker slots in every arbiter, without a
    restart (the public call comes with live operations)."""

    queue: str
    count: int


@dataclass(frozen=True, slots=True)
class _StopOverdue:
    """The grace a stopped job had to end is over: if it still runs, its
    arbiter is killed and the job ends with ``result``."""

    runner: str
    job_id: uuid.UUID
    result: JobResult


@dataclass(frozen=True, slots=True)
class _CancelRunning:
    """Stop a running job for a cancel, if ``runner`` is one of ours: ask,
    then stop it for real after ``grace`` s."""

    runner: str
    job_id: uuid.UUID
    reason: str
    grace: float


class _Relay:
    """Passes the StorageActor's reports (a TIMEOUT passed; another host
    cancelled a running job) to the ManagerActor, which starts after it (it
    needs the StorageActor's ref)."""

    def __init__(self) -> None:
        self.target: pykka.ActorRef[Any] | None = None

    def timed_out(self, runner: str, job_id: uuid.UUID, timeout: float) -> None:
        self._tell(_TimedOut(runner, job_id, timeout))

    def cancelled(self, job_id: uuid.UUID, runner: str, reason: str) -> None:
        # The grace is this host's default: the cancel's own stays with its caller.
        self._tell(_CancelRunning(runner, job_id, reason, CANCEL_GRACE))

    def _tell(self, message: object) -> None:
        if self.target is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                self.target.tell(message)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    pass


@dataclass(frozen=True, slots=True)
class _WhenCrashLooping:
    """Call ``done(error)`` once every arbiter is in a crash loop that goes on."""

    done: Callable[[CrashLoopError], None]


@dataclass(frozen=True, slots=True)
class _CrashLooping:
    """Answer the CrashLoopError that holds now, or None."""


class ManagerActor(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, spec: ArbiterSpec, processes: int, storage: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self._storage = storage
        self._rounds = Rounds(storage)  # every link's batches, run together
        self._slots = [_Slot(index) for index in range(processes)]
        self._stopping = False
        self._stopped_waiters: list[Callable[[bool], None]] = []
        self._watcher: _SentinelWatcher | None = None
        # Each with every slot's start_failures when it began waiting.
        self._crash_waiters: list[tuple[Callable[[CrashLoopError], None], tuple[int, ...]]] = []
        self._spec = spec
        self._middleware = load_middleware(spec.middleware)

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
                self._stopping = True  # what ends now is not restarted
                for slot in self._alive():
                    assert slot.process is not None
                    # Back in storage first, so nothing depends on the kill.
                    self._storage.ask(Retire(slot.runner, JobResult.unexecuted()))
                    slot.process.kill()
            case _TimedOut(runner, job_id, timeout):
                self._timed_out(runner, job_id, timeout)
            case _CancelRunning(runner, job_id, reason, grace):
                self._cancel_running(runner, job_id, reason, grace)
            case _StopOverdue(runner, job_id, result):
                self._stop_overdue(runner, job_id, result)
            case ScaleQueue(queue, count):
                self._scale(queue, count)
            case _Snapshot():
                return self._snapshot()
            case _WhenCrashLooping(done):
                self._crash_waiters.append((done, tuple(s.start_failures for s in self._slots)))
            case _CrashLooping():
                return self._crash_loop()
        return None

    # -- arbiters -----------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        runner = f"{uuid.uuid4().hex[:12]}-{slot.index}"
        spec = dataclasses.replace(self._spec, index=slot.index, runner=runner)
        process, host_end = spawn(spec)
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
        slot.state = ArbiterState.STARTING
        slot.ready = False
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
            slot.state = ArbiterState.STOPPED
            log.info("arbiter stopped", arbiter=slot.index, pid=pid, exit=how)
            self._maybe_all_stopped()
            return
        if slot.stopped:
            # Killed to stop a job (past its TIMEOUT: it failed an attempt; a
            # cancel: it is cancelled); the others it was running never
            # finished and go back unchanged.
            ended = [Complete(j, runner, result) for j, result in slot.stopped.items()]
            self._died(slot, pid, how, slot.link.started())
            self._storage.tell(Batch((*ended, Retire(runner, JobResult.unexecuted()))))
            log.warning(
                "arbiter recycled to stop a job",
                arbiter=slot.index,
                pid=pid,
                jobs=[str(j) for j in slot.stopped],
            )
            slot.stopped = {}
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
        # What it was running failed an attempt; its buffer never started.
        died = JobResult.failure(f"arbiter died ({how})")
        started = slot.link.started()
        self._storage.tell(Retire(runner, died, JobResult.unexecuted(), started))
        self._died(slot, pid, how, started)
        lived = time.monotonic() - slot.started_at
        slot.startup_deaths = 0 if slot.ready else slot.startup_deaths + 1
        slot.start_failures += not slot.ready
        # One that was up (killed from outside, or by a job, whose attempt is
        # counted) comes back at once, and so does one killed from outside
        # while it started, which is no sign that it cannot start. A start
        # that failed by itself comes back at once twice; from the crash loop
        # on, its wait doubles, so a start that cannot succeed does not spin.
        outside = code is not None and -code in _OUTSIDE_SIGNALS
        delay = 0.0
        if slot.startup_deaths >= CRASH_LOOP_AFTER and not outside:
            delay = CRASH_LOOP_DELAY * 2 ** (slot.startup_deaths - CRASH_LOOP_AFTER)
            delay = min(delay, MAX_RESTART_DELAY)
        if slot.startup_deaths == CRASH_LOOP_AFTER:
            log.error(
                "arbiter in a crash loop",
                arbiter=slot.index,
                exit=how,
                deaths_at_start=slot.startup_deaths,
                restart_in=delay,
                last_error=last_line(slot.last_error) or f"none reported: it ended with {how}",
            )
        else:
            log.warning(
                "arbiter died",
                arbiter=slot.index,
                pid=pid,
                exit=how,
                lived=round(lived, 3),
                restart_in=delay,
            )
        looping = slot.startup_deaths >= CRASH_LOOP_AFTER
        slot.state = ArbiterState.CRASH_LOOP if looping else ArbiterState.RESTARTING
        slot.timer = self._tell_later(delay, _RestartDue(slot.index))
        self._tell_crash_waiters()

    def _crash_loop(self) -> CrashLoopError | None:
        """The error to raise while every arbiter is in a crash loop, else None."""
        slots = self._slots
        if not slots or self._stopping:
            return None
        if all(s.startup_deaths >= CRASH_LOOP_AFTER and not s.ready for s in slots):
            return CrashLoopError(tuple(s.last_error for s in slots))
        return None

    def _tell_crash_waiters(self) -> None:
        """Tell the waiters for whom every arbiter is in a crash loop and has died
        at start-up again since they began to wait: a loop that goes on, not one
        that outside kills left behind and the next restart ends."""
        error = self._crash_loop()
        if error is None:
            return
        failures = [s.start_failures for s in self._slots]
        kept = []
        for done, since in self._crash_waiters:
            if all(now > then for now, then in zip(failures, since, strict=True)):
                done(error)
            else:
                kept.append((done, since))
        self._crash_waiters = kept

    def _timed_out(self, runner: str, job_id: uuid.UUID, timeout: float) -> None:
        """A job passed its TIMEOUT: stop it alone, in its own thread; kill its
        arbiter only if it has not ended STOP_GRACE seconds later."""
        slot = self._slot_of(runner)
        if slot is None or slot.link is None:
            return
        reason = f"timeout after {timeout:g} s"
        log.warning(
            "job past its timeout; stopping it", arbiter=slot.index, job_id=job_id, timeout=timeout
        )
        slot.link.stop_job(job_id, reason)
        self._tell_later(STOP_GRACE, _StopOverdue(runner, job_id, JobResult.failure(reason)))

    def _died(self, slot: _Slot, pid: int | None, how: str, started: tuple[uuid.UUID, ...]) -> None:
        """Tell the middleware's host-side hook: the arbiter cannot."""
        if self._middleware:
            died(
                self._middleware,
                ArbiterDied(arbiter=slot.index, pid=pid, exit=how, job_ids=started),
            )

    def _cancel_running(self, runner: str, job_id: uuid.UUID, reason: str, grace: float) -> None:
        """A cancel of a running job: ask its arbiter to stop it; kill the
        arbiter if it has not ended ``grace`` seconds later. Another host's
        runner is left to that host (its storage told it)."""
        slot = self._slot_of(runner)
        if slot is None or slot.link is None:
            return
        log.info("cancelling a running job", arbiter=slot.index, job_id=job_id, grace=grace)
        slot.link.cancel_job(job_id, reason)
        self._tell_later(grace, _StopOverdue(runner, job_id, JobResult.cancelled(reason)))

    def _tell_later(self, delay: float, message: object) -> threading.Timer:
        """Tell ourselves ``message`` in ``delay`` s, unless we stopped by then."""
        me = self.actor_ref

        def tell() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(message)

        timer = threading.Timer(delay, tell)
        timer.daemon = True
        timer.start()
        return timer

    def _stop_overdue(self, runner: str, job_id: uuid.UUID, result: JobResult) -> None:
        slot = self._slot_of(runner)
        if slot is None or slot.process is None:
            return
        info = cast(JobInfo | None, self._storage.ask(Info(job_id)))
        if info is None or info.runner != runner:
            return  # it ended at the exception (or was settled otherwise)
        slot.stopped[job_id] = result
        log.error(
            "job did not stop when asked; recycling its arbiter",
            arbiter=slot.index,
            pid=slot.process.pid,
            job_id=job_id,
            why="cancel" if result.outcome is Outcome.CANCELLED else "timeout",
        )
        slot.process.kill()

    def _scale(self, queue: str, count: int) -> None:
        """Every arbiter gets ``count`` slots for ``queue``, now and after a restart."""
        queues = dict(self._spec.queues)
        queues[queue] = count
        spec = self._spec
        self._spec = dataclasses.replace(
            spec, queues=tuple((q, n) for q, n in queues.items() if n > 0)
        )
        for slot in self._alive():
            assert slot.link is not None
            slot.link.scale(queue, count)
        log.info("queue scaled", queue=queue, workers=count)

    def _slot_of(self, runner: str) -> _Slot | None:
        """The live arbiter ``runner`` names, if it is still the slot's."""
        slot = next((s for s in self._slots if s.runner == runner), None)
        if slot is None or slot.process is None or slot.process.exitcode is not None:
            return None
        return slot

    def _link_event(self, slot: _Slot, runner: str, kind: str, detail: str | None) -> None:
        if slot.runner != runner:
            return
        if kind == "ready":
            slot.ready = True
            slot.startup_deaths = 0
            if slot.state is ArbiterState.STARTING:
                slot.state = ArbiterState.RUNNING
        elif kind == "fatal":
            if detail != slot.last_error:  # the whole traceback once, not per restart
                log.warning("arbiter failed", arbiter=slot.index, error=detail)
            slot.last_error = detail
        elif kind == "bad_frame":
            slot.last_error = f"bad frame: {detail}"
            log.error("arbiter broke the protocol; recycling it", arbiter=slot.index, reason=detail)
            if slot.process is not None:
                slot.process.kill()
        elif kind == "loop_blocked":
            slot.loop_blocks += 1
            log.warning("event loop blocked", arbiter=slot.index, blocked_by=detail)
        elif kind == "recycle":
            slot.recycling = detail
            log.info("arbiter recycling", arbiter=slot.index, reason=detail)
        # "bye" needs nothing: the process ends next and its sentinel says so.

    def _alive(self) -> list[_Slot]:
        return [
            s
            for s in self._slots
            if s.process is not None
            and s.state is not ArbiterState.STOPPED
            and s.process.exitcode is None
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
                slot.state in (ArbiterState.RESTARTING, ArbiterState.CRASH_LOOP)
                and slot.process is not None
                and slot.process.exitcode is not None
            ):
                slot.state = ArbiterState.STOPPED
        for slot in self._alive():
            assert slot.link is not None
            slot.state = ArbiterState.STOPPING
            # Drain first: the storage must refuse this runner's next pops
            # before the arbiter hears "stop" and sends them.
            self._storage.tell(Drain(slot.runner))
            slot.link.stop_arbiter()
        self._maybe_all_stopped()

    def _maybe_all_stopped(self) -> None:
        if all(s.state is ArbiterState.STOPPED or s.process is None for s in self._slots):
            waiters, self._stopped_waiters = self._stopped_waiters, []
            for done in waiters:
                done(True)

    # -- figures --------------------------------------------------------------------

    def _state_of(self, slot: _Slot, alive: bool) -> ArbiterState:
        looping = slot.startup_deaths >= CRASH_LOOP_AFTER
        if alive and looping and slot.state is ArbiterState.STARTING:
            return ArbiterState.CRASH_LOOP  # started again, and not ready yet: still in it
        return slot.state

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
                    loop_blocks=slot.loop_blocks,
                )
            )
        return tuple(figures)


class _HostTransport(StorageTransport):
    """The Manager's transport: a stopped Manager says so by name, and a job
    queued where no worker of this host will ever take it is warned of once."""

    def __init__(self, storage: pykka.ActorRef[Any], served: frozenset[str] | None) -> None:
        super().__init__(storage)
        self._served = served  # None: the storage is shared, others may serve it
        self._warned: set[str] = set()

    def push(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        self.warn_unserved(jobs)
        try:
            return super().push(jobs)
        except pykka.ActorDeadError:
            raise ManagerStopped("queue") from None

    def warn_unserved(self, jobs: Sequence[NewJob]) -> None:
        if self._served is not None:
            for queue in {job.queue for job in jobs} - self._served - self._warned:
                self._warned.add(queue)
                log.warning(
                    "jobs queued on a queue no worker of this host serves; they wait "
                    "until a host that serves it runs",
                    queue=queue,
                    served=",".join(sorted(self._served)) or "none",
                )


class _First:
    """The first of several answers (idle, or a crash loop), for one waiter."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.value: CrashLoopError | None = None

    def set(self, value: CrashLoopError | None) -> None:
        with self._lock:
            if not self._event.is_set():
                self.value = value
                self._event.set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)


class Manager(QueueHandle):
    """A running jobarbiter: a StorageActor, a ManagerActor and its arbiters.

    It is a QueueHandle (``queue``, ``queue_many``, ``schedule``) onto its
    storage, plus supervision, inspection and stopping. With no arbiter
    processes it is a producer only: it queues and inspects, and runs nothing.

    Use it as a context manager, or call ``stop``; ``run_forever`` blocks until
    SIGTERM or SIGINT and then stops gracefully. After ``stop`` every call
    raises ManagerStopped.
    """

    def __init__(self, *, storage: Storage, spec: ArbiterSpec, processes: int) -> None:
        """Use ``WorkerConfig.start``, which freezes a config into ``spec``."""
        relay = _Relay()
        self._storage = StorageActor.start(
            storage, on_timeout=relay.timed_out, on_cancel=relay.cancelled
        )
        try:
            self._storage.ask(Opened())
        except BaseException:
            self._storage.stop()
            raise
        shared = storage.poll_interval is not None
        served = frozenset(q for q, n in spec.queues if n > 0 and processes > 0)
        self._host = _HostTransport(self._storage, None if shared else served)
        super().__init__(self._host)
        self._recurring = Recurring(self.queue)
        self._actor = ManagerActor.start(spec, processes, self._storage)
        relay.target = self._actor
        self._stopped = False
        self._stop_lock = threading.Lock()

    def _check(self, call: str) -> None:
        if self._stopped:
            raise ManagerStopped(call)

    # -- queueing ---------------------------------------------------------------------

    def queue(self, job: Job, **options: Any) -> uuid.UUID:
        self._check("queue")
        return super().queue(job, **options)

    def queue_many(self, jobs: Iterable[Job]) -> list[uuid.UUID]:
        self._check("queue_many")
        return super().queue_many(jobs)

    def schedule(self, job: Job, at: Any, **options: Any) -> uuid.UUID:
        self._check("schedule")
        return super().schedule(job, at, **options)

    @property
    def aio(self) -> AsyncHandle:
        """The queueing calls as coroutines, for asyncio code: ``await
        manager.aio.queue(job)`` never blocks the caller's event loop."""
        self._check("aio")
        return AsyncHandle(self._storage, self._check, self._host.warn_unserved)

    @property
    def handle(self) -> QueueHandle:
        """A plain QueueHandle onto the same storage, to hand to other code."""
        self._check("handle")
        return QueueHandle(self._host)

    def every(self, interval: dt.timedelta | float, job: Job) -> None:
        """Queue ``job`` every ``interval``, first after one interval, until stop."""
        self._check("every")
        if isinstance(interval, dt.timedelta):
            seconds = interval.total_seconds()
        elif isinstance(interval, int | float) and not isinstance(interval, bool):
            seconds = float(interval)
        else:
            raise TypeError(f"every() takes a timedelta or seconds, got {type(interval).__name__}")
        self._recurring.add(seconds, check_job(job, "every()"))

    # -- inspecting -------------------------------------------------------------------

    def info(self, job_id: uuid.UUID | str) -> JobInfo | None:
        """The job's record, or None: never queued, or its record expired (an
        ended job's is kept for its RESULT_TTL)."""
        self._check("info")
        return cast(JobInfo | None, self._storage.ask(Info(parse_job_id(job_id))))

    # -- results and cancelling ---------------------------------------------------

    def wait(self, job_id: uuid.UUID | str, timeout: float | None = None) -> object:
        """Block until the job ends; returns what its ``run`` returned.

        Raises JobFailed (it is dead), JobCancelled, TimeoutError, or
        JobNotFound for an id never queued or whose record expired. A job that
        ended before the call is answered from its kept record at once.
        """
        self._check("wait")
        return waiting.wait(self._storage, parse_job_id(job_id), timeout)

    def as_completed(
        self, job_ids: Iterable[uuid.UUID | str], timeout: float | None = None
    ) -> Iterator[tuple[uuid.UUID, Ended]]:
        """Yield ``(id, ended)`` as each job ends, in the order they end;
        ``ended.status`` says how, ``ended.value()`` what it returned. Raises
        JobNotFound for an unknown id and TimeoutError after ``timeout`` s."""
        self._check("as_completed")
        ids = [parse_job_id(job_id) for job_id in job_ids]
        return waiting.as_completed(self._storage, ids, timeout)

    def cancel(self, job_id: uuid.UUID | str, *, grace: float = CANCEL_GRACE) -> bool:
        """Cancel a job; False if it has already ended or has no record.

        A pending or scheduled job is cancelled at once and never runs. A
        running one is asked to stop (``current_job().cancelled`` turns true,
        then its thread gets JobInterrupted; an async job's task is
        cancelled); one still running ``grace`` s later is stopped for real,
        with its arbiter. Either way it is never retried.
        """
        self._check("cancel")
        job = parse_job_id(job_id)
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not grace >= 0:
            raise ValueError(f"cancel() grace must be a number of seconds >= 0; got {grace!r}")
        reason = "cancelled by Manager.cancel()"
        answer = self._storage.ask(Cancel(job, reason))
        status, runner = cast(tuple[Status | None, str | None], answer)
        if status is Status.RUNNING and runner is not None:
            # Ours, or another host's (a shared storage told it already).
            self._actor.tell(_CancelRunning(runner, job, reason, float(grace)))
        return status in (Status.PENDING, Status.RUNNING)

    def dead_jobs(self, queue: str | None = None, *, limit: int = 1000) -> list[JobInfo]:
        self._check("dead_jobs")
        return cast(list[JobInfo], self._storage.ask(ListJobs(queue, Status.DEAD, 0, limit)))

    def requeue(self, job_id: uuid.UUID | str) -> bool:
        """Give a dead job a fresh set of retries, due now."""
        self._check("requeue")
        return cast(bool, self._storage.ask(Requeue(parse_job_id(job_id))))

    def purge_dead(self, older_than: dt.timedelta | float | None = None) -> int:
        self._check("purge_dead")
        seconds = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        return cast(int, self._storage.ask(PurgeDead(seconds)))

    def stats(self) -> ManagerStats:
        self._check("stats")
        stored = cast(dict[str, QueueStats], self._storage.ask(Stats()))
        return ManagerStats(
            queues={
                q: QueueFigures(
                    pending=s.pending, running=s.running, dead=s.dead, scheduled=s.scheduled
                )
                for q, s in stored.items()
            },
            arbiters=cast(tuple[ArbiterStats, ...], self._actor.ask(_Snapshot())),
        )

    def join(self, timeout: float | None = None) -> None:
        """Block until no job is due or running.

        Jobs scheduled for later (``schedule``, not yet due and never run) do
        not count; retries waiting out their backoff do. Raises TimeoutError
        after ``timeout`` seconds, and CrashLoopError once every arbiter is in a
        crash loop (3 deaths in a row at start-up) and has died at start-up
        again since join began: nothing would ever run.
        """
        self._check("join")
        first = _First()
        self._storage.tell(WhenIdle(lambda _: first.set(None)))
        self._actor.tell(_WhenCrashLooping(first.set))
        if not first.wait(timeout):
            raise TimeoutError(f"jobs still due or running after {timeout} s")
        if first.value is not None:
            raise first.value

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

    def run_forever(self, grace: float = 30.0, *, crash_loop_exit: float = 10.0) -> None:
        """Block until SIGTERM or SIGINT, then stop with ``grace`` seconds for
        running jobs; a second signal ends them at once (put back unexecuted).

        Raises CrashLoopError, after stopping, once every arbiter has been in
        a crash loop for ``crash_loop_exit`` seconds: a service that can run
        no job should fail where its supervisor (systemd, Kubernetes) sees it.
        """
        self._check("run_forever")
        wake = threading.Event()
        signals: list[int] = []
        failed: CrashLoopError | None = None

        def on_signal(signum: int, frame: FrameType | None) -> None:
            signals.append(signum)
            name = signal.Signals(signum).name
            if len(signals) == 1:
                log.info("signal received, stopping", signal=name)
            else:
                log.warning("second signal: running jobs go back now", signal=name)
                self._actor.tell(_GiveUp())
            wake.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not signals:
                self._actor.tell(_WhenCrashLooping(lambda _: wake.set()))
                wake.wait()
                if signals:
                    break
                # A crash loop: a short grace to recover (a database back up).
                wake.clear()
                if wake.wait(crash_loop_exit) and signals:
                    break
                failed = cast(CrashLoopError | None, self._actor.ask(_CrashLooping()))
                if failed is not None:
                    log.error("giving up: every arbiter is in a crash loop", error=str(failed))
                    break
                wake.clear()
        finally:
            try:
                self.stop(timeout=grace)
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        if failed is not None:
            raise failed

    def __enter__(self) -> Manager:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
