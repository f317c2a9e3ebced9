"""Every wrong call is refused at the call that is wrong, with a message naming the fix.

All in-process: a QueueHandle gets a transport that records what it is given,
so "nothing is stored" means "nothing reached the transport".
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from storage import MemoryStorage, NewJob, Storage
from supervisor import Job, QueueHandle, WorkerConfig
from supervisor.handle import job_id

ROOT = Path(__file__).resolve().parents[1]

# -- jobs, transport, storages --------------------------------------------------------


@dataclass
class Echo(Job):
    n: int = 0


@dataclass
class Holder(Job):
    items: list[Any] = field(default_factory=list)


class Recorder:
    """A transport that keeps every batch pushed to it."""

    def __init__(self) -> None:
        self.batches: list[list[NewJob]] = []

    def push(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        self.batches.append(list(jobs))
        return [uuid.uuid4() for _ in jobs]


@pytest.fixture
def sent() -> Recorder:
    return Recorder()


@pytest.fixture
def handle(sent: Recorder) -> QueueHandle:
    return QueueHandle(sent)


def make_state(handle: QueueHandle) -> None:
    return None


PROTOCOL_MEMBERS = [name for name in vars(Storage) if not name.startswith("_")]


class Forwarding:
    """A Storage by duck typing only: forwards to a MemoryStorage, minus ``hidden``."""

    def __init__(self, *hidden: str) -> None:
        self._inner = MemoryStorage()
        self._hidden = hidden

    def __getattr__(self, name: str) -> Any:
        if name in self._hidden:
            raise AttributeError(name)
        return getattr(self._inner, name)


# -- 1. set_worker_count ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "error", "shown"),
    [
        (2.5, TypeError, "got 2.5 (float)"),
        ("3", TypeError, "got '3' (str)"),
        (True, TypeError, "got True (bool)"),
        (None, TypeError, "got None (NoneType)"),
        (-1, ValueError, "got -1"),
    ],
)
def test_set_worker_count_refuses_a_count_that_is_not_an_int_at_least_zero(
    count: Any, error: type[Exception], shown: str
) -> None:
    config = WorkerConfig()

    with pytest.raises(error) as refused:
        config.set_worker_count("mail", count)

    assert type(refused.value) is error
    assert str(refused.value) == f"worker count for queue 'mail' must be an int >= 0; {shown}"
    assert "mail" not in config.queues


@pytest.mark.parametrize(
    ("queue", "error", "shown"), [("", ValueError, "'' (str)"), (3, TypeError, "3 (int)")]
)
def test_set_worker_count_refuses_a_queue_that_is_not_a_non_empty_str(
    queue: Any, error: type[Exception], shown: str
) -> None:
    config = WorkerConfig()

    with pytest.raises(error) as refused:
        config.set_worker_count(queue, 2)

    assert type(refused.value) is error
    assert str(refused.value) == (
        f"set_worker_count() queue must be a queue name, a non-empty str; got {shown}"
    )
    assert config.queues == {}


def test_set_worker_count_takes_zero_and_positive_ints() -> None:
    config = WorkerConfig().set_worker_count("mail", 0).set_worker_count("other", 3)

    assert config.queues == {"mail": 0, "other": 3}


# -- 2. WorkerConfig ------------------------------------------------------------------

STORAGE_EXPECTED = (
    "storage must be a Storage such as MemoryStorage(), SqliteStorage(path) or "
    "PostgresStorage(dsn); got "
)


@pytest.mark.parametrize("path", ["jobs.db", Path("jobs.db")])
def test_a_file_name_as_storage_is_refused_pointing_at_sqlite(path: str | os.PathLike[str]) -> None:
    with pytest.raises(TypeError) as refused:
        WorkerConfig(storage=path)  # type: ignore[arg-type]

    assert type(refused.value) is TypeError
    assert str(refused.value) == (
        f"{STORAGE_EXPECTED}{path!r} ({type(path).__qualname__}): "
        "for a file, pass SqliteStorage('jobs.db')"
    )


def test_a_storage_class_instead_of_an_instance_is_refused() -> None:
    with pytest.raises(TypeError) as refused:
        WorkerConfig(storage=MemoryStorage)  # type: ignore[arg-type]

    assert str(refused.value) == (
        f"{STORAGE_EXPECTED}the class MemoryStorage: pass an instance, MemoryStorage(...)"
    )


def test_something_else_as_storage_is_refused_without_the_file_hint() -> None:
    with pytest.raises(TypeError) as refused:
        WorkerConfig(storage=42)  # type: ignore[arg-type]

    assert str(refused.value) == f"{STORAGE_EXPECTED}42 (int)"


@pytest.mark.parametrize("hidden", PROTOCOL_MEMBERS)
def test_a_storage_lacking_any_protocol_member_is_refused_naming_it(hidden: str) -> None:
    with pytest.raises(TypeError, match=r"storage must be a Storage") as refused:
        WorkerConfig(storage=Forwarding(hidden))

    assert str(refused.value).endswith(f" (Forwarding); it lacks {hidden}")


def test_a_storage_by_duck_typing_is_accepted() -> None:
    storage = Forwarding()

    assert WorkerConfig(storage=storage).storage is storage
    assert isinstance(WorkerConfig().storage, MemoryStorage)


def test_a_state_that_cannot_be_called_is_refused() -> None:
    with pytest.raises(TypeError) as refused:
        WorkerConfig(state="make_state")  # type: ignore[arg-type]

    assert type(refused.value) is TypeError
    assert str(refused.value) == (
        "state must be a callable that takes a QueueHandle and returns one worker's state; "
        "got 'make_state' (str)"
    )
    assert WorkerConfig(state=make_state).state is make_state


@pytest.mark.parametrize("option", ["max_rss", "max_jobs_per_arbiter"])
@pytest.mark.parametrize(
    ("value", "error", "shown"),
    [
        (1.5e8, TypeError, "got 150000000.0 (float)"),
        (True, TypeError, "got True (bool)"),
        ("100", TypeError, "got '100' (str)"),
        (0, ValueError, "got 0"),
        (-5, ValueError, "got -5"),
    ],
)
def test_limits_must_be_positive_ints(
    option: str, value: Any, error: type[Exception], shown: str
) -> None:
    with pytest.raises(error) as refused:
        WorkerConfig(**{option: value})

    assert type(refused.value) is error
    assert str(refused.value).startswith(f"{option} must be a positive int")
    assert str(refused.value).endswith(f"; {shown}")


def test_positive_int_limits_are_kept() -> None:
    config = WorkerConfig(max_rss=1, max_jobs_per_arbiter=50)

    assert (config.max_rss, config.max_jobs_per_arbiter) == (1, 50)


# -- 3. jobs that are not job instances --------------------------------------------------


def test_queue_refuses_a_job_class(handle: QueueHandle, sent: Recorder) -> None:
    with pytest.raises(TypeError) as refused:
        handle.queue(Echo)  # type: ignore[arg-type]

    assert str(refused.value) == (
        "queue() takes a job instance; got the class Echo: queue Echo(...) with its arguments"
    )
    assert sent.batches == []


def test_schedule_refuses_a_job_class(handle: QueueHandle, sent: Recorder) -> None:
    with pytest.raises(TypeError) as refused:
        handle.schedule(Echo, at=5)  # type: ignore[arg-type]

    assert str(refused.value).startswith("schedule() takes a job instance; got the class Echo:")
    assert sent.batches == []


@pytest.mark.parametrize(("thing", "shown"), [("Echo", "'Echo' (str)"), (None, "None (NoneType)")])
def test_queue_refuses_what_is_not_a_job_naming_its_type(
    handle: QueueHandle, sent: Recorder, thing: Any, shown: str
) -> None:
    with pytest.raises(TypeError) as refused:
        handle.queue(thing)

    assert str(refused.value) == f"queue() takes a job instance (of a Job subclass); got {shown}"
    assert sent.batches == []


def test_queue_many_checks_every_item_before_storing_any(
    handle: QueueHandle, sent: Recorder
) -> None:
    jobs: list[Any] = [Echo(1), Echo(2), Echo, Echo(4), Echo(5)]

    with pytest.raises(TypeError) as refused:
        handle.queue_many(jobs)

    assert str(refused.value).startswith(
        "queue_many() (at index 2) takes a job instance; got the class Echo:"
    )
    assert sent.batches == []


def test_queue_many_encodes_every_item_before_storing_any(
    handle: QueueHandle, sent: Recorder
) -> None:
    jobs: list[Job] = [Echo(1), Echo(2), Echo(2**70), Echo(4), Echo(5)]

    with pytest.raises(TypeError, match=r"field 'n' \(int\) cannot be encoded"):
        handle.queue_many(jobs)

    assert sent.batches == []


def test_queue_many_refuses_a_single_job(handle: QueueHandle, sent: Recorder) -> None:
    with pytest.raises(TypeError) as refused:
        handle.queue_many(Echo(1))  # type: ignore[arg-type]

    assert str(refused.value) == (
        "queue_many() takes an iterable of jobs; got one Echo: queue it with queue()"
    )
    assert sent.batches == []


def test_queue_many_queues_good_jobs_in_one_push(handle: QueueHandle, sent: Recorder) -> None:
    ids = handle.queue_many(Echo(i) for i in range(3))

    assert len(ids) == 3
    assert [len(batch) for batch in sent.batches] == [3]


# -- 4. schedule's at, and the options of queue and schedule -------------------------------


@pytest.mark.parametrize("delay", [5, 0.5, dt.timedelta(seconds=5), -1])
def test_schedule_takes_a_delay_in_seconds_or_as_a_timedelta(
    handle: QueueHandle, sent: Recorder, delay: float | dt.timedelta
) -> None:
    seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else delay
    before = time.time()

    handle.schedule(Echo(1), at=delay)

    [[new]] = sent.batches
    assert new.run_at is not None
    assert before + seconds <= new.run_at <= time.time() + seconds


def test_schedule_takes_an_aware_datetime(handle: QueueHandle, sent: Recorder) -> None:
    at = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    handle.schedule(Echo(1), at=at)

    assert sent.batches[0][0].run_at == at.timestamp()


def test_schedule_refuses_a_naive_datetime(handle: QueueHandle, sent: Recorder) -> None:
    with pytest.raises(ValueError, match=r"needs an aware datetime; got the naive"):
        handle.schedule(Echo(1), at=dt.datetime(2030, 1, 2))

    assert sent.batches == []


@pytest.mark.parametrize(
    ("at", "shown"),
    [
        (True, "True (bool)"),
        ("5", "'5' (str)"),
        (None, "None (NoneType)"),
        (dt.date(2030, 1, 2), "datetime.date(2030, 1, 2) (date)"),
    ],
)
def test_schedule_refuses_any_other_at_listing_what_it_takes(
    handle: QueueHandle, sent: Recorder, at: Any, shown: str
) -> None:
    with pytest.raises(TypeError) as refused:
        handle.schedule(Echo(1), at=at)

    assert str(refused.value) == (
        "schedule() at= takes an aware datetime, a timedelta, or a number of seconds "
        f"from now (int or float); got {shown}"
    )
    assert sent.batches == []


@pytest.mark.parametrize("at", [float("inf"), float("nan")])
def test_schedule_refuses_a_delay_that_is_not_finite(
    handle: QueueHandle, sent: Recorder, at: float
) -> None:
    with pytest.raises(ValueError, match=r"at= must be a finite number of seconds"):
        handle.schedule(Echo(1), at=at)

    assert sent.batches == []


BAD_OPTIONS = [
    ({"queue": 3}, TypeError, "queue= must be a queue name, a non-empty str; got 3 (int)"),
    ({"queue": ""}, ValueError, "queue= must be a queue name, a non-empty str; got '' (str)"),
    ({"timeout": 0}, ValueError, "timeout= must be a positive number of seconds"),
    ({"timeout": -1.5}, ValueError, "(or None); got -1.5 (float)"),
    ({"timeout": True}, TypeError, "(or None); got True (bool)"),
    ({"timeout": "30"}, TypeError, "(or None); got '30' (str)"),
    ({"unique_key": 7}, TypeError, "unique_key= must be a str (or None); got 7 (int)"),
]


@pytest.mark.parametrize("method", ["queue", "schedule"])
@pytest.mark.parametrize(("options", "error", "part"), BAD_OPTIONS)
def test_bad_options_are_refused(
    sent: Recorder, method: str, options: dict[str, Any], error: type[Exception], part: str
) -> None:
    handle = QueueHandle(sent)
    call = handle.queue if method == "queue" else lambda job, **kw: handle.schedule(job, 1, **kw)

    with pytest.raises(error) as refused:
        call(Echo(1), **options)

    assert type(refused.value) is error
    assert part in str(refused.value)
    assert sent.batches == []


def test_good_options_reach_the_stored_job(handle: QueueHandle, sent: Recorder) -> None:
    handle.queue(Echo(1), queue="other", timeout=2, unique_key="k")
    handle.schedule(Echo(2), 1, queue="later", timeout=0.5, unique_key="")

    [[first], [second]] = sent.batches
    assert (first.queue, first.policy.timeout, first.unique_key) == ("other", 2.0, "k")
    assert (second.queue, second.policy.timeout, second.unique_key) == ("later", 0.5, "")


# -- 5. job ids ---------------------------------------------------------------------------


def test_job_id_returns_a_uuid_unchanged_and_parses_its_str() -> None:
    ident = uuid.uuid4()

    assert job_id(ident) is ident
    assert job_id(str(ident)) == ident
    assert job_id(str(ident).upper()) == ident


@pytest.mark.parametrize("text", ["xyz", "", str(uuid.uuid4())[:-1]])
def test_job_id_refuses_a_str_that_is_not_a_uuid(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        job_id(text)

    assert type(refused.value) is ValueError
    assert str(refused.value) == f"not a job id: {text!r} (expected a UUID as returned by queue())"


@pytest.mark.parametrize(
    ("value", "shown"), [(5, "5 (int)"), (None, "None (NoneType)"), (b"x" * 16, "(bytes)")]
)
def test_job_id_refuses_other_types(value: Any, shown: str) -> None:
    with pytest.raises(TypeError) as refused:
        job_id(value)

    assert str(refused.value).startswith("a job id is a UUID as returned by queue() (or its str)")
    assert str(refused.value).endswith(shown)


# -- 6. ints msgpack cannot carry -----------------------------------------------------------

RANGE = "is outside msgpack's integer range (-2**63 .. 2**64-1); pass big integers as str"


@pytest.mark.parametrize("n", [2**70, -(2**64), 2**64, -(2**63) - 1])
def test_a_big_int_field_is_refused_saying_why_and_what_to_do(n: int) -> None:
    with pytest.raises(TypeError) as refused:
        Echo(n).encode_args()

    assert str(refused.value) == f"job {Echo.NAME}: field 'n' (int) cannot be encoded: {n} {RANGE}"


@pytest.mark.parametrize("items", [[1, 2**70], [{"deep": [2**70]}]])
def test_a_big_int_nested_in_a_field_is_refused_the_same_way(items: list[Any]) -> None:
    with pytest.raises(TypeError) as refused:
        Holder(items).encode_args()

    assert str(refused.value) == (
        f"job {Holder.NAME}: field 'items' (list) cannot be encoded: {2**70} {RANGE}"
    )


def test_an_int_too_long_to_print_is_still_refused_clearly() -> None:
    with pytest.raises(
        TypeError, match=r"field 'n' \(int\) cannot be encoded: an int of \d+ bits "
    ):
        Echo(10**5000).encode_args()


def test_a_big_int_is_never_stored(handle: QueueHandle, sent: Recorder) -> None:
    storage = MemoryStorage()

    with pytest.raises(TypeError, match=r"pass big integers as str"):
        storage.push(Holder([2**70]).to_new())
    with pytest.raises(TypeError, match=r"pass big integers as str"):
        handle.queue(Echo(2**70))

    assert storage.stats() == {}
    assert sent.batches == []


# -- 7. PostgresStorage without psycopg ------------------------------------------------------


@pytest.mark.parametrize("missing", ["psycopg", "psycopg_pool"])
def test_postgres_storage_without_psycopg_names_the_extra(missing: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules[{missing!r}] = None  # as if it were not installed
        import supervisor
        print("supervisor imported")
        try:
            from supervisor import PostgresStorage
        except ImportError as exc:
            print(type(exc).__name__, exc, sep=": ")
            print("cause:", type(exc.__cause__).__name__)
        """
    )

    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,  # the output says what went wrong
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "supervisor imported",
        "ImportError: PostgresStorage needs psycopg: pip install 'jobarbiter[postgres]'",
        "cause: ModuleNotFoundError",
    ]
