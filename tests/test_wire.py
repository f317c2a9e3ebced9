"""The link's frames: a FrameWriter shared by threads, and reading frames back."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any, cast

import msgpack
import pytest

from actors.wire import FrameWriter, pack_new_job, read_frames, unpack_new_job
from storage import Backoff, MaxRetries, NewJob, Policy

PATIENCE = 10.0


class SlowSocket:
    """Records what is written; the first sendall blocks until released."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def sendall(self, data: bytes) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(PATIENCE)
        self.frames.append(bytes(data))


@pytest.fixture
def slow() -> Iterator[SlowSocket]:
    sock = SlowSocket()
    yield sock
    sock.release.set()


def messages(frames: list[bytes]) -> list[Any]:
    a, b = socket.socketpair()
    with a, b:
        for frame in frames:
            a.sendall(frame)
        a.shutdown(socket.SHUT_WR)
        return [message for batch in read_frames(b) for message in batch]


def test_a_sender_that_waits_returns_only_once_a_flush_in_flight_wrote_its_message(
    slow: SlowSocket,
) -> None:
    writer = FrameWriter(cast(socket.socket, slow))
    flusher = threading.Thread(target=writer.send, args=(["done", 1],))
    flusher.start()
    assert slow.entered.wait(PATIENCE)  # that thread is writing, and blocked

    writer.send(["not waiting"])  # finds a flush in flight: only buffers
    assert slow.frames == []
    waited = threading.Event()
    leaving = threading.Thread(target=lambda: (writer.send(["bye"], wait=True), waited.set()))
    leaving.start()
    assert not waited.wait(0.2)  # still blocked behind the flush in flight

    slow.release.set()
    assert waited.wait(PATIENCE)
    flusher.join(PATIENCE)
    leaving.join(PATIENCE)
    assert messages(slow.frames) == [["done", 1], ["not waiting"], ["bye"]]


def test_a_failed_write_does_not_leave_waiting_senders_hanging() -> None:
    class Broken:
        def sendall(self, data: bytes) -> None:
            raise BrokenPipeError("peer gone")

    writer = FrameWriter(cast(socket.socket, Broken()))
    with pytest.raises(BrokenPipeError):
        writer.send(["done", 1], wait=True)

    raised: list[BaseException] = []

    def leave() -> None:
        try:
            writer.send(["bye"], wait=True)
        except BaseException as exc:
            raised.append(exc)

    leaving = threading.Thread(target=leave, daemon=True)
    leaving.start()
    leaving.join(PATIENCE)
    assert not leaving.is_alive()  # a new flush of its own, not a wait forever
    assert [type(exc) for exc in raised] == [BrokenPipeError]


@pytest.mark.parametrize("priority", [0, -3, 2**63 - 1])
@pytest.mark.parametrize("after", [(), (uuid.UUID(int=7), 0)])
def test_a_job_queued_from_an_arbiter_keeps_its_priority_parents_and_result_ttl(
    priority: int, after: tuple[uuid.UUID | int, ...]
) -> None:
    policy = Policy(MaxRetries.count(2), Backoff.linear(1.0), 5.0, None, result_ttl=42.0)
    job = NewJob("tests.Job", "q", b"\x80", policy, 12.5, "key", priority, after)
    raw = msgpack.unpackb(msgpack.packb(pack_new_job(job), use_bin_type=True), raw=False)
    assert unpack_new_job(raw) == job
