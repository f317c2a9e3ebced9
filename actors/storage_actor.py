"""StorageActor: the only owner of a Storage.

It opens the storage when it starts, on its own thread; ask it ``Opened()``
to learn whether that worked (the answer raises what ``open()`` raised).

Every read and write of jobs goes through this actor's mailbox, so a backend
is only ever called from one thread. Pops that find nothing due are parked per
queue and answered when a push arrives or the earliest due time passes; a
single timer thread ("the waker") sleeps until that time, so nothing polls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pykka

from actors.ops import (
    Batch,
    Complete,
    DoneCounts,
    Drain,
    Heartbeat,
    Info,
    ListJobs,
    Pop,
    PurgeDead,
    Push,
    Release,
    Reply,
    Requeue,
    Retire,
    Start,
    Stats,
    StorageError,
    Tick,
    Unpark,
    WhenIdle,
)
from storage import Disposition, JobInfo, JobResult, Outcome, Storage
from storage.events import EventLog, last_line

log = EventLog("storage")

# Messages handled while deliveries stay buffered, when the mailbox is busy.
MAX_UNFLUSHED = 16
# Seconds between two checks for idleness (join); a join returns this late at most.
IDLE_CHECK_INTERVAL = 0.05

# Told (runner, job id, timeout) when a job outlives its TIMEOUT: the Manager
# stops it for real by recycling the runner's process.
TimeoutHandler = Callable[[str, uuid.UUID, float], None]


class _Waker:
    """One thread that tells the actor to Tick at the earliest asked-for time."""

    def __init__(self, ref: pykka.ActorRef[Any], clock: Callable[[], float]) -> None:
        self._ref = ref
        self._clock = clock
        self._cond = threading.Condition()
        self._at: float | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="jobarbiter-waker", daemon=True)
        self._thread.start()

    def wake_at(self, at: float | None) -> None:
        with self._cond:
            if at == self._at:
                return
            sooner = at is not None and (self._at is None or at < self._at)
            self._at = at
            if sooner:
                # Only then: a later time is found when the thread wakes at
                # the earlier one; waking it for each message would cost a
                # thread switch per message on a busy actor.
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._at is None:
                    self._cond.wait()
                    continue
                delay = self._at - self._clock()
                if delay > 0:
                    # Capped, so a clock that is moved by hand is noticed too.
                    self._cond.wait(min(delay, 1.0))
                    continue
                self._at = None
                try:
                    self._ref.tell(Tick())
                except pykka.ActorDeadError:
                    return  # the actor stopped between our checks


class StorageActor(pykka.ThreadingActor):
    """Serialises all access to one Storage; see actors/ops.py for the messages."""

    use_daemon_thread = True

    def __init__(self, storage: Storage, on_timeout: TimeoutHandler | None = None) -> None:
        super().__init__()
        self._storage = storage
        self._on_timeout = on_timeout
        # Jobs handed out with a TIMEOUT: a heap of (deadline, delivery, runner,
        # id, timeout), and the live delivery of each (runner, id), so that a
        # deadline of a job since completed or handed out again is ignored.
        self._deadlines: list[tuple[float, int, str, uuid.UUID, float]] = []
        self._timed: dict[tuple[str, uuid.UUID], int] = {}
        self._timeouts: dict[tuple[str, uuid.UUID], float] = {}  # delivered, not ended
        # What each runner reported Started and has not ended: its other held
        # jobs are buffered, and go back unexecuted if it dies.
        self._started: dict[str, set[uuid.UUID]] = {}
        self._deliveries = itertools.count()
        self._parked: dict[str, deque[Pop]] = {}
        self._draining: set[str] = set()
        self._idle_waiters: list[Callable[[bool], None]] = []
        self._touched: set[Reply] = set()
        self._unflushed = 0
        # Only a settled job can make the storage idle; join() waits on that.
        self._settled_since_idle_check = True
        self._next_idle_check = 0.0
        self._idle_recheck_armed = False
        self._waker: _Waker | None = None
        self._open_failed: Exception | None = None
        self.done_by_runner: dict[str, int] = {}

    def on_start(self) -> None:
        try:
            self._storage.open()
        except Exception as exc:
            # Kept for the Opened probe: raised to whoever started us, by name.
            self._open_failed = exc
            return
        self._waker = _Waker(self.actor_ref, self._storage.now)
        me = self.actor_ref

        def wake() -> None:
            # Called from the storage's own listener thread.
            try:
                me.tell(Tick())
            except pykka.ActorDeadError:
                pass

        self._storage.subscribe(wake)

    def on_stop(self) -> None:
        if self._waker is not None:
            self._waker.stop()
        if self._open_failed is None:
            self._storage.close()

    def on_receive(self, message: Any) -> Any:
        if self._open_failed is not None:
            raise self._open_failed
        if isinstance(message, Opened):
            return None
        if isinstance(message, _Recheck):
            self._idle_recheck_armed = False
            self._after_message()
            return None
        # Every answer leaves after the commit: an acknowledged job is durable.
        try:
            if isinstance(message, _Round):
                self._run_round(message.rounds.take())
                return None
            if isinstance(message, Batch):
                if message.answer is not None:
                    self._run_round([message])
                    return None
                answers = self._run_batch(message.ops)
                failed = self._commit()
                return answers if failed is None else [failed] * len(answers)
            answer = self._run(message)
            failed = self._commit()
            if failed is not None:
                raise failed
            return answer
        finally:
            self._after_message()

    # -- dispatch -------------------------------------------------------------

    def _run_round(self, batches: list[Batch]) -> None:
        """Run batches as one: one ``complete_and_pop``, one commit, then each
        batch's answers to its sender."""
        ops = [op for batch in batches for op in batch.ops]
        answers = self._run_batch(ops)
        failed = self._commit()
        if failed is not None:
            answers = [failed] * len(answers)
        start = 0
        for batch in batches:
            end = start + len(batch.ops)
            if batch.answer is not None:
                batch.answer(answers[start:end])
            start = end

    def _run_batch(self, ops: Sequence[object]) -> list[Any]:
        """Answer every op of a batch, in as few storage calls as it allows.

        The completions and the pops that answer through a Reply go first,
        together, in one ``complete_and_pop``; then the other ops, in order.
        Those others do not depend on that order (heartbeats; pushes, which
        serve any pop that was parked meanwhile), except a Drain or Retire:
        its runner's pops wait until after it, so they find the runner drained.
        """
        answers: list[Any] = [None] * len(ops)
        completes: list[int] = []
        waiting: list[Pop] = []
        others: list[int] = []
        for at, op in enumerate(ops):
            if isinstance(op, Start):
                # Before the completions: a job may start and end in one batch.
                self._start(op.runner, op.job_id)
            elif isinstance(op, Complete):
                completes.append(at)
            elif isinstance(op, Pop) and op.reply is not None:
                waiting.append(op)
            else:
                others.append(at)
        leaving = {op.runner for op in ops if isinstance(op, Drain | Retire)}
        if completes or waiting:
            batch = [cast(Complete, ops[at]) for at in completes]
            pops = [op for op in waiting if op.runner not in leaving]
            try:
                dispositions: Sequence[Disposition | StorageError]
                dispositions = self._complete_and_pop(batch, pops)
            except StorageError as exc:
                dispositions = [exc] * len(batch)
            for at, disposition in zip(completes, dispositions, strict=True):
                answers[at] = disposition
        for at in others:
            answers[at] = self._run_safely(ops[at])
        late = [op for op in waiting if op.runner in leaving]
        if late:
            self._complete_and_pop([], late)  # answered empty: their runner is leaving
        return answers

    def _complete_and_pop(self, completes: list[Complete], pops: list[Pop]) -> list[Disposition]:
        """Settle ``completes``, then serve ``pops`` (which answer through
        their Reply) with one storage claim per (queue, runner); whoever gets
        nothing is parked, in order. A storage failure parks every pop, to be
        tried again at the next push or tick, and is raised for the completes."""
        for done in completes:
            started = self._started.get(done.runner)
            if started:
                started.discard(done.job_id)
            if self._timeouts:
                self._timeouts.pop((done.runner, done.job_id), None)
                self._timed.pop((done.runner, done.job_id), None)
        groups: dict[tuple[str, str], list[Pop]] = {}
        for pop in pops:
            if pop.runner in self._draining:
                self._deliver(pop, [])
            else:
                groups.setdefault((pop.queue, pop.runner), []).append(pop)
        items = [(done.job_id, done.runner, done.result) for done in completes]
        claims = [(q, r, sum(p.limit for p in group)) for (q, r), group in groups.items()]
        if not items and not claims:
            return []
        try:
            dispositions, claimed = self._storage.complete_and_pop(items, claims)
        except Exception as exc:
            failed = self._failed(completes[0] if completes else pops[0], exc)
            for group in groups.values():
                for pop in group:
                    self._park(pop)
            raise failed from exc
        for done, disposition in zip(completes, dispositions, strict=True):
            self._settled(done.job_id, done.runner, done.result, disposition)
        for group, jobs in zip(groups.values(), claimed, strict=True):
            taken = 0
            for pop in group:
                share = jobs[taken : taken + pop.limit]
                taken += len(share)
                self._hand_out(pop, share)
        return dispositions

    def _hand_out(self, pop: Pop, jobs: list[JobInfo]) -> None:
        """Deliver ``jobs`` for ``pop``; park it, or what is left of it, if it
        is not answered by them."""
        if jobs:
            self._deliver(pop, jobs)
        rest = pop.limit - len(jobs)
        if not jobs or (pop.keep and rest > 0):
            if jobs:
                pop = dataclasses.replace(pop, limit=rest, urgent=max(pop.urgent - len(jobs), 0))
            self._park(pop)

    def _park(self, pop: Pop) -> None:
        parked = self._parked.setdefault(pop.queue, deque())
        if pop.keep:
            for at, other in enumerate(parked):
                if other.keep and other.runner == pop.runner:
                    # One entry per runner: its credits add up, and its newest
                    # word on idle workers holds.
                    limit = other.limit + pop.limit
                    parked[at] = dataclasses.replace(
                        other, limit=limit, urgent=min(pop.urgent, limit)
                    )
                    return
        parked.append(pop)

    def _commit(self) -> StorageError | None:
        try:
            self._storage.commit()
        except Exception as exc:
            return self._failed(_Commit(), exc)
        return None

    def _run_safely(self, op: object) -> Any:
        try:
            return self._run(op)
        except StorageError as exc:
            return exc
        except Exception as exc:
            return self._failed(op, exc)

    def _failed(self, op: object, exc: Exception) -> StorageError:
        log.error("storage operation failed", op=type(op).__name__, exc_info=exc)
        return StorageError(op, exc)

    def _run(self, op: object) -> Any:
        try:
            return self._dispatch(op)
        except StorageError:
            raise
        except Exception as exc:
            raise self._failed(op, exc) from exc

    def _dispatch(self, op: object) -> Any:
        storage = self._storage
        match op:
            case Pop():
                return self._pop(op)
            case Complete():
                return self._complete_and_pop([op], [])[0]
            case Push(jobs):
                ids = storage.push_many(jobs)
                for queue in {job.queue for job in jobs}:
                    self._serve(queue)
                return ids
            case Heartbeat(runner, job_ids):
                return storage.heartbeat(runner, job_ids)
            case Release(runner, result):
                return self._release(runner, result)
            case Drain(runner):
                self._drain(runner)
                return None
            case Retire(runner, result, unstarted):
                return self._retire(runner, result, unstarted)
            case Start(runner, job_id):
                self._start(runner, job_id)
                return None
            case Info(job_id):
                return storage.info(job_id)
            case ListJobs(queue, status, offset, limit):
                return storage.list(queue=queue, status=status, offset=offset, limit=limit)
            case Requeue(job_id):
                requeued = storage.requeue(job_id)
                if requeued:
                    self._serve_all()
                return requeued
            case PurgeDead(older_than):
                return storage.purge_dead(older_than)
            case Stats():
                return storage.stats()
            case DoneCounts():
                return dict(self.done_by_runner)
            case WhenIdle(done):
                self._idle_waiters.append(done)
                self._settled_since_idle_check = True
                return None
            case Unpark(reply):
                self._unpark(lambda op: op.reply is reply)
                return None
            case Tick():
                self._serve_all()
                if self._storage.poll_interval is not None:
                    # Shared storage: other hosts settle jobs too.
                    self._settled_since_idle_check = True
                return None
        raise TypeError(f"StorageActor does not understand {op!r}")

    # -- pops -------------------------------------------------------------------

    def _pop(self, op: Pop) -> list[JobInfo] | None:
        if op.reply is not None:
            # Answered through its Reply, now or later (parked even if the
            # storage failed: it is tried again at the next push or tick).
            with contextlib.suppress(StorageError):
                self._complete_and_pop([], [op])
            return None
        if op.runner in self._draining:
            return []
        return self._storage.pop(op.queue, op.runner, op.limit)

    def _deliver(self, op: Pop, jobs: list[JobInfo]) -> None:
        assert op.reply is not None
        if log.debugging:
            for job in jobs:
                log.debug(
                    "job started",
                    job_id=job.id,
                    job_name=job.name,
                    queue=job.queue,
                    runner=op.runner,
                )
        for job in jobs:
            if job.timeout is not None:
                # Its TIMEOUT counts from its start, which the runner reports.
                self._timeouts[(op.runner, job.id)] = job.timeout
        op.reply.deliver(op.token, jobs)
        self._touched.add(op.reply)

    def _serve(self, queue: str) -> None:
        """Serve the parked pops of ``queue`` while jobs are due: first those
        for idle workers, then the rest (prefetch credits), each in order."""
        parked = self._parked.get(queue)
        if not parked:
            return
        for urgent_only in (True, False):
            waiting, parked = parked, deque()
            self._parked[queue] = parked
            while waiting:
                op = waiting.popleft()
                want = op.urgent if urgent_only else op.limit
                jobs = self._storage.pop(queue, op.runner, want) if want else []
                if jobs:
                    self._deliver(op, jobs)
                    rest = op.limit - len(jobs)
                    if not op.keep or rest <= 0:
                        continue
                    op = dataclasses.replace(op, limit=rest, urgent=max(op.urgent - len(jobs), 0))
                parked.append(op)
                if want and len(jobs) < want:  # nothing more is due: keep the order
                    parked.extend(waiting)
                    return

    def _start(self, runner: str, job_id: uuid.UUID) -> None:
        self._started.setdefault(runner, set()).add(job_id)
        timeout = self._timeouts.get((runner, job_id))
        if timeout is not None:
            delivery = next(self._deliveries)
            self._timed[(runner, job_id)] = delivery
            deadline = self._storage.now() + timeout
            heapq.heappush(self._deadlines, (deadline, delivery, runner, job_id, timeout))

    def _serve_all(self) -> None:
        for queue in list(self._parked):
            self._serve(queue)

    def _drain(self, runner: str) -> None:
        self._draining.add(runner)
        for op in self._unpark(lambda op: op.runner == runner):
            self._deliver(op, [])

    def _unpark(self, doomed: Callable[[Pop], bool]) -> list[Pop]:
        """Withdraw the parked pops ``doomed`` picks; returns them."""
        withdrawn = []
        for parked in self._parked.values():
            kept = [op for op in parked if not doomed(op)]
            withdrawn += [op for op in parked if doomed(op)]
            parked.clear()
            parked.extend(kept)
        return withdrawn

    # -- settling -----------------------------------------------------------------

    def _retire(
        self, runner: str, result: JobResult, unstarted: JobResult | None
    ) -> list[tuple[uuid.UUID, Disposition]]:
        self._drain(runner)
        started = sorted(self._started.pop(runner, ()))
        if unstarted is None:
            return self._release(runner, result)
        # The jobs it was running fail an attempt; its buffer never ran.
        ended = self._complete_and_pop([Complete(j, runner, result) for j in started], [])
        settled = [
            (job_id, how)
            for job_id, how in zip(started, ended, strict=True)
            if how is not Disposition.NOT_HELD
        ]
        return settled + self._release(runner, unstarted)

    def _release(self, runner: str, result: JobResult) -> list[Any]:
        settled = self._storage.release(runner, result)
        for job_id, disposition in settled:
            self._settled(job_id, runner, result, disposition)
        if settled:
            self._serve_all()
        return settled

    def _settled(
        self, job_id: Any, runner: str, result: JobResult, disposition: Disposition
    ) -> None:
        self._settled_since_idle_check = True
        if disposition is Disposition.FINISHED:
            self.done_by_runner[runner] = self.done_by_runner.get(runner, 0) + 1
            log.debug("job succeeded", job_id=job_id, runner=runner)
            return
        if disposition is Disposition.NOT_HELD:
            log.info(
                "completion from a runner that no longer holds the job",
                job_id=job_id,
                runner=runner,
                outcome=result.outcome.value,
            )
            return
        info = self._storage.info(job_id)
        fields: dict[str, Any] = {"job_id": job_id, "runner": runner}
        if info is not None:
            fields.update(job_name=info.name, queue=info.queue, retry_count=info.retry_count)
            # A retry or a put-back may be due at once: wake its parked pops.
            self._serve(info.queue)
        if disposition is Disposition.RETRYING:
            log.warning("job failed, will retry", error=last_line(result.error), **fields)
        elif disposition is Disposition.DEAD:
            log.error("job dead, out of retries", error=last_line(result.error), **fields)
        elif result.outcome is Outcome.UNREGISTERED:
            # Never silent: a deploy that forgot a job class strands its jobs.
            log.warning("job not registered; put back for later", error=result.error, **fields)
        else:
            log.info("job put back", outcome=result.outcome.value, **fields)

    # -- after each message -----------------------------------------------------

    def _after_message(self) -> None:
        # While more messages wait, keep buffering: their deliveries then leave
        # in the same frames, one write per runner, instead of one per message.
        if self._touched and (self._unflushed >= MAX_UNFLUSHED or self.actor_inbox.empty()):
            self._flush()
        else:
            self._unflushed += 1
        if self._deadlines:
            self._expire_deadlines()
        if self._idle_waiters and self._settled_since_idle_check:
            self._check_idle()
        self._arm_waker()

    def _check_idle(self) -> None:
        # On a database server stats() is a query: at most one per interval
        # while jobs stream by; a timer brings the check that was put off.
        now = time.monotonic()
        # Only a shared storage (a database server) pays for stats() with a query.
        throttled = self._storage.poll_interval is not None
        if throttled and now < self._next_idle_check:
            if not self._idle_recheck_armed:
                self._idle_recheck_armed = True
                me = self.actor_ref
                timer = threading.Timer(self._next_idle_check - now, lambda: me.tell(_Recheck()))
                timer.daemon = True
                timer.start()
            return
        self._settled_since_idle_check = False
        self._next_idle_check = now + IDLE_CHECK_INTERVAL
        if self._is_idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for done in waiters:
                done(True)

    def _flush(self) -> None:
        touched, self._touched = self._touched, set()
        self._unflushed = 0
        for reply in touched:
            try:
                reply.flush()
            except Exception as exc:
                # A dead destination is the Manager's to deal with (it sees the
                # process die); the jobs it held are released then.
                log.info("could not deliver to a runner", error=str(exc))

    def _arm_waker(self) -> None:
        if self._waker is None:
            return
        due = [self._storage.next_due(q) for q, parked in self._parked.items() if parked]
        times = [t for t in due if t is not None]
        if self._deadlines:
            times.append(self._deadlines[0][0])
        poll = self._storage.poll_interval
        if poll is not None and (self._idle_waiters or any(self._parked.values())):
            # Shared storage: another host may push, or settle the last job,
            # without telling us.
            times.append(self._storage.now() + poll)
        self._waker.wake_at(min(times) if times else None)

    def _expire_deadlines(self) -> None:
        now = self._storage.now()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, delivery, runner, job_id, timeout = heapq.heappop(self._deadlines)
            if self._timed.get((runner, job_id)) != delivery:
                continue
            del self._timed[(runner, job_id)]
            info = self._storage.info(job_id)
            if info is None or info.runner != runner:
                continue
            log.error(
                "job timed out", job_id=job_id, job_name=info.name, runner=runner, timeout=timeout
            )
            if self._on_timeout is not None:
                self._on_timeout(runner, job_id, timeout)

    def _is_idle(self) -> bool:
        # Jobs scheduled for later do not count: join() would wait for them.
        return all(
            s.pending == s.scheduled and s.running == 0 for s in self._storage.stats().values()
        )


class Rounds:
    """Where the links leave their batches for a StorageActor.

    The actor is told once for the first batch left; every batch left before
    it gets to them runs with it as one round (see ``_run_round``). So when
    many runners send at once, their completions and pops share one storage
    call and one commit, instead of one each; on a database server that is
    most of the cost of a job. A batch still reaches the actor before any
    message sent after it was left.
    """

    def __init__(self, storage: pykka.ActorRef[Any]) -> None:
        self._storage = storage
        self._lock = threading.Lock()
        self._pending: list[Batch] = []

    def submit(self, batch: Batch) -> None:
        with self._lock:
            self._pending.append(batch)
            first = len(self._pending) == 1
        if first:
            self._storage.tell(_Round(self))

    def take(self) -> list[Batch]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken


@dataclass(frozen=True, slots=True)
class _Round:
    """Run what ``rounds`` holds."""

    rounds: Rounds


class Opened:
    """Answered once the storage is open; raises what ``open()`` raised."""


class _Recheck:
    """Time for an idle check that was put off."""


class _Commit:
    """Names the commit in errors and logs, like an operation."""


def wait_for(
    ref: pykka.ActorRef[Any],
    make_op: Callable[[Callable[[Any], None]], object],
    timeout: float | None,
) -> Any:
    """Send an op that answers through a callback, and block for that answer."""
    future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
    ref.tell(make_op(future.set))
    return future.get(timeout=timeout)


class FutureReply:
    """A Reply for in-process callers: the first delivery resolves a future."""

    def __init__(self) -> None:
        self.future: pykka.ThreadingFuture[list[JobInfo]] = pykka.ThreadingFuture()

    def deliver(self, token: Any, jobs: list[JobInfo]) -> None:
        self.future.set(jobs)

    def flush(self) -> None:
        pass


def pop_wait(
    ref: pykka.ActorRef[Any],
    queue: str,
    runner: str,
    *,
    limit: int = 1,
    timeout: float | None = None,
) -> list[JobInfo]:
    """Pop, waiting up to ``timeout`` seconds for a job to fall due.

    On timeout the parked pop is withdrawn, so a job that arrives later is not
    claimed for a caller that has gone; a job delivered just before the
    withdrawal is still returned.
    """
    reply = FutureReply()
    ref.tell(Pop(queue, runner, limit, reply))
    try:
        jobs: list[JobInfo] = reply.future.get(timeout=timeout)
        return jobs
    except pykka.Timeout:
        ref.ask(Unpark(reply))
        try:
            late: list[JobInfo] = reply.future.get(timeout=0)
            return late
        except pykka.Timeout:
            raise TimeoutError(f"no job on queue {queue!r} within {timeout} s") from None
