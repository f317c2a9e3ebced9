"""The Job base class: argument encoding, names, policies, NewJob building."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest

from storage import Backoff, Job, MaxRetries, MemoryStorage, Policy

# -- jobs used below --------------------------------------------------------------


@dataclass
class Everything(Job):
    """One field of every kind the codec carries."""

    aware: dt.datetime
    naive: dt.datetime
    day: dt.date
    ident: uuid.UUID
    wait: dt.timedelta
    blob: bytes
    nested: dict[Any, Any]
    items: list[Any]
    text: str = "héllo ✓"
    big: int = 2**64 - 1
    small: int = -(2**63)
    ratio: float = 0.1
    flag: bool = True
    nothing: None = None


def everything() -> Everything:
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    return Everything(
        aware=dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=ist),
        naive=dt.datetime(1999, 12, 31, 12, 0, 0, 1),
        day=dt.date(2000, 1, 1),
        ident=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        wait=dt.timedelta(days=-3, seconds=5, microseconds=7),
        blob=bytes(range(256)),
        nested={
            "when": [dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.date(2020, 1, 2)],
            "ids": {"a": uuid.UUID(int=1), "b": [uuid.UUID(int=2), [dt.timedelta(hours=1)]]},
            7: b"\x00\xff",
            "empty": {},
        },
        items=[[1, [2, [3, [b"deep"]]]], {"x": None}, -1.5, "", []],
    )


@dataclass
class SendEmail(Job):
    to: str
    subject: str = ""


@dataclass
class Tuned(Job):
    NAME = "mail.tuned"
    QUEUE = "mail"
    MAX_RETRIES = MaxRetries.infinite()
    BACKOFF = Backoff.linear(3)
    HEARTBEAT_INTERVAL = 1  # an int is taken as float
    TIMEOUT = 30

    n: int = 0


@dataclass
class TunedChild(Tuned):
    BACKOFF = Backoff.exponential(3)


@dataclass
class WithSet(Job):
    ok: int = 1
    tags: set[str] = field(default_factory=lambda: {"a", "b"})


@dataclass
class WithObject(Job):
    target: object = field(default_factory=object)


@dataclass
class WithHugeInt(Job):
    fine: str = "x"
    count: int = 2**64


@dataclass
class WithNestedSet(Job):
    payload: dict[str, Any] = field(default_factory=lambda: {"ok": [1, 2, {"bad": {1, 2}}]})


class NotADataclass(Job):
    def __init__(self, n: int) -> None:
        self.n = n


# -- encoding -------------------------------------------------------------------------


def test_every_supported_type_survives_a_round_trip() -> None:
    job = everything()

    back = Everything.decode_args(job.encode_args())

    assert back == job
    assert back.aware.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert back.naive.tzinfo is None
    assert type(back.day) is dt.date
    assert type(back.ident) is uuid.UUID
    assert type(back.blob) is bytes
    assert back.nested["ids"]["b"][1][0] == dt.timedelta(hours=1)
    assert back.nested[7] == b"\x00\xff"
    assert back.nested["when"][0].utcoffset() == dt.timedelta(0)
    assert type(back.nested["when"][1]) is dt.date


def test_encode_args_is_msgpack_of_the_fields_by_name() -> None:
    assert msgpack.unpackb(SendEmail(to="a", subject="b").encode_args()) == {
        "to": "a",
        "subject": "b",
    }


@pytest.mark.parametrize(
    ("job", "field_name", "type_name"),
    [
        (WithSet(), "tags", "set"),
        (WithObject(), "target", "object"),
        (WithHugeInt(), "count", "int"),
        (WithNestedSet(), "payload", "dict"),
    ],
)
def test_an_unencodable_field_is_refused_naming_job_and_field(
    job: Job, field_name: str, type_name: str
) -> None:
    with pytest.raises(TypeError) as refused:
        job.encode_args()

    message = str(refused.value)
    assert type(job).NAME in message
    assert f"field {field_name!r} ({type_name})" in message


def test_an_unencodable_job_is_refused_at_to_new_and_nothing_is_stored() -> None:
    storage = MemoryStorage()

    with pytest.raises(TypeError, match=r"field 'tags'"):
        storage.push(WithSet().to_new())

    assert storage.stats() == {}
    assert storage.list() == []


def test_the_largest_64_bit_ints_are_fine() -> None:
    job = WithHugeInt(count=2**64 - 1)
    assert WithHugeInt.decode_args(job.encode_args()).count == 2**64 - 1
    job = WithHugeInt(count=-(2**63))
    assert WithHugeInt.decode_args(job.encode_args()).count == -(2**63)
    with pytest.raises(TypeError, match="'count'"):
        WithHugeInt(count=-(2**63) - 1).encode_args()


def test_a_job_class_that_is_not_a_dataclass_is_refused_clearly() -> None:
    job = NotADataclass(3)

    with pytest.raises(TypeError, match=r"decorate the class with @dataclass") as refused:
        job.encode_args()
    assert NotADataclass.NAME in str(refused.value)
    with pytest.raises(TypeError, match=r"@dataclass"):
        job.to_new()


# -- names ----------------------------------------------------------------------------


def test_name_defaults_to_module_and_qualname() -> None:
    assert f"{__name__}.SendEmail" == SendEmail.NAME
    assert SendEmail(to="x").NAME == SendEmail.NAME

    @dataclass
    class Local(Job):
        pass

    assert f"{__name__}.test_name_defaults_to_module_and_qualname.<locals>.Local" == Local.NAME


def test_name_can_be_overridden_and_is_not_inherited() -> None:
    assert Tuned.NAME == "mail.tuned"
    # A subclass is another job: it gets its own default name, never its parent's.
    assert f"{__name__}.TunedChild" == TunedChild.NAME


def test_name_is_not_a_dataclass_field() -> None:
    assert Tuned.field_names() == ("n",)
    assert Everything.field_names()[:3] == ("aware", "naive", "day")


def test_run_must_be_written() -> None:
    with pytest.raises(NotImplementedError, match=SendEmail.NAME):
        SendEmail(to="x").run(None)


# -- policy ---------------------------------------------------------------------------


def test_default_policy() -> None:
    assert SendEmail.policy() == Policy(
        max_retries=MaxRetries.count(5),
        backoff=Backoff.exponential(2),
        heartbeat_interval=5.0,
        timeout=None,
    )
    assert SendEmail.QUEUE == "default"


def test_class_attributes_make_the_policy() -> None:
    policy = Tuned.policy()

    assert policy == Policy(
        max_retries=MaxRetries.infinite(),
        backoff=Backoff.linear(3),
        heartbeat_interval=1.0,
        timeout=30.0,
    )
    assert type(policy.heartbeat_interval) is float
    assert type(policy.timeout) is float


def test_policy_is_shared_by_the_class_and_not_by_subclasses() -> None:
    assert Tuned.policy() is Tuned.policy()  # one object per class keeps stored jobs small
    assert TunedChild.policy().backoff == Backoff.exponential(3)
    assert TunedChild.policy().max_retries == MaxRetries.infinite()  # inherited attribute
    assert Tuned.policy().backoff == Backoff.linear(3)


# -- to_new ---------------------------------------------------------------------------


def test_to_new_carries_name_queue_args_and_policy() -> None:
    job = SendEmail(to="a@example.com", subject="hi")

    new = job.to_new()

    assert new.name == SendEmail.NAME
    assert new.queue == "default"
    assert new.args == job.encode_args()
    assert new.policy is SendEmail.policy()
    assert new.run_at is None
    assert SendEmail.decode_args(new.args) == job


def test_to_new_queue_and_run_at_overrides() -> None:
    assert Tuned().to_new().queue == "mail"
    new = Tuned().to_new(queue="urgent", run_at=1_700_000_123.5)
    assert (new.queue, new.run_at) == ("urgent", 1_700_000_123.5)


def test_to_new_timeout_overrides_for_this_enqueue_only() -> None:
    new = Tuned(n=1).to_new(timeout=5)

    assert new.policy.timeout == 5.0
    assert type(new.policy.timeout) is float
    assert new.policy.max_retries == MaxRetries.infinite()
    assert new.policy.backoff == Backoff.linear(3)
    assert new.policy.heartbeat_interval == 1.0
    assert Tuned.policy().timeout == 30.0  # the class keeps its own
    assert Tuned(n=2).to_new().policy.timeout == 30.0
    assert SendEmail(to="x").to_new(timeout=2.5).policy.timeout == 2.5
    assert SendEmail.policy().timeout is None


@dataclass
class UniqueJob(Job):
    UNIQUE = True

    user: int


def test_unique_key_comes_from_name_and_arguments() -> None:
    one, same, other = UniqueJob(1).to_new(), UniqueJob(1).to_new(), UniqueJob(2).to_new()
    assert one.unique_key is not None
    assert one.unique_key.startswith(f"{UniqueJob.NAME}:")
    assert one.unique_key == same.unique_key != other.unique_key


def test_explicit_unique_key_wins_and_plain_jobs_have_none() -> None:
    assert UniqueJob(1).to_new(unique_key="mine").unique_key == "mine"
    assert UniqueJob.UNIQUE and not Job.UNIQUE
