"""The wire between the host and an arbiter: length-prefixed msgpack frames.

A frame is a 4-byte big-endian length and a msgpack array of messages (the
messages themselves are in actors/protocol.py). Job arguments ride inside as
msgpack bin, never decoded on the way.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

from storage import Backoff, MaxRetries, NewJob, Policy

MAX_FRAME = 64 * 1024 * 1024
_HEADER = 4
_CHUNK = 256 * 1024


class FrameError(Exception):
    """A frame that breaks the protocol: too large, or not msgpack."""


def pack_frame(messages: Sequence[Any]) -> bytes:
    body: bytes = msgpack.packb(messages, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME} byte limit")
    return len(body).to_bytes(_HEADER, "big") + body


class FrameWriter:
    """Sends messages from any thread, many to a write.

    The first sender to find the writer idle becomes the flusher and keeps
    writing until the buffer is empty; senders that arrive meanwhile only
    append. Under load that batches naturally, and an idle link pays no
    thread hand-off.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        # A bare lock on the hot path; the condition only for waiting senders.
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._waiting = 0  # senders waiting for the flusher to finish
        self._pending: list[Any] = []
        self._flushing = False

    def send(self, message: Any, *, wait: bool = False) -> None:
        """Send ``message``; with ``wait``, return only once it and everything
        buffered before it are written, even by another thread: a process
        about to exit must not cut off a flush in flight."""
        self.buffer(message)
        self.flush(wait=wait)

    def buffer(self, message: Any) -> None:
        with self._lock:
            self._pending.append(message)

    def buffer_many(self, messages: list[Any]) -> None:
        with self._lock:
            self._pending += messages

    def flush(self, *, wait: bool = False) -> None:
        with self._lock:
            if self._flushing and wait:
                self._waiting += 1
                while self._flushing:
                    self._done.wait()
                self._waiting -= 1
            if self._flushing or not self._pending:
                return
            self._flushing = True
        try:
            while True:
                with self._lock:
                    batch, self._pending = self._pending, []
                    if not batch:
                        self._finished()
                        return
                self._sock.sendall(pack_frame(batch))
        except BaseException:
            with self._lock:
                self._finished()
            raise

    def _finished(self) -> None:
        # Under the lock: the flusher is done, whoever waits may go on.
        self._flushing = False
        if self._waiting:
            self._done.notify_all()


def read_frames(sock: socket.socket, max_frame: int = MAX_FRAME) -> Iterator[list[Any]]:
    """Yield messages until the peer closes; FrameError on garbage.

    Each yield carries the messages of every complete frame that one ``recv``
    brought in, so a reader that fell behind catches up in one batch. The
    good frames before a bad one are yielded before the error is raised: a
    Done that came ahead of the garbage is not lost with it.
    """
    buf = bytearray()
    while True:
        chunk = sock.recv(_CHUNK)
        if not chunk:
            if buf:
                raise FrameError(f"connection closed inside a frame ({len(buf)} bytes)")
            return
        buf += chunk
        messages, start, error = _parse(buf, max_frame)
        if start:
            del buf[:start]
        if messages:
            yield messages
        if error is not None:
            raise error


def _parse(buf: bytearray, max_frame: int) -> tuple[list[Any], int, FrameError | None]:
    """The messages of the complete frames at the head of ``buf``, where they
    end, and the error of the first bad frame, if one comes next."""
    messages: list[Any] = []
    start = 0
    while len(buf) - start >= _HEADER:
        size = int.from_bytes(buf[start : start + _HEADER], "big")
        if size > max_frame:
            return (
                messages,
                start,
                FrameError(f"frame of {size} bytes exceeds the {max_frame} byte limit"),
            )
        end = start + _HEADER + size
        if len(buf) < end:
            break
        try:
            frame = msgpack.unpackb(buf[start + _HEADER : end], raw=False)
        except Exception as exc:
            return messages, start, FrameError(f"frame is not msgpack: {exc}")
        if not isinstance(frame, list):
            return messages, start, FrameError(f"frame holds {type(frame).__name__}, not a list")
        messages += frame
        start = end
    return messages, start, None


# -- values on the wire ----------------------------------------------------------


def pack_new_job(job: NewJob) -> list[Any]:
    policy = job.policy
    return [
        job.name,
        job.queue,
        job.args,
        policy.max_retries.limit,
        policy.backoff.kind,
        policy.backoff.value,
        policy.backoff.max,
        policy.heartbeat_interval,
        policy.timeout,
        policy.result_ttl,
        job.run_at,
        job.unique_key,
        job.priority,
        # Parents: an id as its 16 bytes, a position in the batch as an int.
        [p.bytes if isinstance(p, uuid.UUID) else p for p in job.after],
    ]


def unpack_new_job(raw: list[Any]) -> NewJob:
    (name, queue, args, limit, kind, value, cap, heartbeat, timeout, result_ttl, run_at,
     unique_key, priority, after) = raw  # fmt: skip
    policy = Policy(MaxRetries(limit), Backoff(kind, value, cap), heartbeat, timeout, result_ttl)
    return NewJob(
        name=name,
        queue=queue,
        args=args,
        policy=policy,
        run_at=run_at,
        unique_key=unique_key,
        priority=priority,
        after=tuple(uuid.UUID(bytes=p) if isinstance(p, bytes) else p for p in after),
    )
