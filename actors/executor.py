"""ThreadExecutor: one queue's slots in an arbiter, a worker thread each.

Contract: it asks the host for jobs by credits, ``Want(queue, n)``, so that
what it holds (running, buffered, asked for and not yet arrived) never passes
its ready workers plus a margin. The margin is ``prefetch``; for a queue
whose jobs end fast it is deeper, as deep as its workers get through in
``FAST_WINDOW`` at the jobs' recent mean duration, at most ``FAST_CEILING``:
a buffered job waits about that long at most, while credits and deliveries
travel in batches. ``prefetch=0`` means no margin at all.

A job that arrives goes to an idle worker at once, or waits in the buffer,
in arrival order (the host hands jobs out in ``run_at`` order). A worker
that finishes takes the next buffered job itself, with no hand-off. Jobs of
a queue whose jobs are tiny wait for the running workers instead of waking
an idle one each, as many as those get through in ``FAST_WINDOW``;
actors/stalls.py hands them out if those stall.

Whoever starts a job writes its ``Started`` first: ``arrived`` for the jobs
it hands to idle workers (one write for a frame's worth), the worker for a
job it takes from the buffer. A buffered job has not started: ``close``
hands the buffer back as unexecuted, and the host, which hears ``Started``
only when a job is handed to a worker, puts it back unexecuted if the
arbiter dies.

Its slots can be scaled live: new workers join with ``ready``, ``retire``
takes slots away (an idle worker at once, a busy one when its job ends).

Every method is safe from any thread: the arbiter's main thread calls
``arrived``, the workers ``ready`` and ``finished``, the arbiter ``retire``
and ``close``, the stall watch ``unstall``.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections import deque
from typing import Any, Protocol

from actors.protocol import Deliver, Done, Started, Want, encode
from actors.stalls import Stalls
from actors.wire import FrameWriter


class Slot(Protocol):
    """A worker as the executor sees it: it is told the job to run."""

    def tell(self, message: Any) -> None: ...


# The margin for fast jobs: what the workers run in this long, by estimate.
FAST_WINDOW = 0.002
FAST_CEILING = 64
# Jobs this short (16 fit in the window) go to running workers, not idle ones.
TINY_JOBS_IN_WINDOW = 16
_SMOOTHING = 0.2  # weight of the latest job in the mean duration


class Retired:
    """What ``finished`` gives a worker whose slot is being retired."""


RETIRED = Retired()


class InFlight:
    """The ids of the jobs this arbiter holds, buffered or running (for its
    heartbeat), and how many it has finished (for recycling)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[bytes] = set()
        self.finished = 0

    def add_many(self, job_ids: list[bytes]) -> None:
        with self._lock:
            self._ids.update(job_ids)

    def discard(self, job_id: bytes, *, ran: bool) -> int:
        """Forget a job; returns how many have run to their end so far."""
        with self._lock:
            self._ids.discard(job_id)
            self.finished += ran
            return self.finished

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._ids

    def snapshot(self) -> list[bytes]:
        with self._lock:
            return list(self._ids)


class ThreadExecutor:
    def __init__(
        self,
        queue: str,
        prefetch: int,
        link: FrameWriter,
        in_flight: InFlight,
        stalls: Stalls | None = None,
        *,
        running: Running | None = None,
    ) -> None:
        self.queue = queue
        self._running_jobs = running  # where a cancel of a buffered job is kept
        self._stalls = stalls  # without one, every job goes to an idle worker at once
        self._prefetch = prefetch
        self._link = link
        self._in_flight = in_flight
        self._lock = threading.Lock()
        self._buffer: deque[Deliver] = deque()
        self._idle: list[Slot] = []
        self._ready = 0  # workers that built their state, less those retired
        self._retiring = 0  # busy workers to retire when their job ends
        self._running = 0
        self._asked = 0  # credits sent, jobs not arrived yet
        self._closed = False
        self._mean: float | None = None  # recent mean seconds a job ran
        self._ended = 0  # jobs finished, ever
        self._seen = -1  # _ended at the last look of the stall watch

    # -- the workers -------------------------------------------------------------

    def ready(self, worker: Slot) -> None:
        """A worker built its state and is idle."""
        with self._lock:
            self._ready += 1
            self._idle.append(worker)
            want = self._credit()
        self._ask(want, flush=True)

    def finished(self, worker: Slot, seconds: float) -> Deliver | Retired | None:
        """``worker`` ended a job that ran ``seconds``: the next buffered job
        for it, RETIRED if it is one of the slots being retired, or None (idle).

        Any credits it frees are buffered on the link, to leave with the
        finished job's Done (the caller flushes).
        """
        with self._lock:
            mean = self._mean
            self._mean = seconds if mean is None else mean + _SMOOTHING * (seconds - mean)
            self._ended += 1
            self._running -= 1
            if self._retiring:
                self._retiring -= 1
                job: Deliver | Retired | None = RETIRED
            elif self._buffer and not self._closed:
                job = self._buffer.popleft()
                self._running += 1
            else:
                job = None
                self._idle.append(worker)
            want = self._credit()
        self._ask(want, flush=False)
        return job

    # -- the host -----------------------------------------------------------------

    def arrived(self, jobs: list[Deliver]) -> None:
        """Delivered jobs, in order: each to an idle worker, or into the buffer.

        A job handed to an idle worker starts now: its Started is written
        here, one write for all of them, before any of those workers is told
        (a job that kills its process must be known to have started). A
        buffered job is announced by the worker that takes it.
        """
        handed: list[tuple[Slot, Deliver]] = []
        refused: list[Deliver] = []
        self._in_flight.add_many([job.job_id for job in jobs])
        with self._lock:
            for job in jobs:
                self._asked = max(self._asked - 1, 0)
                if self._closed or self._ready == 0:  # stopping, or scaled to 0
                    refused.append(job)
                elif self._idle and not self._keep_for_running():
                    self._running += 1
                    handed.append((self._idle.pop(), job))
                else:
                    self._buffer.append(job)
            deferred = bool(self._idle and self._buffer)
        self._hand_back(refused)
        self._start(handed)
        if deferred and self._stalls is not None:
            self._stalls.watch(self)

    def unstall(self) -> bool:
        """Called by the stall watch: if no job ended since its last look,
        hand buffered jobs to the idle workers. Returns whether jobs are still
        held back from idle workers (to be looked at again)."""
        handed: list[tuple[Slot, Deliver]] = []
        with self._lock:
            if self._ended == self._seen and not self._closed:
                while self._idle and self._buffer:
                    self._running += 1
                    handed.append((self._idle.pop(), self._buffer.popleft()))
            self._seen = self._ended
            deferred = bool(self._idle and self._buffer)
        self._start(handed)
        return deferred

    def _keep_for_running(self) -> bool:
        """Whether a job that arrives should wait for a running worker rather
        than wake an idle one (under the lock): only tiny jobs, and only as
        many as the running workers get through in FAST_WINDOW."""
        if not self._running or not self._tiny():
            return False  # not tiny: a wake costs little beside the job
        assert self._mean is not None
        return (len(self._buffer) + 1) * self._mean <= FAST_WINDOW * self._running

    def _tiny(self) -> bool:
        """Whether this queue's jobs are tiny, and wait for running workers."""
        mean = self._mean
        return (
            self._stalls is not None
            and mean is not None
            and mean * TINY_JOBS_IN_WINDOW <= FAST_WINDOW
        )

    def _start(self, handed: list[tuple[Slot, Deliver]]) -> None:
        """Tell each worker its job, once their Started are written."""
        if handed:
            link = self._link
            link.buffer_many([encode(Started(job.job_id)) for _, job in handed])
            link.flush(wait=True)
            for worker, job in handed:
                worker.tell(job)

    def retire(self, count: int) -> list[Slot]:
        """Have ``count`` fewer slots: returns the idle workers to stop now;
        busy ones retire as they finish their job (``finished``)."""
        with self._lock:
            now = self._idle[len(self._idle) - min(count, len(self._idle)) :]
            del self._idle[len(self._idle) - len(now) :]
            self._retiring += count - len(now)
            self._ready -= count
            stranded = list(self._buffer) if self._ready <= 0 else []
            if stranded:
                self._buffer.clear()
        self._hand_back(stranded)  # no slot left to run them
        return now

    def close(self) -> None:
        """Take no more jobs and hand the buffer back unexecuted; a worker that
        finishes its job stays idle from now on."""
        with self._lock:
            self._closed = True
            buffered, self._buffer = list(self._buffer), deque()
        self._hand_back(buffered)

    # -- inside ---------------------------------------------------------------------

    def _credit(self) -> tuple[int, int]:
        """Credits to ask for now, and how many workers are idle (under the
        lock); counts the credits as asked."""
        if self._closed:
            return 0, 0
        held = self._running + len(self._buffer) + self._asked
        margin = self._margin()
        want = self._ready + margin - held
        # A worker with nothing coming asks at once; refilling the buffer
        # waits until half of it is free, so that credits travel in batches.
        # Tiny jobs leave workers idle on purpose: only a queue with nothing
        # running, buffered or coming is starving then.
        if self._tiny():
            starving = not (self._asked or self._buffer or self._running)
        else:
            starving = len(self._idle) > self._asked
        if want <= 0 or (not starving and want < max(1, (margin + 1) // 2)):
            return 0, 0
        self._asked += want
        # Idle now: the host serves arbiters with idle workers first.
        return want, len(self._idle)

    def _margin(self) -> int:
        """Jobs to hold beyond the ready workers (under the lock)."""
        prefetch, mean = self._prefetch, self._mean
        if not prefetch or not mean or self._ready <= 0:
            return prefetch  # no margin asked for, or nothing known yet
        fast = int(FAST_WINDOW * self._ready / mean)
        return max(prefetch, min(fast, FAST_CEILING))

    def _ask(self, credit: tuple[int, int], *, flush: bool) -> None:
        want, idle = credit
        if not want:
            return
        message = encode(Want(self.queue, want, idle))
        if flush:
            self._link.send(message)
        else:
            self._link.buffer(message)

    def _hand_back(self, jobs: list[Deliver]) -> None:
        running = self._running_jobs
        for job in jobs:
            self._in_flight.discard(job.job_id, ran=False)
            # A buffered job whose cancel arrived ends cancelled: put back,
            # it would run later elsewhere.
            stop = running.take_stop(job.job_id) if running is not None and running.stops else None
            if stop is not None and stop[1]:
                self._link.buffer(encode(Done(job.job_id, "cancelled", stop[0], None)))
            else:
                self._link.buffer(encode(Done(job.job_id, "unexecuted", None, None)))
        if jobs:
            self._link.flush()


class JobInterrupted(BaseException):
    """Raised inside a running job's own thread to stop it (its TIMEOUT, or a
    cancel).

    A BaseException, so that a job's ``except Exception`` does not swallow it;
    a job blocked in C (a sleep, a socket) only sees it once it returns to
    Python, and is killed with its arbiter if it does not end in time.
    """


class Running:
    """Which thread (or task) runs which job, so that one job can be stopped
    alone; and why each job was stopped (its TIMEOUT, or a cancel)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[bytes, tuple[int, asyncio.Task[Any] | None]] = {}
        # Per job stopped: (reason, whether a cancel was asked). Read without
        # the lock on the hot path: empty unless a stop was asked.
        self.stops: dict[bytes, tuple[str, bool]] = {}

    def begin(self, job_id: bytes, task: asyncio.Task[Any] | None = None) -> None:
        """The calling thread starts running ``job_id``; an async job names
        its ``task``, which is cancelled (on its loop) instead of
        JobInterrupted."""
        with self._lock:
            self._threads[job_id] = (threading.get_ident(), task)

    def end(self, job_id: bytes) -> None:
        """It ended: no interruption can reach that thread for it after this."""
        with self._lock:
            self._threads.pop(job_id, None)

    def take_stop(self, job_id: bytes) -> tuple[str, bool] | None:
        """Why ``job_id`` was stopped, if it was, forgotten from now on:
        (reason, cancelled)."""
        with self._lock:
            return self.stops.pop(job_id, None)

    def cancelled(self, job_id: bytes) -> bool:
        """Whether a cancel was asked for ``job_id`` (live: JobContext.cancelled)."""
        stop = self.stops.get(job_id)
        return stop is not None and stop[1]

    def interrupt(
        self, job_id: bytes, reason: str, *, cancel: bool = False, held: bool = False
    ) -> bool:
        """Stop the job: JobInterrupted in its thread, or its task cancelled;
        False if it is not running. A cancel of a job ``held`` but not begun
        (buffered, or handed to a slot that has not begun it) is kept: it
        ends CANCELLED without running."""
        with self._lock:
            # A cancel outranks a timeout (the job then ends CANCELLED); a
            # timeout never replaces a cancel.
            stop = (reason, True) if cancel else self.stops.get(job_id) or (reason, False)
            found = self._threads.get(job_id)
            if found is None:
                if cancel and held:
                    self.stops[job_id] = stop
                return False
            self.stops[job_id] = stop
            ident, task = found
            # Under the lock: the thread cannot have ended the job meanwhile.
            if task is not None:
                task.get_loop().call_soon_threadsafe(self._cancel, job_id, task)
            else:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(JobInterrupted)
                )
            return True

    def _cancel(self, job_id: bytes, task: asyncio.Task[Any]) -> None:
        # On the loop, later: the task may have ended this job and begun its
        # next one meanwhile, which must not be cancelled in its place.
        with self._lock:
            found = self._threads.get(job_id)
        if found is not None and found[1] is task:
            task.cancel()
