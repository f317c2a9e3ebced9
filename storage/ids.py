"""Time-ordered job ids (UUID version 7, RFC 9562)."""

from __future__ import annotations

import os
import random
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62


class IdGenerator:
    """Makes UUIDv7 ids as ints, strictly increasing within one generator.

    The 12 ``rand_a`` bits hold a counter within the millisecond (RFC 9562
    method 1), so ids made in one process sort in the order they were made.
    Not thread-safe: each storage owns one and is used from one thread.
    """

    __slots__ = ("_counter", "_last_ms", "_random")

    def __init__(self) -> None:
        self._last_ms = 0
        self._counter = 0
        self._random = random.Random(os.urandom(16))

    def next_int(self) -> int:
        ms = time.time_ns() // 1_000_000
        if ms > self._last_ms:
            self._last_ms = ms
            self._counter = 0
        else:
            self._counter += 1
            if self._counter > 0xFFF:
                # The counter is spent: borrow the next millisecond.
                self._last_ms += 1
                self._counter = 0
        return (
            (self._last_ms << 80)
            | _VERSION_7
            | (self._counter << 64)
            | _VARIANT
            | self._random.getrandbits(62)
        )


def id_time(job_id: int) -> float:
    """The creation time (epoch seconds, millisecond precision) inside a UUIDv7."""
    return (job_id >> 80) / 1000.0


# uuid.UUID's own slots, set directly; an enum member looked up per call
# (uuid.SafeUUID.unknown) costs more than the rest of the id.
_NEW = object.__new__
_SET_INT = uuid.UUID.__dict__["int"].__set__
_SET_SAFE = uuid.UUID.__dict__["is_safe"].__set__
_UNKNOWN = uuid.SafeUUID.unknown


def to_uuid(job_id: int) -> uuid.UUID:
    # uuid.UUID(int=...) re-validates the range on every call; this int is
    # ours and in range, and the runtime makes several UUIDs per job.
    value = _NEW(uuid.UUID)
    _SET_INT(value, job_id)
    _SET_SAFE(value, _UNKNOWN)
    return value


def uuid_from_bytes(raw: bytes) -> uuid.UUID:
    """The id of 16 raw bytes (as ids travel between processes), without
    ``uuid.UUID``'s checks: the runtime makes one or two per job."""
    if len(raw) != 16:
        raise ValueError(f"an id is 16 bytes, got {len(raw)}")
    return to_uuid(int.from_bytes(raw, "big"))
