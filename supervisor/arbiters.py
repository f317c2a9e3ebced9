"""ManagerActor: the supervising actor of a host's arbiter processes.

It spawns each arbiter (``spawn`` start method), learns of a death the
moment the process ends (its sentinel, watched by one thread blocked in
``wait``), releases the dead arbiter's jobs as failed attempts and restarts
it after a backoff. It stops a single job at its TIMEOUT or for a cancel
(asking first, killing its arbiter after a grace), scales a queue's slots
in every arbiter without a restart, and reports each arbiter's figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing.connection
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import psutil
import pykka

from actors.arbiter import EXIT_FATAL, ArbiterSpec, load_middleware
from actors.host_link import HostLink
from actors.launch import ArbiterProcess, spawn
from actors.middleware import ArbiterDied, died
from actors.ops import Batch, Complete, DoneCounts, Drain, Info, Retire
from actors.storage_actor import Rounds
from actors.tally import timeout_error
from storage import JobInfo, JobResult, Outcome
from storage.events import EventLog, last_line
from supervisor.errors import CrashLoopError
from supervisor.stats import ArbiterState, ArbiterStats, InFlight

log = EventLog("manager")

_NO_SLOTS: MappingProxyType[str, int] = MappingProxyType({})

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
    slots: dict[str, int] = field(default_factory=dict)  # per queue, as its arbiter says
    # Kept between snapshots: its cpu_percent() is the use since the call before.
    measured: psutil.Process | None = None


@dataclass(frozen=True, slots=True)
class _SlotsReported:
    index: int
    runner: str
    queue: str
    slots: int


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
class BeginStop:
    done: Callable[[bool], None]


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The grace period is over: put back what is running, then kill."""


@dataclass(frozen=True, slots=True)
class _TimedOut:
    runner: str
    job_id: uuid.UUID
    timeout: float


@dataclass(frozen=True, slots=True)
class ScaleQueue:
    """Give ``queue`` ``count`` worker slots in every arbiter, now and after
    a restart, without restarting any (``Manager.set_worker_count``)."""

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
class CancelRunning:
    """Stop a running job for a cancel, if ``runner`` is one of ours: ask,
    then stop it for real after ``grace`` s."""

    runner: str
    job_id: uuid.UUID
    reason: str
    grace: float


class Relay:
    """Passes the StorageActor's reports (a TIMEOUT passed; another host
    cancelled a running job) to the ManagerActor, which starts after it (it
    needs the StorageActor's ref)."""

    def __init__(self) -> None:
        self.target: pykka.ActorRef[Any] | None = None

    def timed_out(self, runner: str, job_id: uuid.UUID, timeout: float) -> None:
        self._tell(_TimedOut(runner, job_id, timeout))

    def cancelled(self, job_id: uuid.UUID, runner: str, reason: str) -> None:
        # The grace is this host's default: the cancel's own stays with its caller.
        self._tell(CancelRunning(runner, job_id, reason, CANCEL_GRACE))

    def _tell(self, message: object) -> None:
        if self.target is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                self.target.tell(message)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Answered with a Supervised: every arbiter's figures, and the slots
    each should have per queue."""


class Supervised(NamedTuple):
    arbiters: tuple[ArbiterStats, ...]
    workers: dict[str, int]


@dataclass(frozen=True, slots=True)
class WhenCrashLooping:
    """Call ``done(error)`` once every arbiter is in a crash loop that goes on."""

    done: Callable[[CrashLoopError], None]


@dataclass(frozen=True, slots=True)
class CrashLooping:
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
            case BeginStop(done):
                self._begin_stop(done)
            case GiveUp():
                self._stopping = True  # what ends now is not restarted
                for slot in self._alive():
                    assert slot.process is not None
                    # Back in storage first, so nothing depends on the kill.
                    self._storage.ask(Retire(slot.runner, JobResult.unexecuted()))
                    slot.process.kill()
            case _TimedOut(runner, job_id, timeout):
                self._timed_out(runner, job_id, timeout)
            case CancelRunning(runner, job_id, reason, grace):
                self._cancel_running(runner, job_id, reason, grace)
            case _StopOverdue(runner, job_id, result):
                self._stop_overdue(runner, job_id, result)
            case ScaleQueue(queue, count):
                self._scale(queue, count)
            case _SlotsReported(index, runner, queue, slots):
                slot = self._slots[index]
                if slot.runner == runner:
                    slot.slots[queue] = slots
            case Snapshot():
                return self._snapshot()
            case WhenCrashLooping(done):
                self._crash_waiters.append((done, tuple(s.start_failures for s in self._slots)))
            case CrashLooping():
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
            lambda queue, slots: me.tell(_SlotsReported(index, runner, queue, slots)),
        )
        link.start()
        slot.process, slot.link, slot.runner = process, link, runner
        slot.slots = dict(spec.queues)  # what it starts with
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
        reason = timeout_error(timeout)
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

    def _snapshot(self) -> Supervised:
        done = cast(dict[str, int], self._storage.ask(DoneCounts()))
        figures = []
        for slot in self._slots:
            process = slot.process
            alive = process is not None and process.exitcode is None
            rss = cpu = None
            if alive and process is not None and process.pid is not None:
                try:
                    rss, cpu = self._measure(slot, process.pid)
                except psutil.Error:
                    alive = False
            link = slot.link
            in_flight = () if link is None or not alive else link.running()
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
                    slots=MappingProxyType(dict(slot.slots)) if alive else _NO_SLOTS,
                    cpu=cpu,
                    in_flight=tuple(
                        InFlight(id=job, queue=queue, name=name, seconds=seconds)
                        for job, queue, name, seconds in in_flight
                    ),
                )
            )
        return Supervised(tuple(figures), dict(self._spec.queues))

    @staticmethod
    def _measure(slot: _Slot, pid: int) -> tuple[int, float | None]:
        """The arbiter's RSS, and its CPU percent since the last snapshot
        (None at the first one of this process)."""
        measured = slot.measured
        first = measured is None or measured.pid != pid
        if first:
            measured = slot.measured = psutil.Process(pid)
        assert measured is not None
        with measured.oneshot():
            rss = measured.memory_info().rss
            cpu = measured.cpu_percent(interval=None)
        return rss, None if first else cpu
