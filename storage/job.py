"""The Job base class: a dataclass whose fields are the job's arguments."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
from typing import Any, ClassVar, Self

from storage.codec import ENCODE_ERRORS, decode, encode
from storage.model import PRIORITY_RANGE, NewJob
from storage.policy import Backoff, MaxRetries, Policy


class Job:
    """Subclass this, decorate the subclass with ``@dataclass``, write ``run``.

    The class attributes below are defaults that a subclass may override.
    ``NAME`` identifies the job in storage and must be unique among registered
    jobs; it defaults to ``module.qualname`` so renaming the class renames it.
    """

    NAME: ClassVar[str]
    QUEUE: ClassVar[str] = "default"
    MAX_RETRIES: ClassVar[MaxRetries] = MaxRetries.count(5)
    BACKOFF: ClassVar[Backoff] = Backoff.exponential(2)
    HEARTBEAT_INTERVAL: ClassVar[float] = 5.0
    TIMEOUT: ClassVar[float | None] = None
    # Seconds the record of an ended job (status, returned value, last error,
    # times) is kept for info() and wait(); 0 keeps none.
    RESULT_TTL: ClassVar[float] = 600.0
    # While a job of this class with the same arguments is pending or running,
    # queueing another returns that job's id and stores nothing.
    UNIQUE: ClassVar[bool] = False
    # Among the due jobs of its queue, a higher priority is claimed first,
    # then the earlier run_at, then the first queued. Any int (negative too,
    # within 64 bits); ``queue(..., priority=)`` overrides it per job.
    PRIORITY: ClassVar[int] = 0

    _fields: ClassVar[tuple[str, ...] | None] = None
    _policy: ClassVar[Policy | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "NAME" not in cls.__dict__:
            cls.NAME = f"{cls.__module__}.{cls.__qualname__}"
        # Caches belong to one class, never inherited from a parent.
        cls._fields = None
        cls._policy = None

    def run(self, state: Any) -> Any:
        """Do the work. Raise to fail the attempt; the job is then retried.

        ``async def run`` makes an async job: its queue's slots run on the
        arbiter's event loop, many at once, with no thread each."""
        raise NotImplementedError(f"{type(self).NAME} does not define run()")

    @classmethod
    def is_async(cls) -> bool:
        """Whether ``run`` is ``async def``; TypeError if it is neither kind of function."""
        run = cls.run
        if inspect.iscoroutinefunction(run):
            return True
        if inspect.isfunction(run):
            return False
        raise TypeError(
            f"job {cls.NAME}: run must be a method, 'def run(self, state)' or "
            f"'async def run(self, state)'; got {run!r}"
        )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        if cls._fields is None:
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"job {cls.NAME}: decorate the class with @dataclass")
            cls._fields = tuple(f.name for f in dataclasses.fields(cls))
        return cls._fields

    @classmethod
    def policy(cls) -> Policy:
        if cls._policy is None:
            cls._policy = Policy(
                max_retries=cls.MAX_RETRIES,
                backoff=cls.BACKOFF,
                heartbeat_interval=float(cls.HEARTBEAT_INTERVAL),
                timeout=None if cls.TIMEOUT is None else float(cls.TIMEOUT),
                result_ttl=check_ttl(cls.RESULT_TTL, f"job {cls.NAME}: RESULT_TTL"),
            )
        return cls._policy

    def encode_args(self) -> bytes:
        """The fields as msgpack bytes; a TypeError names the field that cannot go."""
        names = self.field_names()
        args = {name: getattr(self, name) for name in names}
        try:
            return encode(args)
        except ENCODE_ERRORS:
            for name, value in args.items():
                try:
                    encode(value)
                except ENCODE_ERRORS as exc:
                    raise TypeError(
                        f"job {self.NAME}: field {name!r} "
                        f"({type(value).__qualname__}) cannot be encoded: {exc}"
                    ) from exc
            raise

    @classmethod
    def decode_args(cls, data: bytes) -> Self:
        return cls(**decode(data))

    def to_new(
        self,
        *,
        queue: str | None = None,
        run_at: float | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        result_ttl: float | None = None,
        priority: int | None = None,
    ) -> NewJob:
        """What storage needs to keep this job; encodes the arguments now.
        ``priority`` None is the class's PRIORITY."""
        policy = self.policy()
        if timeout is not None:
            policy = dataclasses.replace(policy, timeout=float(timeout))
        if result_ttl is not None:
            policy = dataclasses.replace(policy, result_ttl=check_ttl(result_ttl, "result_ttl="))
        args = self.encode_args()
        if unique_key is None and self.UNIQUE:
            unique_key = f"{self.NAME}:{hashlib.sha256(args).hexdigest()}"
        if priority is None:
            level = self.PRIORITY
            if level or type(level) is not int:  # the default 0 needs no check
                level = check_priority(level, f"job {self.NAME}: PRIORITY")
        else:
            level = check_priority(priority, "priority=")
        # Positional: one is made per job queued (name, queue, args, policy,
        # run_at, unique_key, priority).
        return NewJob(self.NAME, queue or self.QUEUE, args, policy, run_at, unique_key, level)


def check_ttl(ttl: object, what: str) -> float:
    """``ttl`` as seconds to keep an ended job's record: a finite number >= 0."""
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        if math.isfinite(ttl) and ttl >= 0:
            return float(ttl)
        raise ValueError(f"{what} must be a finite number of seconds >= 0; got {ttl!r}")
    raise TypeError(f"{what} must be a number of seconds >= 0; got {type(ttl).__qualname__}")


def check_priority(priority: object, what: str) -> int:
    """``priority`` if it is one: an int (not a bool) that 64 bits hold."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(
            f"{what} must be an int (higher runs first); got {priority!r} "
            f"({type(priority).__qualname__})"
        )
    if priority not in PRIORITY_RANGE:
        raise ValueError(
            f"{what} must fit in a signed 64-bit integer "
            f"({PRIORITY_RANGE.start} to {PRIORITY_RANGE.stop - 1}); got {priority!r}"
        )
    return priority
