"""Arbiter: the actor that runs inside each arbiter process.

Contract: it starts ``count`` Worker actors for every configured queue, each
queue's behind one ThreadExecutor (credits, buffer), says Ready once every
worker has built its state, and heartbeats every job it holds (buffered or
running) in one Beat per interval. Scale starts or retires a queue's slots
without a restart; StopJob raises JobInterrupted in that one job's thread
(cancels its task, for an async job): at its TIMEOUT, or for a cancel, which
also turns the job's ``current_job().cancelled`` True and ends it CANCELLED
(a cancel of a job it holds but has not begun keeps it from running). Every
job runs through actors/job_run.py, with the spec's middleware. On Stop it
hands its buffers back, lets every worker finish its job, says Bye and ends
the process. If the spec's names cannot be imported, or a
worker cannot build its state, it says Fatal and ends the process with exit
code 3; the host's Manager restarts it.

``main`` is the process's entry point: it reads the Spec (the first
message), imports what it names, and its main thread then reads frames from
the host and hands each message to its executor or actor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import pykka
import setproctitle

from actors.async_worker import AsyncWorker, EventLoop, QueueState
from actors.executor import InFlight, Running, Slot, ThreadExecutor
from actors.middleware import Middleware
from actors.protocol import (
    UNKNOWN_PARENT,
    Answer,
    Beat,
    Bye,
    Deliver,
    Fatal,
    LoopBlocked,
    ProtocolError,
    PushJobs,
    Ready,
    Recycling,
    Scale,
    Slots,
    Spec,
    Stop,
    StopJob,
    WaitJob,
    decode,
    encode,
)
from actors.refs import load, resolve
from actors.stalls import Stalls
from actors.waiters import Ended
from actors.wire import FrameError, FrameWriter, pack_new_job, read_frames
from actors.worker import (
    Recycle,
    RetireWorker,
    Shared,
    StopWorker,
    Worker,
    WorkerFailed,
    WorkerReady,
    WorkerRetired,
    WorkerStopped,
    describe,
)
from storage import Job, NewJob, Status
from storage.dependencies import UnknownParent

EXIT_FATAL = 3
REQUEST_TIMEOUT = 60.0
RSS_CHECK_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class ArbiterSpec:
    """Everything an arbiter process needs, sent as its first frame. Job
    classes travel as ``module:qualname``, factories pickled: both are
    imported by name (see actors/refs.py)."""

    index: int
    runner: str
    jobs: tuple[str, ...]
    queues: tuple[tuple[str, int], ...]
    state_factory: bytes  # see actors.refs.portable
    handle_factory: bytes  # builds the QueueHandle from a transport
    heartbeat_interval: float
    sys_path: tuple[str, ...]  # the host's, so the same modules import
    max_rss: int | None = None  # bytes
    max_jobs: int | None = None
    prefetch: int = 0  # jobs each queue may hold beyond its workers (see executor.py)
    async_queues: tuple[str, ...] = ()  # their slots run on the arbiter's event loop
    middleware: bytes = b""  # a pickled tuple of Middleware; empty: none

    def to_wire(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> ArbiterSpec:
        raw = dict(raw)
        raw["jobs"] = tuple(raw["jobs"])
        raw["queues"] = tuple((q, n) for q, n in raw["queues"])
        raw["sys_path"] = tuple(raw["sys_path"])
        raw["async_queues"] = tuple(raw.get("async_queues", ()))
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class Imported:
    """What an ArbiterSpec names, imported."""

    jobs: dict[str, type[Job]]
    state_factory: Callable[[Any], Any]
    handle_factory: Callable[[Any], Any]
    middleware: tuple[Middleware, ...] = ()

    @classmethod
    def of(cls, spec: ArbiterSpec) -> Imported:
        jobs: dict[str, type[Job]] = {}
        for ref in spec.jobs:
            job = resolve(ref)
            jobs[job.NAME] = job
        middleware = load_middleware(spec.middleware)
        return cls(jobs, load(spec.state_factory), load(spec.handle_factory), middleware)


def load_middleware(data: bytes) -> tuple[Middleware, ...]:
    """What ``WorkerConfig(middleware=...)`` packed into a spec."""
    return tuple(load(data)) if data else ()


@dataclass(frozen=True, slots=True)
class StopArbiter:
    pass


@dataclass(frozen=True, slots=True)
class ScaleSlots:
    """Give ``queue`` ``count`` worker slots in this arbiter, without a restart."""

    queue: str
    count: int


class LinkTransport:
    """A QueueHandle's transport inside an arbiter: pushes jobs to the host
    over the link, and waits there for a job's end (``wait``)."""

    def __init__(self, link: FrameWriter) -> None:
        self._link = link
        self._ids = itertools.count()
        self._waiting: dict[int, pykka.ThreadingFuture[tuple[bool, Any]]] = {}
        self._lock = threading.Lock()

    def push(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        future: pykka.ThreadingFuture[tuple[bool, Any]] = pykka.ThreadingFuture()
        with self._lock:
            request = next(self._ids)
            self._waiting[request] = future
        self._link.send(encode(PushJobs(request, [pack_new_job(job) for job in jobs])))
        ok, payload = future.get(timeout=REQUEST_TIMEOUT)
        if not ok:
            if isinstance(payload, list) and payload[:1] == [UNKNOWN_PARENT]:
                raise UnknownParent(uuid.UUID(bytes=payload[1]))
            raise RuntimeError(f"the host refused the jobs: {payload}")
        return [uuid.UUID(bytes=raw) for raw in payload]

    def wait(self, job_id: uuid.UUID, timeout: float | None) -> Ended | None:
        """How ``job_id`` ended, once it has (None: no record); TimeoutError
        after ``timeout`` s. The host answers as its StorageActor settles it."""
        future: pykka.ThreadingFuture[tuple[bool, Any]] = pykka.ThreadingFuture()
        with self._lock:
            request = next(self._ids)
            self._waiting[request] = future
        self._link.send(encode(WaitJob(request, job_id.bytes)))
        try:
            _, payload = future.get(timeout=timeout)
        except pykka.Timeout:
            with self._lock:
                self._waiting.pop(request, None)
            raise TimeoutError(f"job {job_id} did not end within {timeout:g} s") from None
        if payload is None:
            return None
        status, error, result = payload
        return Ended(job_id, Status(status), error, result)

    def answer(self, request: int, ok: bool, payload: Any) -> None:
        with self._lock:
            future = self._waiting.pop(request, None)
        if future is not None:
            future.set((ok, payload))


class Arbiter(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        spec: ArbiterSpec,
        imported: Imported,
        link: FrameWriter,
        sock: socket.socket,
        transport: LinkTransport,
    ) -> None:
        super().__init__()
        self._spec = spec
        self._imported = imported
        self._link = link
        self._sock = sock
        self._transport = transport
        self._in_flight = self.in_flight = InFlight()
        self.running = Running()
        self._stalls = Stalls()
        self.executors = {queue: self._executor(queue) for queue, _ in spec.queues}
        self._ready_workers: set[int] = set()
        self._stopped_workers: set[int] = set()
        self._quit = threading.Event()
        self._stopping = False
        self._started_up = False
        self._indexes = itertools.count()
        self._handle: Any = None
        self.workers: dict[int, tuple[str, Slot]] = {}  # index: (queue, worker)
        self._loop: EventLoop | None = None  # made for the first async queue
        self._queue_states: dict[str, QueueState] = {}
        self._retiring: dict[str, int] = {}  # per queue: slots retired, workers not ended

    def on_start(self) -> None:
        self._handle = self._imported.handle_factory(self._transport)
        for queue, count in self._spec.queues:
            self._add_workers(queue, count)
        if not self.workers:
            self._started_up = True
            self._link.send(encode(Ready()))  # an arbiter of no workers is ready at once
        threading.Thread(target=self._monitor, name="jobarbiter-monitor", daemon=True).start()

    def on_receive(self, message: Any) -> Any:
        match message:
            case StopArbiter():
                self._stop_workers()
            case Recycle(reason):
                if not self._stopping:
                    # The host drains this runner before it reads anything
                    # the workers send after this.
                    self._link.send(encode(Recycling(reason)))
                    self._stop_workers()
            case ScaleSlots(queue, count):
                if not self._stopping:
                    self._scale(queue, count)
            case WorkerReady(index):
                self._ready_workers.add(index)
                if not self._started_up and self._ready_workers >= set(self.workers):
                    # Past start-up: a death from now on is not a crash loop.
                    self._started_up = True
                    self._link.send(encode(Ready()))
            case WorkerRetired(index):
                queue, _ = self.workers.pop(index)
                self._retiring[queue] -= 1
                self._report_slots(queue)
                self._maybe_leave()
            case WorkerStopped(index):
                self._stopped_workers.add(index)
                self._maybe_leave()
            case WorkerFailed(_, error):
                self._link.send(encode(Fatal(error)), wait=True)
                os._exit(EXIT_FATAL)
        return None

    def _executor(self, queue: str) -> ThreadExecutor:
        return ThreadExecutor(
            queue,
            self._spec.prefetch,
            self._link,
            self._in_flight,
            self._stalls,
            running=self.running,
        )

    def _add_workers(self, queue: str, count: int) -> None:
        executor = self.executors.get(queue)
        if executor is None:
            # A queue new to this arbiter: the main thread finds it here.
            executor = self.executors[queue] = self._executor(queue)
        shared = Shared(
            executor=executor,
            jobs=self._imported.jobs,
            link=self._link,
            in_flight=self._in_flight,
            running=self.running,
            arbiter=self.actor_ref,
            max_jobs=self._spec.max_jobs,
            middleware=self._imported.middleware,
        )
        if queue in self._spec.async_queues:
            self._add_async_workers(queue, count, shared)
            return
        for _ in range(count):
            index = next(self._indexes)
            worker = Worker.start(
                index=index,
                shared=shared,
                state_factory=self._imported.state_factory,
                handle=self._handle,
            )
            self.workers[index] = (queue, worker)

    def _add_async_workers(self, queue: str, count: int, shared: Shared) -> None:
        if self._loop is None:
            link = self._link

            def blocked(job: str | None, seconds: float) -> None:
                link.send(encode(LoopBlocked(job, seconds)))

            self._loop = EventLoop(blocked)
        state = self._queue_states.get(queue)
        if state is None:
            state = self._queue_states[queue] = QueueState(
                self._imported.state_factory, self._handle
            )
        for _ in range(count):
            index = next(self._indexes)
            worker = AsyncWorker(index=index, shared=shared, state=state, loop=self._loop)
            self.workers[index] = (queue, worker)
            worker.start()

    def _scale(self, queue: str, count: int) -> None:
        """Give ``queue`` ``count`` slots: start workers, or retire some (an
        idle one at once, a busy one once its job ends)."""
        current = sum(q == queue for q, _ in self.workers.values())
        current -= self._retiring.get(queue, 0)
        if count > current:
            self._add_workers(queue, count - current)
        elif count < current:
            self._retiring[queue] = self._retiring.get(queue, 0) + current - count
            for worker in self.executors[queue].retire(current - count):
                worker.tell(RetireWorker())
        self._report_slots(queue)

    def _report_slots(self, queue: str) -> None:
        slots = sum(q == queue for q, _ in self.workers.values())
        self._link.send(encode(Slots(queue, slots)))

    def _maybe_leave(self) -> None:
        if self._stopping and self._stopped_workers >= set(self.workers):
            self._leave()

    def _stop_workers(self) -> None:
        self._stopping = True
        for executor in self.executors.values():
            executor.close()  # what is buffered goes back at once
        for _, worker in self.workers.values():
            worker.tell(StopWorker())
        self._maybe_leave()

    def _leave(self) -> None:
        self._quit.set()
        # Waits for a worker's flush in flight too: the process ends next, and
        # a completion cut off here would make a finished job run again.
        self._link.send(encode(Bye()), wait=True)
        # Ends the main thread's read loop, and with it the process.
        self._sock.shutdown(socket.SHUT_RD)

    def _monitor(self) -> None:
        """Heartbeat the running jobs once per interval; watch the memory limit."""
        spec = self._spec
        tick = spec.heartbeat_interval
        if spec.max_rss is not None:
            tick = min(tick, RSS_CHECK_INTERVAL)
        me = psutil.Process()
        last_beat = time.monotonic()
        while not self._quit.wait(tick):
            if time.monotonic() - last_beat >= spec.heartbeat_interval:
                last_beat = time.monotonic()
                held = self._in_flight.snapshot()
                if held:
                    self._link.send(encode(Beat(held)))
            if spec.max_rss is not None:
                rss = me.memory_info().rss
                if rss > spec.max_rss:
                    self.actor_ref.tell(Recycle(f"rss {rss} bytes > max_rss {spec.max_rss}"))


def main() -> None:
    """The arbiter process's entry point (see actors/launch.py): ``argv[1]`` is
    the socket to the host, ``argv[2]`` the pipe end whose closing tells the
    host this process ended."""
    # Ctrl-C reaches the whole process group; the host decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Held open until the process ends, never by a job's own subprocesses.
    os.set_inheritable(int(sys.argv[2]), False)
    sock = socket.socket(fileno=int(sys.argv[1]))
    link = FrameWriter(sock)
    frames = read_frames(sock)
    try:
        first, *backlog = next(frames)
        message = decode(first)
        if not isinstance(message, Spec):
            raise ProtocolError(f"expected the Spec first, got {first[0]!r}")
        spec = ArbiterSpec.from_wire(message.fields)
        setproctitle.setproctitle(f"jobarbiter arbiter {spec.index}")
        sys.path[:] = spec.sys_path
        imported = Imported.of(spec)
    except Exception as exc:
        with contextlib.suppress(OSError):  # the host may be gone already
            link.send(encode(Fatal(f"arbiter could not start: {describe(exc)}")), wait=True)
        os._exit(EXIT_FATAL)
    _serve(spec, imported, sock, link, itertools.chain([backlog], frames))


def _serve(
    spec: ArbiterSpec,
    imported: Imported,
    sock: socket.socket,
    link: FrameWriter,
    frames: Iterator[list[Any]],
) -> None:
    """Run the Arbiter, handing each message from the host to its actor."""
    transport = LinkTransport(link)
    arbiter = Arbiter.start(spec, imported, link, sock, transport)
    executors: dict[str, ThreadExecutor] = arbiter.proxy().executors.get()
    running: Running = arbiter.proxy().running.get()
    in_flight: InFlight = arbiter.proxy().in_flight.get()
    try:
        for messages in frames:
            arrived: dict[str, list[Deliver]] = {}
            for raw in messages:
                message = decode(raw)
                if isinstance(message, Deliver):
                    # Handed over together, after the frame or before any
                    # other message: one Started write for them all.
                    arrived.setdefault(message.queue, []).append(message)
                    continue
                if arrived:
                    _hand_over(executors, arrived)
                if isinstance(message, Answer):
                    transport.answer(message.request, message.ok, message.payload)
                elif isinstance(message, StopJob):
                    running.interrupt(
                        message.job_id,
                        message.reason,
                        cancel=message.cancel,
                        held=message.job_id in in_flight,
                    )
                elif isinstance(message, Scale):
                    arbiter.tell(ScaleSlots(message.queue, message.slots))
                elif isinstance(message, Stop):
                    arbiter.tell(StopArbiter())
                else:
                    raise ProtocolError(f"an arbiter is not sent {raw[0]!r}")
            if arrived:
                _hand_over(executors, arrived)
    except (OSError, FrameError, ProtocolError):
        # The host is gone or spoke garbage: nothing here can be trusted to
        # reach it, so the process ends and the host (if alive) restarts it.
        os._exit(EXIT_FATAL)


def _hand_over(executors: dict[str, ThreadExecutor], arrived: dict[str, list[Deliver]]) -> None:
    for queue, jobs in arrived.items():
        executors[queue].arrived(jobs)
    arrived.clear()
