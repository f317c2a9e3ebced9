"""msgpack encoding of job arguments, with the few extra types jobs need.

Arguments are encoded once, at enqueue, and decoded once, in the worker that
runs the job; everything between carries the bytes unopened.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import msgpack

_EXT_DATETIME = 1
_EXT_DATE = 2
_EXT_UUID = 3
_EXT_TIMEDELTA = 4

# What msgpack raises for a value it cannot carry (an unknown type or an int
# past 64 bits, through _default; a nesting too deep).
ENCODE_ERRORS = (TypeError, OverflowError, ValueError)


def _default(value: Any) -> msgpack.ExtType:
    # datetime is checked before date: it is a subclass of date.
    if isinstance(value, dt.datetime):
        return msgpack.ExtType(_EXT_DATETIME, value.isoformat().encode())
    if isinstance(value, dt.date):
        return msgpack.ExtType(_EXT_DATE, value.isoformat().encode())
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(_EXT_UUID, value.bytes)
    if isinstance(value, dt.timedelta):
        return msgpack.ExtType(
            _EXT_TIMEDELTA, msgpack.packb([value.days, value.seconds, value.microseconds])
        )
    if isinstance(value, int):
        # msgpack asks here only for ints past its 64-bit range.
        raise TypeError(
            f"{_show_int(value)} is outside msgpack's integer range (-2**63 .. 2**64-1); "
            "pass big integers as str"
        )
    raise TypeError(f"cannot encode {type(value).__qualname__} with msgpack")


def _show_int(value: int) -> str:
    # str() of an int past sys.get_int_max_str_digits() raises ValueError.
    return str(value) if value.bit_length() <= 256 else f"an int of {value.bit_length()} bits"


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _EXT_DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _EXT_UUID:
        return uuid.UUID(bytes=data)
    if code == _EXT_TIMEDELTA:
        days, seconds, micros = msgpack.unpackb(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    return msgpack.ExtType(code, data)


# One Packer per thread, reused: msgpack.packb builds a new one per call,
# which costs as much as packing a small job's arguments.
_packers = threading.local()


def encode(value: Any) -> bytes:
    """Encode to msgpack; raises TypeError, OverflowError or ValueError."""
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(
            default=_default, use_bin_type=True, datetime=False
        )
    try:
        return packer.pack(value)  # type: ignore[no-any-return]
    except BaseException:
        _packers.packer = None  # its buffer may hold half a value
        raise


def decode(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
