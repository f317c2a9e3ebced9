"""HostLink: the host's end of one arbiter's link.

Its reader thread turns each frame from the arbiter into one Batch for the
StorageActor (left with its Rounds, never asked, so a slow storage never
blocks the socket). It keeps what the arbiter reported Started and not yet
Done itself (``started``, for the Retire after a death): only a job with a
TIMEOUT needs the StorageActor to hear of its start; ``running`` reads them
with how long each has run, for ``stats()``),
and it is the Reply through which the StorageActor hands jobs back: deliveries
are buffered and leave as one frame when the actor flushes.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable
from time import monotonic
from time import time as wall
from typing import Any

from actors.ops import Batch, Complete, Drain, Heartbeat, Pop, Push, Start, WaitFor
from actors.protocol import (
    UNKNOWN_PARENT,
    Answer,
    Beat,
    Bye,
    Deliver,
    Done,
    Fatal,
    LoopBlocked,
    ProtocolError,
    PushJobs,
    Ready,
    Recycling,
    Scale,
    Slots,
    Started,
    Stop,
    StopJob,
    WaitJob,
    Want,
    decode,
    encode,
)
from actors.waiters import Ended
from actors.wire import FrameError, FrameWriter, read_frames, unpack_new_job
from storage import Claim, JobResult, Outcome
from storage.dependencies import UnknownParent, pack
from storage.ids import uuid_from_bytes

# What a link tells its owner: ("ready", None) once the arbiter's workers are
# all built, ("fatal", error) when the arbiter could not start or a worker
# failed, ("recycle", reason) when it reached a limit and is draining itself,
# ("loop_blocked", what) when its event loop did not turn for a while,
# ("bye", None) when it drained and is leaving, ("bad_frame", reason) when it
# broke the protocol.
LinkEvent = Callable[[str, str | None], None]
# Called with (queue, slots) when the arbiter reports a queue's slot count.
SlotsReport = Callable[[str, int], None]


_OUTCOMES = {outcome.value: outcome for outcome in Outcome}
_OK = Outcome.SUCCESS
_NOT_STARTED: tuple[None, None] = (None, None)
_SUCCESS = JobResult.success()


def _ignore(answers: list[Any]) -> None:
    pass


class HostLink:
    def __init__(
        self,
        sock: socket.socket,
        runner: str,
        submit: Callable[[Batch], None],
        on_event: LinkEvent,
        on_slots: SlotsReport | None = None,
    ) -> None:
        self.runner = runner
        self._on_slots = on_slots
        self._sock = sock
        self._submit = submit
        self._on_event = on_event
        self._writer = FrameWriter(sock)
        # Raw ids: the reader thread adds and discards; the StorageActor's
        # thread adds to _timed and _queues. Single set and dict operations,
        # atomic under the GIL.
        self._started: dict[bytes, tuple[float, float | None]] = {}  # (began, waited)
        self._timed: set[bytes] = set()  # delivered with a TIMEOUT, not Done
        # Delivered, not Done: (queue, name), for the tally and ``running``.
        self._queues: dict[bytes, tuple[str, str]] = {}
        self._retried: set[bytes] = set()  # delivered for a retry, not Done
        self._thread = threading.Thread(
            target=self._read, name=f"jobarbiter-link-{runner[:8]}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    # -- Reply, called from the StorageActor's thread ---------------------------

    def deliver(self, token: Any, jobs: list[Claim]) -> None:
        messages = []
        queues = self._queues
        for job in jobs:
            raw = job.id.bytes
            queues[raw] = (job.queue, job.name)
            if job.retry_count:
                self._retried.add(raw)
            if job.timeout is not None:
                self._timed.add(raw)
            messages.append(
                encode(
                    Deliver(
                        token,
                        raw,
                        job.name,
                        job.args,
                        job.retry_count,
                        job.timeout,
                        pack(job.parents) if job.parents else b"",
                    )
                )
            )
        self._writer.buffer_many(messages)

    def flush(self) -> None:
        self._writer.flush()

    # -- control ------------------------------------------------------------------

    def stop_arbiter(self) -> None:
        """Ask the arbiter to finish its jobs and leave."""
        try:
            self._writer.send(encode(Stop()))
        except OSError:
            pass  # already gone: its death is reported by its sentinel

    def stop_job(self, job_id: uuid.UUID, reason: str) -> None:
        """Ask the arbiter to stop one running job at its TIMEOUT
        (JobInterrupted in its thread): the attempt fails with ``reason``."""
        self._send_stop(StopJob(job_id.bytes, reason, False))

    def cancel_job(self, job_id: uuid.UUID, reason: str) -> None:
        """Ask the arbiter to cancel one job it runs: its context turns
        cancelled, JobInterrupted is raised in its thread (its task is
        cancelled), and it ends CANCELLED with ``reason``."""
        self._send_stop(StopJob(job_id.bytes, reason, True))

    def _send_stop(self, message: StopJob) -> None:
        try:
            self._writer.send(encode(message))
        except OSError:
            pass  # already gone: its death is reported by its sentinel

    def scale(self, queue: str, count: int) -> None:
        """Give ``queue`` ``count`` slots in the arbiter, without a restart."""
        try:
            self._writer.send(encode(Scale(queue, count)))
        except OSError:
            pass  # already gone: its replacement starts with the new count

    def started(self) -> tuple[uuid.UUID, ...]:
        """The jobs the arbiter reported Started and not Done: complete once
        ``drain`` returned after its process ended."""
        return tuple(sorted(uuid_from_bytes(raw) for raw in self._started))

    def running(self) -> tuple[tuple[uuid.UUID, str, str, float], ...]:
        """(id, queue, name, seconds run) of each job started and not Done,
        longest-running first. Called from another thread: the copies are
        single dict operations, atomic under the GIL."""
        started = dict(self._started)
        delivered = dict(self._queues)
        now = monotonic()
        found = []
        for raw, (began, _) in started.items():
            queue, name = delivered.get(raw, ("", ""))
            found.append((uuid_from_bytes(raw), queue, name, now - began))
        found.sort(key=lambda job: -job[3])
        return tuple(found)

    def runs(self, job_id: uuid.UUID) -> bool:
        """Whether the arbiter reported ``job_id`` Started and not yet Done."""
        return job_id.bytes in self._started

    def drain(self, timeout: float) -> None:
        """Wait until everything the arbiter sent has reached the StorageActor:
        once the process has ended its end of the socket is closed, so the
        reader meets end-of-file right after the last frame."""
        self._thread.join(timeout)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    # -- reading ------------------------------------------------------------------

    def _read(self) -> None:
        try:
            for messages in read_frames(self._sock):
                self._handle(messages)
        except (FrameError, ProtocolError) as exc:
            self._on_event("bad_frame", str(exc))
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            self._on_event("bad_frame", f"malformed message: {type(exc).__name__}: {exc}")
        except OSError:
            pass  # closed under us: the process ended, its sentinel says so

    def _handle(self, messages: list[Any]) -> None:
        ops: list[object] = []
        requests: list[tuple[int, int]] = []  # (index in ops, request id)
        try:
            self._decode(messages, ops, requests)
        finally:
            # Even when a message breaks the protocol: the good ones before it
            # (a Done among them) still reach the storage.
            if ops:
                answer = self._answerer(requests) if requests else _ignore
                self._submit(Batch(tuple(ops), answer))

    def _decode(
        self, messages: list[Any], ops: list[object], requests: list[tuple[int, int]]
    ) -> None:
        """What ``messages`` ask of the storage, appended to ``ops``."""
        runner = self.runner
        for raw in messages:
            message = decode(raw)
            if isinstance(message, Done):
                ops.append(self._complete(message))
            elif isinstance(message, Want):
                # Parked for what cannot be served now, and filled as jobs come.
                ops.append(
                    Pop(
                        message.queue,
                        runner,
                        message.n,
                        self,
                        message.queue,
                        keep=True,
                        urgent=message.idle,
                    )
                )
            elif isinstance(message, Started):
                job_id = message.job_id
                # A first attempt's wait runs from its enqueue time (its id's,
                # to the millisecond); a retry's would count its backoff.
                if job_id in self._retried:
                    waited = None
                else:  # the UUIDv7's first 48 bits: milliseconds since the epoch
                    waited = max(wall() - int.from_bytes(job_id[:6]) / 1000, 0.0)
                self._started[job_id] = (monotonic(), waited)
                if job_id in self._timed:  # its TIMEOUT counts from now
                    ops.append(Start(runner, uuid_from_bytes(message.job_id)))
            elif isinstance(message, Beat):
                ops.append(Heartbeat(runner, tuple(uuid_from_bytes(i) for i in message.job_ids)))
            elif isinstance(message, PushJobs):
                requests.append((len(ops), message.request))
                ops.append(Push(tuple(unpack_new_job(raw) for raw in message.jobs)))
            elif isinstance(message, WaitJob):
                ops.append(WaitFor((uuid_from_bytes(message.job_id),), self._waiter(message)))
            elif isinstance(message, Recycling):
                # In order: wants sent after this must find the runner drained.
                ops.append(Drain(runner))
                self._on_event("recycle", message.reason)
            elif isinstance(message, Fatal):
                self._on_event("fatal", message.error)
            elif isinstance(message, Ready):
                self._on_event("ready", None)
            elif isinstance(message, LoopBlocked):
                what = message.job or "no job found on it"
                self._on_event("loop_blocked", f"{what}, for {message.seconds:g} s")
            elif isinstance(message, Bye):
                self._on_event("bye", None)
            elif isinstance(message, Slots):
                if self._on_slots is not None:
                    self._on_slots(message.queue, message.slots)
            else:
                raise ProtocolError(f"the host is not sent {raw[0]!r}")

    def _complete(self, message: Done) -> Complete:
        """The Complete a Done asks for, with what the tally wants to know."""
        job_id = message.job_id
        began, waited = self._started.pop(job_id, _NOT_STARTED)
        self._timed.discard(job_id)
        if self._retried:
            self._retried.discard(job_id)
        outcome = _OUTCOMES[message.outcome]
        if outcome is _OK:
            value = message.value
            result = _SUCCESS if value is None else JobResult(outcome, None, value)
        else:
            result = JobResult(outcome, message.error)
        ran = None if began is None else monotonic() - began
        delivered = self._queues.pop(job_id, None)
        queue = None if delivered is None else delivered[0]
        return Complete(uuid_from_bytes(job_id), self.runner, result, queue, ran, waited)

    def _waiter(self, message: WaitJob) -> Callable[[uuid.UUID, Ended | None], None]:
        """Answers ``message`` once its job has ended (on the StorageActor's
        thread, after the commit that stored the end)."""

        def answer(_: uuid.UUID, end: Ended | None) -> None:
            told = None if end is None else [end.status.value, end.error, end.result]
            self._writer.buffer(encode(Answer(message.request, True, told)))
            try:
                self._writer.flush()
            except OSError:
                pass  # the arbiter is gone: nobody waits any more

        return answer

    def _answerer(self, requests: list[tuple[int, int]]) -> Callable[[list[Any]], None]:
        def answer(answers: list[Any]) -> None:
            for index, request in requests:
                result = answers[index]
                if isinstance(result, UnknownParent):
                    # By name, so that the job that queued them gets the same error.
                    refused = [UNKNOWN_PARENT, result.parent.bytes]
                    self._writer.buffer(encode(Answer(request, False, refused)))
                elif isinstance(result, Exception):
                    self._writer.buffer(encode(Answer(request, False, str(result))))
                else:
                    self._writer.buffer(encode(Answer(request, True, [i.bytes for i in result])))
            try:
                self._writer.flush()
            except OSError:
                pass

        return answer
