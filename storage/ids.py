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

    def next_seq(self) -> int:
        """The next id's time and counter: ``ms << 12 | counter``, 60 bits."""
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
        return (self._last_ms << 12) | self._counter

    def next_int(self) -> int:
        return _layout(self.next_seq(), self._random.getrandbits(62))


class SeqIds:
    """Ids for a store that keeps them as 60-bit ints inside and hands out
    UUIDv7s: the int is the UUID's time and counter, and its 62 random bits
    are one draw per store (RFC 9562 allows any source for them), so either
    form gives the other. A 60-bit int takes 32 bytes, a 128-bit one 48: it
    is kept per job, twice, in a store of a million.

    A UUID whose fixed bits are not this store's maps to None: not its job.
    """

    __slots__ = ("_fixed", "_generator")

    def __init__(self) -> None:
        self._generator = IdGenerator()
        self._fixed = _VERSION_7 | _VARIANT | int.from_bytes(os.urandom(8), "big") >> 2

    def next(self) -> int:
        return self._generator.next_seq()

    def as_uuid(self, seq: int) -> uuid.UUID:
        return to_uuid(((seq >> 12) << 80) | ((seq & 0xFFF) << 64) | self._fixed)

    def as_seq(self, job_id: uuid.UUID) -> int | None:
        value = job_id.int
        if value & _FIXED_MASK != self._fixed:
            return None
        return ((value >> 80) << 12) | ((value >> 64) & 0xFFF)

    def first_seq_after(self, job_id: uuid.UUID) -> int:
        """The least seq whose id sorts after ``job_id``, which may be any
        UUID: ids sort as their seqs do, so the ids greater than ``job_id``
        are those of the seqs from this one on."""
        value = job_id.int
        ms = value >> 80
        # Between the time and the counter sit the version bits, 7 in ours.
        version = (value >> 76) & 0xF
        if version < 7:
            return ms << 12  # every id of that millisecond is greater
        if version > 7:
            return (ms + 1) << 12  # every id of that millisecond is smaller
        seq = (ms << 12) | ((value >> 64) & 0xFFF)
        # Same time and counter: the rest (variant and random bits) decides.
        return seq if self._fixed & _LOW_64 > value & _LOW_64 else seq + 1


def _layout(seq: int, rand_b: int) -> int:
    return ((seq >> 12) << 80) | _VERSION_7 | ((seq & 0xFFF) << 64) | _VARIANT | rand_b


# The bits of a UUIDv7 that are neither its time (48) nor its counter (12).
_FIXED_MASK = ((1 << 128) - 1) ^ (((1 << 48) - 1) << 80) ^ (0xFFF << 64)
_LOW_64 = (1 << 64) - 1


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
