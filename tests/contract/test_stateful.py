"""Random sequences of operations, checked against a deliberately simple model.

The model below keeps jobs in a plain dict and answers every question by a
linear scan, with exact (Fraction) times; it is meant to be obviously right,
never fast. Each backend in backends.BACKENDS gets its own state machine, and
every answer it gives (popped ids in order, dispositions, lost heartbeats,
requeue, purge, cancel and expire results, the id a unique key leads to,
a page of list() for random filters, ``after`` and limit) must equal the
model's; after every step the whole visible state (stats with
oldest_due_at, list() in id order, info() with its value and times,
next_due(), the stored pauses) must agree too.

Ended records: a success keeps a SUCCEEDED record (its value, started_at
from its latest pop, finished_at, expires_at = finished + result_ttl) and a
cancel (of a pending job, or a running job completed or released with a
CANCELLED result) a CANCELLED one (the reason as last_error; started_at None
when it was cancelled while pending); a result_ttl of 0 keeps none. A record
is gone from info() and list() once expires_at <= now, whether or not
expire() has run, and expire() returns how many it removed. A dead job has
finished_at (cleared by requeue) and no expires_at. Kept records never count
in stats() nor next_due(), and free their unique key.

Priorities: each job gets one of a few levels (negative ones too), and a
pop takes the due jobs by (priority descending, run_at, enqueue order);
info() shows each job's priority, kept across retries and requeues.

Examples per backend: JOBARBITER_STATEFUL_EXAMPLES (default 200).
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from storage import (
    Backoff,
    Claim,
    Disposition,
    JobInfo,
    JobResult,
    ManualClock,
    MaxRetries,
    NewJob,
    Outcome,
    Policy,
    QueueStats,
    Status,
    Storage,
)
from storage.codec import encode
from storage.model import by_priority

from .backends import BACKENDS, BackendFactory, close

EXAMPLES = int(os.environ.get("JOBARBITER_STATEFUL_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

QUEUES = ("a", "b")
RUNNERS = ("r1", "r2", "r3")
STALE_HEARTBEATS = 5
UNREGISTERED_DELAY = Fraction(60)

# Every time and duration is a binary fraction, so floats carry them exactly.
# Result ttls: none kept, kept briefly (expired within a few steps), kept long.
POLICIES = (
    Policy(MaxRetries.count(0), Backoff.linear(0), 0.25, None, result_ttl=0),
    Policy(MaxRetries.count(1), Backoff.linear(0.5), 1.0, None, result_ttl=0.5),
    Policy(MaxRetries.count(2), Backoff.exponential(2), 0.5, None, result_ttl=2),
    Policy(MaxRetries.infinite(), Backoff.linear(2), 1.0, 1.0, result_ttl=600),
    Policy(MaxRetries.count(3), Backoff.exponential(1), 0.25, None, result_ttl=0.5),
    Policy(MaxRetries.count(1), Backoff.linear(1), 0.5, None, result_ttl=2),
)
UNIQUE_KEYS = st.sampled_from([None, None, None, "k1", "k2"])
# The default half the time, so that most pops meet a level of it.
PRIORITIES = st.sampled_from([0, 0, 0, 0, 2, 1, -1])

# Durations: small steps that land exactly on claim expiries and run_at times,
# and now and then one past the unregistered delay.
ADVANCES = st.one_of(
    st.integers(0, 48).map(lambda n: Fraction(n, 8)),
    st.just(Fraction(1, 64)),
    st.just(UNREGISTERED_DELAY + 1),
)

RESULTS = st.sampled_from(
    [
        JobResult.success(),
        JobResult.success(encode({"n": 1})),
        JobResult.success(encode("done")),
        JobResult.cancelled("stopped"),
        JobResult.failure("boom"),
        JobResult.failure("bang"),
        JobResult.unexecuted(),
        JobResult.unregistered("no such job"),
    ]
)
RELEASE_RESULTS = st.sampled_from(
    [
        JobResult.failure("arbiter died"),
        JobResult.unexecuted(),
        JobResult.success(),
        JobResult.cancelled("shutting down"),
    ]
)
CANCEL_REASONS = st.sampled_from(["no longer wanted", "superseded"])
KEPT = (Status.SUCCEEDED, Status.CANCELLED)


def _utc(at: Fraction) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(at), dt.UTC)


def _maybe_utc(at: Fraction | None) -> dt.datetime | None:
    return None if at is None else _utc(at)


# -- the reference model ------------------------------------------------------------


@dataclass
class ModelJob:
    id: uuid.UUID
    seq: int  # enqueue order: breaks ties between equal times
    queue: str
    args: bytes
    policy: Policy
    run_at: Fraction
    status: Status = Status.PENDING
    retry_count: int = 0
    runner: str | None = None
    expires: Fraction = Fraction(0)  # while running: when the claim goes stale
    died_at: Fraction = Fraction(0)  # while dead
    last_error: str | None = None
    unique_key: str | None = None
    value: bytes | None = None  # succeeded: what run returned
    started: Fraction | None = None  # when its latest claim was taken
    finished: Fraction | None = None  # succeeded, cancelled or dead: when
    kept_until: Fraction | None = None  # succeeded or cancelled: expires_at
    priority: int = 0


class Model:
    """Storage semantics, the slow and obvious way."""

    def __init__(self, now: Fraction) -> None:
        self.now = now
        # Pending, running, dead, and succeeded or cancelled records, which
        # stay here past their expiry until expire() (info() hides them).
        self.jobs: dict[uuid.UUID, ModelJob] = {}
        self.gone: set[uuid.UUID] = set()  # removed: ended with no ttl, purged, expired
        self.seq = 0
        self.holders: dict[str, uuid.UUID] = {}  # unique key -> the live job holding it
        self.paused: set[str] = set()

    def holder(self, key: str | None) -> uuid.UUID | None:
        """The job a push with ``key`` would return instead of a new one."""
        return None if key is None else self.holders.get(key)

    def push(self, job_id: uuid.UUID, job: NewJob, run_at: Fraction | None) -> None:
        self.seq += 1
        at = self.now if run_at is None else run_at
        self.jobs[job_id] = ModelJob(
            job_id,
            self.seq,
            job.queue,
            job.args,
            job.policy,
            at,
            unique_key=job.unique_key,
            priority=job.priority,
        )
        if job.unique_key is not None:
            assert job.unique_key not in self.holders
            self.holders[job.unique_key] = job_id

    def _free_key(self, job: ModelJob) -> None:
        if job.unique_key is not None and self.holders.get(job.unique_key) == job.id:
            del self.holders[job.unique_key]

    def visible(self, job: ModelJob) -> bool:
        """Whether info() and list() still show it: a kept record is hidden
        from its expiry on, before expire() removes it."""
        return job.kept_until is None or job.kept_until > self.now

    def shown(self) -> dict[uuid.UUID, ModelJob]:
        return {job_id: job for job_id, job in self.jobs.items() if self.visible(job)}

    def _end(self, job: ModelJob, status: Status) -> None:
        """Succeeded or cancelled: kept for its result_ttl, or gone."""
        self._free_key(job)
        job.runner = None
        ttl = Fraction(job.policy.result_ttl)
        if ttl == 0:
            del self.jobs[job.id]
            self.gone.add(job.id)
            return
        job.status = status
        job.finished = self.now
        job.kept_until = self.now + ttl

    def cancel(self, job_id: uuid.UUID, reason: str) -> Status | None:
        job = self.jobs.get(job_id)
        if job is None or not self.visible(job):
            return None
        if job.status is not Status.PENDING:
            return job.status  # running: its runner is asked; ended: left alone
        job.last_error = reason
        job.started = None
        self._end(job, Status.CANCELLED)
        return Status.PENDING

    def expire(self) -> int:
        doomed = [j.id for j in self.jobs.values() if not self.visible(j)]
        for job_id in doomed:
            del self.jobs[job_id]
            self.gone.add(job_id)
        return len(doomed)

    def pop(self, queue: str, runner: str, limit: int) -> list[uuid.UUID]:
        here = [job for job in self.jobs.values() if job.queue == queue]
        stale = [j for j in here if j.status is Status.RUNNING and j.expires < self.now]
        due = [j for j in here if j.status is Status.PENDING and j.run_at <= self.now]
        stale.sort(key=lambda j: (j.expires, j.seq))
        due.sort(key=lambda j: (-j.priority, j.run_at, j.seq))
        taken = (stale + due)[:limit]
        for job in taken:
            job.status = Status.RUNNING
            job.runner = runner
            job.started = self.now
            job.expires = self.now + self._lease(job)
        return [job.id for job in taken]

    def _lease(self, job: ModelJob) -> Fraction:
        return STALE_HEARTBEATS * Fraction(job.policy.heartbeat_interval)

    def _held(self, job_id: uuid.UUID, runner: str) -> ModelJob | None:
        job = self.jobs.get(job_id)
        if job is None or job.status is not Status.RUNNING or job.runner != runner:
            return None
        return job

    def heartbeat(self, runner: str, job_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        lost = []
        for job_id in job_ids:
            job = self._held(job_id, runner)
            if job is None:
                lost.append(job_id)
            else:
                job.expires = self.now + self._lease(job)
        return lost

    def complete(self, job_id: uuid.UUID, runner: str, result: JobResult) -> Disposition:
        job = self._held(job_id, runner)
        if job is None:
            return Disposition.NOT_HELD
        return self._settle(job, result)

    def release(self, runner: str, result: JobResult) -> dict[uuid.UUID, Disposition]:
        held = [j for j in self.jobs.values() if j.status is Status.RUNNING and j.runner == runner]
        return {job.id: self._settle(job, result) for job in held}

    def _settle(self, job: ModelJob, result: JobResult) -> Disposition:
        job.runner = None
        if result.outcome is Outcome.SUCCESS:
            job.value = result.value
            self._end(job, Status.SUCCEEDED)
            return Disposition.FINISHED
        if result.outcome is Outcome.CANCELLED:
            job.last_error = result.error
            self._end(job, Status.CANCELLED)
            return Disposition.CANCELLED
        if result.outcome is Outcome.UNEXECUTED:
            job.status = Status.PENDING  # run_at, retry_count, last_error unchanged
            return Disposition.REQUEUED
        job.last_error = result.error
        if result.outcome is Outcome.UNREGISTERED:
            job.status = Status.PENDING
            job.run_at = self.now + UNREGISTERED_DELAY
            return Disposition.REQUEUED
        job.retry_count += 1
        limit = job.policy.max_retries.limit
        if limit is None or job.retry_count <= limit:
            backoff = job.policy.backoff
            if backoff.kind == "linear":
                delay = Fraction(backoff.value)
            else:
                delay = Fraction(backoff.value) ** job.retry_count
            job.status = Status.PENDING
            job.run_at = self.now + delay
            return Disposition.RETRYING
        job.status = Status.DEAD
        job.died_at = job.finished = self.now
        self._free_key(job)
        return Disposition.DEAD

    def requeue(self, job_id: uuid.UUID) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.status is not Status.DEAD:
            return False
        job.status = Status.PENDING
        job.retry_count = 0
        job.run_at = self.now
        job.finished = None
        if job.unique_key is not None:
            # Live again: it holds its key once more, unless another job took it.
            self.holders.setdefault(job.unique_key, job.id)
        return True

    def purge_dead(self, older_than: Fraction | None) -> int:
        doomed = [
            j.id
            for j in self.jobs.values()
            if j.status is Status.DEAD and (older_than is None or j.died_at < self.now - older_than)
        ]
        for job_id in doomed:
            del self.jobs[job_id]
            self.gone.add(job_id)
        return len(doomed)

    def stats(self) -> dict[str, QueueStats]:
        stats = {}
        live = [j for j in self.jobs.values() if j.status not in KEPT]
        for queue in sorted({j.queue for j in live}):
            jobs = [j for j in live if j.queue == queue]
            here = [j.status for j in jobs]
            stats[queue] = QueueStats(
                pending=here.count(Status.PENDING),
                running=here.count(Status.RUNNING),
                dead=here.count(Status.DEAD),
                scheduled=sum(self.scheduled(j) for j in jobs),
                oldest_due_at=min(
                    (
                        float(j.run_at)
                        for j in jobs
                        if j.status is Status.PENDING and j.run_at <= self.now
                    ),
                    default=None,
                ),
                pending_by_priority=by_priority(
                    collections.Counter(
                        j.priority for j in jobs if j.status is Status.PENDING
                    ).items()
                ),
            )
        return stats

    def scheduled(self, job: ModelJob) -> bool:
        """Pending, not due yet, never failed: what stats count as scheduled."""
        return job.status is Status.PENDING and job.retry_count == 0 and job.run_at > self.now

    def page(
        self,
        queue: str | None,
        status: Status | None,
        scheduled: bool | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> list[uuid.UUID]:
        """What list() gives: the shown jobs that pass every filter, in the
        order they were queued, past ``after`` by id, ``limit`` at most."""
        found = sorted(
            (
                job
                for job in self.shown().values()
                if queue in (None, job.queue)
                and status in (None, job.status)
                and (
                    scheduled is None
                    or (job.status is Status.PENDING and self.scheduled(job) is scheduled)
                )
                and (after is None or job.id.int > after.int)
            ),
            key=lambda job: job.seq,
        )
        return [job.id for job in found[: max(limit, 0)]]

    def next_due_bounds(self, queue: str) -> tuple[Fraction, Fraction] | None:
        """The range next_due() must fall in: a pending job is due at its run_at;
        a claim can be taken just after it expires (within a millisecond)."""
        here = [j for j in self.jobs.values() if j.queue == queue]
        low: list[Fraction] = []
        high: list[Fraction] = []
        for job in here:
            if job.status is Status.PENDING:
                low.append(job.run_at)
                high.append(job.run_at)
            elif job.status is Status.RUNNING:
                low.append(job.expires)
                high.append(job.expires + Fraction(1, 1000))
        return (min(low), min(high)) if low else None


# -- the machine ----------------------------------------------------------------------


class StorageMachine(RuleBasedStateMachine):
    """Drives one backend and the model side by side. Subclassed per backend."""

    factory: BackendFactory

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.storage: Storage = type(self).factory(self.clock)
        self.model = Model(Fraction(self.clock.now()))
        self.pushed: list[uuid.UUID] = []
        self.made = 0
        self.cancel_asked: set[uuid.UUID] = set()  # running jobs cancel() was called on

    def teardown(self) -> None:
        close(self.storage)

    # -- helpers

    def _run_at(self, data: st.DataObject) -> Fraction | None:
        kinds = ["now", "now", "relative", "absolute"]  # "now" half the time
        kind = data.draw(st.sampled_from(kinds), label="run_at kind")
        if kind == "now":
            return None
        if kind == "relative":  # past, present or future, in eighths of a second
            return self.model.now + Fraction(data.draw(st.integers(-16, 24), label="in 1/8 s"), 8)
        # A few absolute instants, so that many jobs share one run_at.
        start = Fraction(int(self.model.now))
        return start + data.draw(st.sampled_from([0, -1, 1, 3]), label="at second")

    def _new_job(self, data: st.DataObject, queue: str) -> tuple[NewJob, Fraction | None]:
        policy = data.draw(st.sampled_from(POLICIES), label="policy")
        run_at = self._run_at(data)
        self.made += 1
        job = NewJob(
            name="tests.Stateful",
            queue=queue,
            args=self.made.to_bytes(4, "big"),
            policy=policy,
            run_at=None if run_at is None else float(run_at),
            unique_key=data.draw(UNIQUE_KEYS, label="unique key"),
            priority=data.draw(PRIORITIES, label="priority"),
        )
        return job, run_at

    def _add(self, job_id: uuid.UUID, job: NewJob, run_at: Fraction | None) -> None:
        """Check the id a push returned against the model, and record it."""
        holder = self.model.holder(job.unique_key)
        if holder is not None:
            assert job_id == holder  # the live job with that key, nothing stored
            return
        assert job_id not in self.pushed
        self.pushed.append(job_id)
        self.model.push(job_id, job, run_at)

    def _any_id(self, data: st.DataObject) -> uuid.UUID:
        return data.draw(st.sampled_from(self.pushed), label="job id")

    def _running(self) -> list[ModelJob]:
        return [j for j in self.model.jobs.values() if j.status is Status.RUNNING]

    def _dead(self) -> list[ModelJob]:
        return [j for j in self.model.jobs.values() if j.status is Status.DEAD]

    def _holders(self) -> list[str]:
        return sorted({j.runner for j in self._running() if j.runner is not None})

    # -- rules

    @initialize()
    def start(self) -> None:
        assert self.storage.stats() == {}

    @rule(data=st.data(), queue=st.sampled_from(QUEUES))
    def push(self, data: st.DataObject, queue: str) -> None:
        job, run_at = self._new_job(data, queue)
        self._add(self.storage.push(job), job, run_at)

    @rule(data=st.data(), queue=st.sampled_from(QUEUES), count=st.integers(0, 4))
    def push_many(self, data: st.DataObject, queue: str, count: int) -> None:
        made = [self._new_job(data, queue) for _ in range(count)]
        job_ids = self.storage.push_many([job for job, _ in made])
        assert len(job_ids) == count
        for job_id, (job, run_at) in zip(job_ids, made, strict=True):
            self._add(job_id, job, run_at)

    @rule(queue=st.sampled_from(QUEUES), runner=st.sampled_from(RUNNERS), limit=st.integers(1, 3))
    def pop(self, queue: str, runner: str, limit: int) -> None:
        popped = self.storage.pop(queue, runner, limit)
        expected = self.model.pop(queue, runner, limit)
        assert [job.id for job in popped] == expected
        for job in popped:
            self._check_claim(job, runner, queue)

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        runner = data.draw(st.sampled_from(self._holders() + list(RUNNERS)), label="runner")
        mine = [j.id for j in self._running() if j.runner == runner]
        keep = (
            data.draw(st.lists(st.sampled_from(mine), unique=True), label="beats") if mine else []
        )
        others = data.draw(st.lists(st.sampled_from(self.pushed), max_size=2), label="others")
        job_ids = list(dict.fromkeys(keep + others))
        lost = self.storage.heartbeat(runner, job_ids)
        assert sorted(lost) == sorted(self.model.heartbeat(runner, job_ids))

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data(), result=RESULTS)
    def complete(self, data: st.DataObject, result: JobResult) -> None:
        """Mostly a held job by its holder; now and then the wrong runner or any job."""
        running = self._running()
        choice = data.draw(st.integers(0, 9), label="whose job")
        if choice == 0:  # any job ever pushed, any runner: mostly NOT_HELD
            job_id = self._any_id(data)
            runner = data.draw(st.sampled_from(RUNNERS), label="runner")
        else:
            job = data.draw(st.sampled_from(running), label="held job")
            assert job.runner is not None
            job_id, runner = job.id, job.runner
            if choice == 1:
                runner = data.draw(st.sampled_from(RUNNERS), label="runner")
        self._complete(job_id, runner, result)

    @rule(data=st.data())
    def complete_and_pop(self, data: st.DataObject) -> None:
        """A round of runners' messages: some completions (mostly of held jobs
        by their holders), then some pops, in one call."""
        completions = []
        for _ in range(data.draw(st.integers(0, 4), label="completions")):
            running = self._running()
            if running and data.draw(st.integers(0, 4), label="held?") > 0:
                job = data.draw(st.sampled_from(running), label="held job")
                assert job.runner is not None
                job_id, runner = job.id, job.runner
            elif self.pushed:
                job_id = self._any_id(data)
                runner = data.draw(st.sampled_from(RUNNERS), label="runner")
            else:
                continue
            completions.append((job_id, runner, data.draw(RESULTS, label="result")))
        pops = data.draw(
            st.lists(
                st.tuples(st.sampled_from(QUEUES), st.sampled_from(RUNNERS), st.integers(1, 3)),
                max_size=4,
            ),
            label="pops",
        )
        settled, popped = self.storage.complete_and_pop(completions, pops)
        assert settled == [self.model.complete(*c) for c in completions]
        assert [[job.id for job in jobs] for jobs in popped] == [self.model.pop(*p) for p in pops]
        for (queue, runner, _), jobs in zip(pops, popped, strict=True):
            for job in jobs:
                self._check_claim(job, runner, queue)

    def _complete(self, job_id: uuid.UUID, runner: str, result: JobResult) -> None:
        disposition = self.storage.complete(job_id, runner, result)
        assert disposition is self.model.complete(job_id, runner, result)

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data(), result=RELEASE_RESULTS)
    def release(self, data: st.DataObject, result: JobResult) -> None:
        runner = data.draw(st.sampled_from(self._holders() + list(RUNNERS)), label="runner")
        settled = self.storage.release(runner, result)
        expected = self.model.release(runner, result)
        assert len(settled) == len(expected)
        assert dict(settled) == expected

    @precondition(lambda self: bool(self.pushed))
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        dead = self._dead()
        if dead and data.draw(st.integers(0, 3), label="a dead job?") != 0:
            job_id = data.draw(st.sampled_from(dead), label="dead job").id
        else:
            job_id = self._any_id(data)
        assert self.storage.requeue(job_id) is self.model.requeue(job_id)

    @precondition(lambda self: bool(self._dead()))
    @rule(data=st.data())
    def purge_dead(self, data: st.DataObject) -> None:
        # Often exactly the age of a dead job, to pin the "more than" boundary.
        ages = sorted({self.model.now - job.died_at for job in self._dead()})
        older_than = data.draw(
            st.one_of(
                st.none(),
                st.sampled_from(ages),
                st.sampled_from(ages).map(lambda age: max(age - Fraction(1, 8), Fraction(0))),
                st.integers(0, 12).map(lambda n: Fraction(n, 2)),
            ),
            label="older_than",
        )
        arg = None if older_than is None else float(older_than)
        assert self.storage.purge_dead(arg) == self.model.purge_dead(older_than)

    @precondition(lambda self: bool(self.pushed))
    @rule(data=st.data(), reason=CANCEL_REASONS)
    def cancel(self, data: st.DataObject, reason: str) -> None:
        """Mostly a pending or running job; now and then any job, or none."""
        live = [j for j in self.model.jobs.values() if j.status in (Status.PENDING, Status.RUNNING)]
        choice = data.draw(st.integers(0, 5), label="which job")
        if live and choice > 1:
            job_id = data.draw(st.sampled_from(live), label="live job").id
        elif choice == 1:
            job_id = uuid.uuid4()
        else:
            job_id = self._any_id(data)
        before = self.model.jobs.get(job_id)
        expected = self.model.cancel(job_id, reason)
        assert self.storage.cancel(job_id, reason) is expected
        if expected is Status.RUNNING:
            assert before is not None
            self.cancel_asked.add(job_id)

    @precondition(lambda self: bool(self._asked_to_stop()))
    @rule(data=st.data())
    def stop_a_cancelled_job(self, data: st.DataObject) -> None:
        """The runtime's part of cancel(): the runner of a running job that was
        cancelled stops it and completes it CANCELLED; it never runs again."""
        job = data.draw(st.sampled_from(self._asked_to_stop()), label="cancelled job")
        assert job.runner is not None
        self._complete(job.id, job.runner, JobResult.cancelled("stopped by cancel"))

    def _asked_to_stop(self) -> list[ModelJob]:
        return [j for j in self._running() if j.id in self.cancel_asked]

    @rule(
        data=st.data(),
        queue=st.sampled_from([None, *QUEUES]),
        status=st.sampled_from([None, *Status]),
        scheduled=st.sampled_from([None, None, True, False]),
        limit=st.integers(0, 4),
    )
    def list_page(
        self,
        data: st.DataObject,
        queue: str | None,
        status: Status | None,
        scheduled: bool | None,
        limit: int,
    ) -> None:
        """One page, from just past a job's id (any job ever pushed, gone or
        not), a UUID of no job, or the start."""
        kind = data.draw(st.sampled_from(["start", "job", "job", "other"]), label="after")
        after = None
        if kind == "job" and self.pushed:
            after = self._any_id(data)
        elif kind == "other":
            after = uuid.UUID(int=data.draw(st.integers(0, (1 << 128) - 1), label="uuid"))
        page = self.storage.list(
            queue=queue, status=status, scheduled=scheduled, after=after, limit=limit
        )
        assert [job.id for job in page] == self.model.page(queue, status, scheduled, after, limit)
        for job in page:
            self._check_job(job)

    @rule(queue=st.sampled_from([*QUEUES, "idle"]), paused=st.booleans())
    def set_paused(self, queue: str, paused: bool) -> None:
        self.storage.set_paused(queue, paused)
        if paused:
            self.model.paused.add(queue)
        else:
            self.model.paused.discard(queue)

    @rule()
    def expire(self) -> None:
        assert self.storage.expire() == self.model.expire()

    @rule(seconds=ADVANCES)
    def advance(self, seconds: Fraction) -> None:
        self._advance(seconds)

    @precondition(lambda self: bool(self._moments()))
    @rule(data=st.data(), just_past=st.booleans())
    def advance_to_a_moment(self, data: st.DataObject, just_past: bool) -> None:
        """Move the clock exactly onto a run_at or a claim's expiry, or just past it."""
        target = data.draw(st.sampled_from(self._moments()), label="moment")
        self._advance(target - self.model.now + (Fraction(1, 64) if just_past else 0))

    def _moments(self) -> list[Fraction]:
        moments = set()
        for job in self.model.jobs.values():
            if job.status is Status.PENDING:
                moments.add(job.run_at)
            elif job.status is Status.RUNNING:
                moments.add(job.expires)
            elif job.kept_until is not None:
                moments.add(job.kept_until)
        return sorted(m for m in moments if m >= self.model.now)

    def _advance(self, seconds: Fraction) -> None:
        self.clock.advance(float(seconds))
        self.model.now += seconds
        assert self.storage.now() == float(self.model.now)

    # -- invariants

    def _check_claim(self, claim: Claim, runner: str, queue: str) -> None:
        expected = self.model.jobs[claim.id]
        assert (claim.name, claim.queue, claim.args) == ("tests.Stateful", queue, expected.args)
        assert (claim.retry_count, claim.timeout) == (
            expected.retry_count,
            expected.policy.timeout,
        )
        record = self.storage.info(claim.id)
        assert record is not None
        assert (record.status, record.runner) == (Status.RUNNING, runner)
        self._check_job(record)

    def _check_job(self, job: JobInfo) -> None:
        expected = self.model.jobs[job.id]
        assert (job.queue, job.status, job.runner) == (
            expected.queue,
            expected.status,
            expected.runner,
        )
        assert (job.retry_count, job.last_error) == (expected.retry_count, expected.last_error)
        assert (job.name, job.args) == ("tests.Stateful", expected.args)
        assert job.run_at == _utc(expected.run_at)
        assert job.max_retries == expected.policy.max_retries
        assert job.backoff == expected.policy.backoff
        assert job.heartbeat_interval == expected.policy.heartbeat_interval
        assert job.timeout == expected.policy.timeout
        assert job.unique_key == expected.unique_key
        assert job.priority == expected.priority
        assert job.result == expected.value
        assert job.started_at == _maybe_utc(expected.started)
        assert job.finished_at == _maybe_utc(expected.finished)
        assert job.expires_at == _maybe_utc(expected.kept_until)

    @invariant()
    def stats_agree(self) -> None:
        stored, expected = self.storage.stats(), self.model.stats()
        assert stored == expected
        # Left out of ==: compared in order, highest priority first.
        split = {q: list(s.pending_by_priority.items()) for q, s in stored.items()}
        assert split == {q: list(s.pending_by_priority.items()) for q, s in expected.items()}

    @invariant()
    def every_job_is_in_exactly_one_place(self) -> None:
        listing = self.storage.list(limit=len(self.pushed) + 1)
        listed = [job.id for job in listing]
        shown = self.model.shown()
        assert len(listed) == len(set(listed))
        assert set(listed) == set(shown)
        assert set(listed).isdisjoint(self.model.gone)
        assert set(self.model.jobs) | self.model.gone == set(self.pushed)  # nothing lost
        for job in listing:
            self._check_job(job)
        # In the order they were queued, which is id order.
        assert listed == [j.id for j in sorted(shown.values(), key=lambda j: j.seq)]
        assert listed == sorted(listed)
        for status in Status:
            expected = [
                j.id for j in sorted(shown.values(), key=lambda j: j.seq) if j.status is status
            ]
            assert [job.id for job in self.storage.list(status=status, limit=1000)] == expected

    @invariant()
    def pauses_agree(self) -> None:
        assert self.storage.paused() == frozenset(self.model.paused)

    @invariant()
    def records_agree(self) -> None:
        """info() of every job ever pushed: gone, hidden (expired) or as modelled."""
        for job_id in self.pushed:
            job = self.model.jobs.get(job_id)
            record = self.storage.info(job_id)
            if job is None or not self.model.visible(job):
                assert record is None
            else:
                assert record is not None
                self._check_job(record)

    @invariant()
    def next_due_agrees(self) -> None:
        for queue in QUEUES:
            due = self.storage.next_due(queue)
            bounds = self.model.next_due_bounds(queue)
            if bounds is None:
                assert due is None
            else:
                assert due is not None
                low, high = bounds
                if low == high:
                    assert due == float(low)
                else:
                    assert float(low) <= due <= float(high)


def machine_for(factory: BackendFactory) -> type[StorageMachine]:
    return type(f"StorageMachine_{factory.__name__}", (StorageMachine,), {"factory": factory})


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_storage_matches_the_model(backend: str) -> None:
    run_state_machine_as_test(machine_for(BACKENDS[backend]), settings=SETTINGS)
