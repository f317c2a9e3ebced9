"""The host's link reader fed garbage: arbitrary bytes and truncated frames.

Whatever an arbiter writes, the reader ends (no hang), raises nothing out of
its thread, reports a bad frame for what breaks the protocol (the Manager
then recycles that arbiter: tests/runtime/test_crash_safety.py), and hands
on every Done that came in whole before the garbage.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.host_link import HostLink
from actors.ops import Batch, Complete
from actors.protocol import Done, encode
from actors.wire import pack_frame
from storage import Outcome

PATIENCE = 5.0


class Fed:
    """What a link's reader did with the bytes it was fed."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.events: list[tuple[str, str | None]] = []

    def completed(self) -> list[bytes]:
        return [op.job_id.bytes for b in self.batches for op in b.ops if isinstance(op, Complete)]

    def bad_frames(self) -> list[str | None]:
        return [detail for kind, detail in self.events if kind == "bad_frame"]


@contextlib.contextmanager
def escaping() -> Iterator[list[BaseException]]:
    """Exceptions that leave a thread meanwhile: the reader must let none out."""
    caught: list[BaseException] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        caught.append(args.exc_value or RuntimeError("thread died"))

    threading.excepthook = hook
    try:
        yield caught
    finally:
        threading.excepthook = previous


def feed(data: bytes) -> Fed:
    fed = Fed()
    arbiter_end, host_end = socket.socketpair()
    link = HostLink(
        host_end,
        "r1",
        fed.batches.append,
        lambda kind, detail: fed.events.append((kind, detail)),
    )
    with escaping() as escaped, arbiter_end:
        link.start()
        arbiter_end.sendall(data)
        arbiter_end.shutdown(socket.SHUT_WR)
        link.drain(timeout=PATIENCE)
        assert not link._thread.is_alive(), "the reader hangs"
    link.close()
    assert escaped == []
    return fed


def done_frame(job: int) -> bytes:
    return pack_frame([encode(Done(job.to_bytes(16, "big"), Outcome.SUCCESS.value, None, None))])


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes_end_the_reader_cleanly(data: bytes) -> None:
    fed = feed(data)
    assert {kind for kind, _ in fed.events} <= {"bad_frame", "ready", "fatal", "bye", "recycle"}


@settings(max_examples=200, deadline=None)
@given(
    good=st.integers(min_value=0, max_value=20),
    garbage=st.binary(max_size=512),
    cut=st.integers(min_value=1, max_value=10_000),
    whole=st.booleans(),
)
def test_the_dones_before_garbage_arrive_and_the_garbage_is_named(
    good: int, garbage: bytes, cut: int, whole: bool
) -> None:
    head = b"".join(done_frame(job) for job in range(good))
    if whole:
        # A frame of garbage: its length is right, its body is not a list of messages.
        tail = len(garbage + b"\xc1").to_bytes(4, "big") + b"\xc1" + garbage
    else:
        # A frame cut short: its length promises more than ever comes.
        body = garbage[: cut % (len(garbage) + 1)]
        tail = (len(body) + cut).to_bytes(4, "big") + body
    fed = feed(head + tail)
    assert fed.completed() == [job.to_bytes(16, "big") for job in range(good)]
    assert len(fed.bad_frames()) == 1


@settings(max_examples=100, deadline=None)
@given(good=st.integers(min_value=0, max_value=20), junk=st.binary(min_size=1, max_size=64))
def test_the_dones_ahead_of_a_bad_message_in_one_frame_arrive(good: int, junk: bytes) -> None:
    dones = [
        encode(Done(job.to_bytes(16, "big"), Outcome.SUCCESS.value, None, None))
        for job in range(good)
    ]
    fed = feed(pack_frame([*dones, ["no such message", junk]]))
    assert fed.completed() == [job.to_bytes(16, "big") for job in range(good)]
    assert len(fed.bad_frames()) == 1
