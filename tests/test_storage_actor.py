"""StorageActor: parked pops, batches, errors, draining, idleness, many threads."""

from __future__ import annotations

import dataclasses
import functools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pykka
import pytest

from actors.ops import (
    Batch,
    Complete,
    DoneCounts,
    Drain,
    Heartbeat,
    Info,
    ListJobs,
    Pop,
    Push,
    Retire,
    Stats,
    StorageError,
    Tick,
    Unpark,
    WhenIdle,
)
from actors.storage_actor import FutureReply, Rounds, StorageActor, pop_wait, wait_for
from storage import (
    Backoff,
    Claim,
    Disposition,
    Job,
    JobInfo,
    JobResult,
    MaxRetries,
    MemoryStorage,
    NewJob,
    QueueStats,
    Status,
    Storage,
)

Ref = pykka.ActorRef[Any]

# Real time is used here (the waker sleeps on the system clock): waits are short,
# and every bound on how long something may take is generous.
PATIENCE = 10.0


@dataclass
class Ping(Job):
    n: int = 0


@dataclass
class Flaky(Job):
    """Fails are retried at once."""

    BACKOFF = Backoff.linear(0)

    n: int = 0


@dataclass
class Quick(Job):
    """Heartbeat every 0.04 s: the claim goes stale 0.2 s after the last one."""

    HEARTBEAT_INTERVAL = 0.04


def ping(queue: str = "q", n: int = 0, run_at: float | None = None) -> NewJob:
    return Ping(n).to_new(queue=queue, run_at=run_at)


def ask(actor: Ref, op: object) -> Any:
    """Ask and wait for the answer."""
    return actor.ask(op)


def push(actor: Ref, *jobs: NewJob) -> list[uuid.UUID]:
    return cast(list[uuid.UUID], ask(actor, Push(jobs)))


def pop(actor: Ref, runner: str, queue: str = "q", limit: int = 1) -> list[Claim]:
    return cast(list[Claim], ask(actor, Pop(queue, runner, limit)))


def stats(actor: Ref) -> dict[str, QueueStats]:
    return ageless(cast(dict[str, QueueStats], ask(actor, Stats())))


def ageless(counts: dict[str, QueueStats]) -> dict[str, QueueStats]:
    """The counts without ``oldest_due_at``, which moves with the clock."""
    return {q: dataclasses.replace(c, oldest_due_at=None) for q, c in counts.items()}


def info(actor: Ref, job_id: uuid.UUID) -> JobInfo:
    found = ask(actor, Info(job_id))
    assert found is not None
    return cast(JobInfo, found)


def park(actor: Ref, runner: str, queue: str = "q", limit: int = 1) -> FutureReply:
    """Send a Pop with a reply, which nothing due will park; check that it did."""
    reply = FutureReply()
    assert ask(actor, Pop(queue, runner, limit, reply)) is None
    return reply


def unanswered(reply: FutureReply) -> bool:
    try:
        reply.future.get(timeout=0)
    except pykka.Timeout:
        return True
    return False


class FailingStorage:
    """A MemoryStorage whose method ``broken`` always raises."""

    def __init__(self, broken: str) -> None:
        self._inner = MemoryStorage()
        self._broken = broken

    def __getattr__(self, name: str) -> Any:
        if name == self._broken:

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("disk on fire")

            return fail
        return getattr(self._inner, name)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def actor() -> Iterator[Ref]:
    ref = StorageActor.start(MemoryStorage())
    yield ref
    ref.stop()


@pytest.fixture
def broken_heartbeat() -> Iterator[Ref]:
    ref = StorageActor.start(cast(Storage, FailingStorage("heartbeat")))
    yield ref
    ref.stop()


# -- parked pops ------------------------------------------------------------------------


def test_a_parked_pop_is_answered_by_a_later_push(actor: Ref) -> None:
    reply = park(actor, "r1")
    assert unanswered(reply)

    (job_id,) = push(actor, ping())

    jobs = reply.future.get(timeout=PATIENCE)
    assert [job.id for job in jobs] == [job_id]
    assert (info(actor, job_id).runner, info(actor, job_id).status) == ("r1", Status.RUNNING)
    assert stats(actor) == {"q": QueueStats(pending=0, running=1, dead=0)}


def test_parked_pops_are_answered_in_arrival_order(actor: Ref) -> None:
    first, second = park(actor, "r1"), park(actor, "r2", limit=2)
    other_queue = park(actor, "r3", queue="elsewhere")

    (a,) = push(actor, ping())
    assert [job.id for job in first.future.get(timeout=PATIENCE)] == [a]
    assert unanswered(second)

    b, c, d = push(actor, ping(), ping(), ping())
    assert [job.id for job in second.future.get(timeout=PATIENCE)] == [b, c]
    assert unanswered(other_queue)
    assert stats(actor)["q"] == QueueStats(pending=1, running=3, dead=0)
    assert info(actor, d).status is Status.PENDING


def test_pop_wait_returns_a_job_pushed_by_another_thread(actor: Ref) -> None:
    pusher = threading.Timer(0.1, push, args=(actor, ping(n=7)))
    pusher.start()
    started = time.monotonic()

    jobs = pop_wait(actor, "q", "r1", timeout=PATIENCE)

    assert time.monotonic() - started < PATIENCE / 2
    assert [Ping.decode_args(job.args) for job in jobs] == [Ping(7)]
    pusher.join()


def test_a_parked_pop_wakes_when_a_scheduled_job_falls_due(actor: Ref) -> None:
    run_at = time.time() + 0.3
    (job_id,) = push(actor, ping(run_at=run_at))
    assert pop(actor, "r1") == []
    started = time.monotonic()

    jobs = pop_wait(actor, "q", "r1", timeout=PATIENCE)

    assert [job.id for job in jobs] == [job_id]
    assert time.time() >= run_at - 0.001  # not early
    assert time.monotonic() - started < 3.0  # and not much later


def test_a_parked_pop_takes_over_a_claim_gone_stale(actor: Ref) -> None:
    (job_id,) = push(actor, Quick().to_new(queue="q"))
    assert [job.id for job in pop(actor, "r1")] == [job_id]
    started = time.monotonic()

    jobs = pop_wait(actor, "q", "r2", timeout=PATIENCE)

    assert [job.id for job in jobs] == [job_id]
    assert info(actor, job_id).runner == "r2"
    assert time.monotonic() - started >= 0.15  # 5 x 0.04 s after r1's claim
    assert ask(actor, Complete(job_id, "r1", JobResult.success())) is Disposition.NOT_HELD


def test_a_retry_due_at_once_answers_a_parked_pop(actor: Ref) -> None:
    (job_id,) = push(actor, Flaky().to_new(queue="q"))
    pop(actor, "r1")
    waiting = park(actor, "r2")

    disposition = ask(actor, Complete(job_id, "r1", JobResult.failure("boom")))

    assert disposition is Disposition.RETRYING
    (job,) = waiting.future.get(timeout=PATIENCE)
    assert (job.id, job.retry_count) == (job_id, 1)
    assert info(actor, job_id).runner == "r2"


def test_a_job_put_back_unexecuted_answers_a_parked_pop(actor: Ref) -> None:
    (job_id,) = push(actor, ping())
    pop(actor, "r1")
    waiting = park(actor, "r2")

    assert ask(actor, Complete(job_id, "r1", JobResult.unexecuted())) is Disposition.REQUEUED

    assert [job.id for job in waiting.future.get(timeout=PATIENCE)] == [job_id]


def test_pop_wait_timeout_withdraws_the_pop(actor: Ref) -> None:
    with pytest.raises(TimeoutError):
        pop_wait(actor, "q", "r1", timeout=0.1)

    (job_id,) = push(actor, ping())

    # The job was not claimed for the caller that gave up.
    assert info(actor, job_id).status is Status.PENDING
    assert [job.id for job in pop(actor, "r2")] == [job_id]
    assert info(actor, job_id).runner == "r2"


def test_unpark_withdraws_only_that_reply(actor: Ref) -> None:
    gone, staying = park(actor, "r1"), park(actor, "r1")

    assert ask(actor, Unpark(gone)) is None
    push(actor, ping())

    assert len(staying.future.get(timeout=PATIENCE)) == 1
    assert unanswered(gone)


# -- batches and errors -------------------------------------------------------------------


def test_a_batch_is_answered_in_one_reply(actor: Ref) -> None:
    answers = ask(
        actor,
        Batch((Push((ping(n=1), ping(n=2))), Pop("q", "r1", 5), Stats(), ListJobs(queue="q"))),
    )

    assert len(answers) == 4
    pushed, popped, counts, listed = answers
    assert [job.id for job in popped] == pushed
    assert ageless(counts) == {"q": QueueStats(pending=0, running=2, dead=0)}
    assert {job.id for job in listed} == set(pushed)

    # Completions of one batch fused with the pops of the next.
    (c,) = push(actor, ping(n=3))
    ok = JobResult.success()
    answers = ask(
        actor,
        Batch((Complete(pushed[0], "r1", ok), Complete(pushed[1], "r1", ok), Pop("q", "r1", 5))),
    )
    assert answers[:2] == [Disposition.FINISHED, Disposition.FINISHED]
    assert [job.id for job in answers[2]] == [c]


def test_a_batch_with_an_answer_callback_answers_through_it(actor: Ref) -> None:
    answered: queue.Queue[list[Any]] = queue.Queue()

    actor.tell(Batch((Push((ping(),)), Stats()), answer=answered.put))

    ids, counts = answered.get(timeout=PATIENCE)
    assert len(ids) == 1
    assert ageless(counts) == {"q": QueueStats(pending=1, running=0, dead=0)}
    assert ask(actor, Batch((Stats(),), answer=answered.put)) is None
    assert answered.get(timeout=PATIENCE) == [counts]


class CountingStorage(MemoryStorage):
    """Counts complete_and_pop calls; the first one blocks until released."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []  # (completions, pops) per call
        self.entered = threading.Event()
        self.release = threading.Event()

    def complete_and_pop(self, completions: Any, pops: Any) -> Any:
        self.calls.append((len(completions), len(pops)))
        self.entered.set()
        self.release.wait(PATIENCE)
        return super().complete_and_pop(completions, pops)


def test_batches_left_while_the_actor_is_busy_run_as_one_round() -> None:
    storage = CountingStorage()
    ref = StorageActor.start(storage)
    answered: queue.Queue[tuple[object, list[Any]]] = queue.Queue()

    def answer(name: object) -> Callable[[list[Any]], None]:
        return lambda answers: answered.put((name, answers))

    try:
        rounds = Rounds(ref)
        ids = push(ref, *(ping(n=n) for n in range(6)))
        pop(ref, "r1", limit=3)
        first = FutureReply()
        rounds.submit(Batch((Pop("q", "r2", 1, first, "w"),), answer("first")))
        assert storage.entered.wait(PATIENCE)  # the actor is inside that round now
        replies = [FutureReply() for _ in range(3)]
        for n, (job_id, reply) in enumerate(zip(ids[:3], replies, strict=True)):
            ops = (Complete(job_id, "r1", JobResult.success()), Pop("q", "r1", 1, reply, n))
            rounds.submit(Batch(ops, answer(n)))
        storage.release.set()

        got = dict(answered.get(timeout=PATIENCE) for _ in range(4))
        assert got == {
            "first": [None],
            0: [Disposition.FINISHED, None],
            1: [Disposition.FINISHED, None],
            2: [Disposition.FINISHED, None],
        }
        # The three batches left during the first round ran as one call, their
        # three pops as one claim for the runner, dealt out in order.
        assert storage.calls == [(0, 1), (3, 1)]
        assert [job.id for job in first.future.get(timeout=PATIENCE)] == [ids[3]]
        assert [job.id for job in replies[0].future.get(timeout=PATIENCE)] == [ids[4]]
        assert [job.id for job in replies[1].future.get(timeout=PATIENCE)] == [ids[5]]
        assert unanswered(replies[2])  # nothing left for it: parked
    finally:
        storage.release.set()
        ref.stop()


def test_a_batch_settles_its_completions_before_a_retire(actor: Ref) -> None:
    first, second = push(actor, ping(), ping())
    pop(actor, "r1", limit=2)

    answers = ask(
        actor,
        Batch(
            (
                Complete(first, "r1", JobResult.failure("timeout")),
                Retire("r1", JobResult.unexecuted()),
            )
        ),
    )

    assert answers[0] is Disposition.RETRYING
    assert info(actor, first).last_error == "timeout"
    assert info(actor, second).retry_count == 0  # put back unexecuted


def test_a_pop_after_a_drain_in_one_batch_finds_the_runner_drained(actor: Ref) -> None:
    (job_id,) = push(actor, ping())
    reply = FutureReply()

    ask(actor, Batch((Drain("r1"), Pop("q", "r1", 1, reply, "w"))))

    assert reply.future.get(timeout=PATIENCE) == []
    assert info(actor, job_id).status is Status.PENDING


def test_an_op_that_raises_in_a_batch_is_answered_as_storage_error(
    broken_heartbeat: Ref,
) -> None:
    beat = Heartbeat("r1", (uuid.uuid4(),))

    answers = ask(broken_heartbeat, Batch((Push((ping(),)), beat, Pop("q", "r1"), Stats())))

    pushed, failed, popped, counts = answers
    assert isinstance(failed, StorageError)
    assert failed.op is beat
    assert isinstance(failed.cause, RuntimeError)
    assert str(failed) == "Heartbeat failed: RuntimeError: disk on fire"
    assert [job.id for job in popped] == pushed
    assert ageless(counts) == {"q": QueueStats(pending=0, running=1, dead=0)}


def test_a_single_ask_that_raises_surfaces_storage_error(broken_heartbeat: Ref) -> None:
    with pytest.raises(StorageError, match="disk on fire") as raised:
        ask(broken_heartbeat, Heartbeat("r1", ()))
    assert isinstance(raised.value.cause, RuntimeError)

    with pytest.raises(StorageError, match="does not understand") as raised:
        ask(broken_heartbeat, "not an op")
    assert isinstance(raised.value.cause, TypeError)

    # The actor lives on.
    assert broken_heartbeat.is_alive()
    assert stats(broken_heartbeat) == {}


@pytest.mark.parametrize("broken", ["commit", "release"])
def test_a_told_message_that_fails_leaves_the_actor_alive(broken: str) -> None:
    # A waker's Tick and the Manager's Retire are told: nobody could take a
    # raised error, and raising would stop the actor (a database restarting
    # fails every commit for a while).
    ref = StorageActor.start(cast(Storage, FailingStorage(broken)))
    try:
        ref.tell(Tick())
        ref.tell(Retire("r1", JobResult.failure("arbiter died")))
        ref.tell(WhenIdle(lambda idle: None))
        # Asked after them, so answered after them: by a live actor.
        if broken == "commit":
            with pytest.raises(StorageError, match="disk on fire"):
                ask(ref, Stats())
        else:
            assert ask(ref, Stats()) == {}
        assert ref.is_alive()
    finally:
        ref.stop()


class NoNextDue(MemoryStorage):
    """A MemoryStorage whose next_due fails while ``down`` is set (a server
    restarting, read after the message is done)."""

    down = True

    def next_due(self, queue: str) -> float | None:
        if self.down:
            raise ConnectionError("terminating connection due to administrator command")
        return super().next_due(queue)


def test_a_failed_read_after_a_message_leaves_the_actor_alive_and_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = NoNextDue()
    ref = StorageActor.start(storage)
    try:
        reply = park(ref, "r1")  # its wake-up is armed from next_due, which fails
        assert ref.is_alive()
        assert "storage unavailable; retrying" in caplog.text
        storage.down = False
        push(ref, ping(run_at=time.time() + 0.3))  # due later: only the waker serves it
        [claim] = reply.future.get(timeout=PATIENCE)
        assert claim.id is not None
    finally:
        ref.stop()


class Outage(MemoryStorage):
    """A MemoryStorage whose commit fails while ``down`` is set."""

    down = False

    def commit(self) -> None:
        if self.down:
            raise ConnectionError("server closed the connection")


def test_an_outage_is_logged_at_its_start_and_its_end(caplog: pytest.LogCaptureFixture) -> None:
    storage = Outage()
    ref = StorageActor.start(storage)
    try:
        with caplog.at_level(logging.DEBUG, logger="jobarbiter"):
            storage.down = True
            for _ in range(10):
                with pytest.raises(StorageError):
                    ask(ref, Stats())
            storage.down = False
            assert ask(ref, Stats()) == {}
            assert ask(ref, Stats()) == {}
    finally:
        ref.stop()
    said = [(r.levelname, vars(r)["event"]) for r in caplog.records if r.levelno >= logging.INFO]
    assert said == [
        ("ERROR", "storage operation failed"),
        ("ERROR", "storage keeps failing; more at debug till it works"),
        ("WARNING", "storage works again"),
    ]
    assert vars(caplog.records[-1])["failures"] == 10


# -- drain and retire ---------------------------------------------------------------------


def test_drain_drops_parked_pops_and_empties_later_ones(actor: Ref) -> None:
    (held,) = push(actor, ping())
    pop(actor, "r1")
    drained = park(actor, "r1")
    other = park(actor, "r2")

    assert ask(actor, Drain("r1")) is None
    a, b = push(actor, ping(), ping())

    assert [job.id for job in other.future.get(timeout=PATIENCE)] == [a]
    assert drained.future.get(timeout=PATIENCE) == []  # answered with nothing, not left hanging
    assert pop(actor, "r1") == []
    late = park(actor, "r1")  # a parked pop from a draining runner is not kept either
    assert late.future.get(timeout=PATIENCE) == []
    push(actor, ping())
    assert info(actor, b).status is Status.PENDING
    # Its completions are still accepted.
    assert ask(actor, Complete(held, "r1", JobResult.success())) is Disposition.FINISHED
    assert [job.id for job in pop(actor, "r2")] == [b]


def test_retire_drains_and_releases_what_the_runner_holds(actor: Ref) -> None:
    first, second, kept = push(actor, ping(), ping(), ping())
    pop(actor, "r1", limit=2)
    pop(actor, "r2")
    parked = park(actor, "r1", queue="other")

    settled = ask(actor, Retire("r1", JobResult.failure("arbiter retired")))

    assert sorted(settled) == sorted(
        [(first, Disposition.RETRYING), (second, Disposition.RETRYING)]
    )
    for job_id in (first, second):
        job = info(actor, job_id)
        assert (job.status, job.retry_count, job.last_error) == (
            Status.PENDING,
            1,
            "arbiter retired",
        )
    assert info(actor, kept).runner == "r2"
    assert parked.future.get(timeout=PATIENCE) == []  # answered with nothing
    push(actor, ping(queue="other"))
    assert pop(actor, "r1", queue="other") == []


def test_retire_unexecuted_puts_jobs_back_unchanged(actor: Ref) -> None:
    (job_id,) = push(actor, ping())
    pop(actor, "r1")

    assert ask(actor, Retire("r1", JobResult.unexecuted())) == [(job_id, Disposition.REQUEUED)]

    job = info(actor, job_id)
    assert (job.status, job.retry_count, job.runner) == (Status.PENDING, 0, None)


# -- idleness --------------------------------------------------------------------------------


def test_when_idle_answers_at_once_when_nothing_is_left(actor: Ref) -> None:
    assert wait_for(actor, WhenIdle, timeout=PATIENCE) is True


def test_when_idle_answers_once_the_last_job_is_settled(actor: Ref) -> None:
    (job_id,) = push(actor, ping())
    idle = threading.Event()
    calls: list[bool] = []

    def done(value: bool) -> None:
        calls.append(value)
        idle.set()

    actor.tell(WhenIdle(done))
    stats(actor)
    assert not idle.is_set()  # pending
    pop(actor, "r1")
    assert not idle.is_set()  # running

    ask(actor, Complete(job_id, "r1", JobResult.success()))

    assert idle.wait(PATIENCE)
    stats(actor)
    assert calls == [True]  # answered once


def test_dead_jobs_do_not_keep_the_actor_busy(actor: Ref) -> None:
    @dataclass
    class Doomed(Job):
        MAX_RETRIES = MaxRetries.count(0)

    (job_id,) = push(actor, Doomed().to_new(queue="q"))
    pop(actor, "r1")
    assert ask(actor, Complete(job_id, "r1", JobResult.failure("x"))) is Disposition.DEAD

    assert wait_for(actor, WhenIdle, timeout=PATIENCE) is True


# -- many threads ----------------------------------------------------------------------------


@dataclass
class Workload:
    """What the producer and consumer threads share."""

    actor: Ref
    total: int
    pushed: list[uuid.UUID] = field(default_factory=list)
    completed: list[uuid.UUID] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    all_done: threading.Event = field(default_factory=threading.Event)

    def thread(self, work: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                self.errors.append(exc)
                self.all_done.set()

        return threading.Thread(target=run)

    def produce(self, first: int, count: int) -> None:
        n = 0
        while n < count:
            size = min(1 + n % 7, count - n)  # Push batches of 1..7 jobs
            ids = push(self.actor, *(ping(n=first + n + i) for i in range(size)))
            with self.lock:
                self.pushed.extend(ids)
            n += size

    def consume(self, runner: str, limit: int, batched: bool) -> None:
        ok = JobResult.success()
        while not self.all_done.is_set():
            try:
                jobs = pop_wait(self.actor, "q", runner, limit=limit, timeout=0.2)
            except TimeoutError:
                continue
            completions = [Complete(job.id, runner, ok) for job in jobs]
            if batched:
                answers = ask(self.actor, Batch(tuple(completions)))
            else:
                answers = [ask(self.actor, op) for op in completions]
            assert answers == [Disposition.FINISHED] * len(jobs)
            with self.lock:
                self.completed.extend(job.id for job in jobs)
                if len(self.completed) >= self.total:
                    self.all_done.set()


def test_many_threads_push_pop_and_complete_every_job_once(actor: Ref) -> None:
    producers, consumers, per_producer = 4, 4, 500
    load = Workload(actor, total=producers * per_producer)
    threads = [
        load.thread(functools.partial(load.produce, p * per_producer, per_producer))
        for p in range(producers)
    ]
    threads += [
        load.thread(functools.partial(load.consume, f"runner-{c}", 1 + c, c % 2 == 0))
        for c in range(consumers)
    ]
    for thread in threads:
        thread.start()
    finished = load.all_done.wait(60)
    for thread in threads:
        thread.join(PATIENCE)

    assert load.errors == []
    assert finished
    assert not any(thread.is_alive() for thread in threads)
    assert len(load.pushed) == len(set(load.pushed)) == load.total
    assert len(load.completed) == len(set(load.completed)) == load.total  # each exactly once
    assert set(load.completed) == set(load.pushed)  # none lost
    assert stats(actor) == {}
    done_counts = ask(actor, DoneCounts())
    assert set(done_counts) <= {f"runner-{c}" for c in range(consumers)}
    assert sum(done_counts.values()) == load.total
