"""StorageActor: the only owner of a Storage.

It opens the storage when it starts, on its own thread; ask it ``Opened()``
to learn whether that worked (the answer raises what ``open()`` raised).

Every read and write of jobs goes through this actor's mailbox, so a backend
is only ever called from one thread. Pops that find nothing due are parked per
queue (actors/parking.py) and answered when a push arrives or the earliest
due time passes; a single timer thread (actors/waker.py) sleeps until that
time, so nothing polls. Jobs with a TIMEOUT are watched from their start
(actors/deadlines.py). Batches that many links leave at once run as one round
(actors/rounds.py): one storage call, one commit. Every answer leaves after
the commit, so an acknowledged job is durable.

Dependencies: after each operation that may end a job (a round, a release,
a cancel, a push), the actor asks the storage what the ends of parents did
(``Storage.dependents()``): it serves the parked pops of the queues where
children became pending, and tells the waiters of the children cancelled.

Waiting for a job (``WaitFor``) registers a callback that is called once the
job has ended (actors/waiters.py), as the actor settles it or, on a storage
shared by hosts, when another host says it did; never by polling. Records
kept past their ``result_ttl`` are expired about once a second, in the
message that happens to come then.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

import pykka

from actors.blocking import FutureReply, pop_wait, wait_for
from actors.deadlines import Deadlines, TimeoutHandler
from actors.ops import (
    Batch,
    Cancel,
    Complete,
    DoneCounts,
    Drain,
    EndedElsewhere,
    Figures,
    Heartbeat,
    HostFigures,
    Info,
    LastTick,
    ListJobs,
    Pause,
    Pop,
    PurgeDead,
    Push,
    PushTick,
    Release,
    Reply,
    Requeue,
    Retire,
    Start,
    Stats,
    StorageError,
    Tick,
    Unpark,
    Unwait,
    WaitFor,
    WhenIdle,
)
from actors.parking import Parked
from actors.pauses import READ_EVERY, Pauses
from actors.rounds import Round, Rounds
from actors.tally import Tally, is_timeout
from actors.waiters import Ended, Waiters
from actors.waker import Waker
from storage import Claim, Disposition, JobResult, Outcome, Status, Storage
from storage.dependencies import UnknownParent
from storage.events import EventLog, last_line

__all__ = [
    "IDLE_CHECK_INTERVAL",
    "MAX_UNFLUSHED",
    "FutureReply",
    "Opened",
    "Rounds",
    "StorageActor",
    "TimeoutHandler",
    "pop_wait",
    "wait_for",
]

log = EventLog("storage")

# Messages handled while deliveries stay buffered, when the mailbox is busy.
MAX_UNFLUSHED = 16
# Seconds between two checks for idleness (join); a join returns this late at most.
IDLE_CHECK_INTERVAL = 0.05
# Seconds a shared storage's next due times are trusted without asking again,
# unless this host made something due sooner: on a database server a query
# after every message would double a round's statements.
DUE_TRUST = 0.05
# Seconds between two expire() calls: kept records past their time are
# invisible already, so this only bounds the memory or rows they hold.
EXPIRE_EVERY = 1.0
# Seconds before what follows a message is done again when a storage read
# in it failed (a database server restarting).
AFTER_FAILURE_RETRY = 0.5

# Called with (job id, runner, reason) when another host cancelled a job
# that is running, perhaps on one of our runners.
CancelHandler = Callable[[uuid.UUID, str, str], None]


# The messages that are told, never asked (a waker's Tick, the Manager's word
# on a dead arbiter). What they do is redone or caught up later: a Tick comes
# again, and a dead runner's claims a failed Retire left go stale and are
# taken over.
_TOLD = (Tick, Retire, Drain, WhenIdle)


class StorageActor(pykka.ThreadingActor):
    """Serialises all access to one Storage; see actors/ops.py for the messages."""

    use_daemon_thread = True

    def __init__(
        self,
        storage: Storage,
        on_timeout: TimeoutHandler | None = None,
        on_cancel: CancelHandler | None = None,
    ) -> None:
        super().__init__()
        self._storage = storage
        self._on_cancel = on_cancel
        self._waiters = Waiters()
        self._next_expire = 0.0
        self._deadlines = Deadlines(storage, on_timeout)
        self._parked = Parked(storage, self._deliver)
        self._idle_waiters: list[Callable[[bool], None]] = []
        self._touched: set[Reply] = set()
        self._unflushed = 0
        # Only a settled job can make the storage idle; join() waits on that.
        self._settled_since_idle_check = True
        self._next_idle_check = 0.0
        self._idle_recheck_armed = False
        self._waker: Waker | None = None
        self._due: dict[str, float | None] = {}  # per parked queue: next_due()
        self._due_at = -DUE_TRUST  # when _due was asked (monotonic)
        self._open_failed: Exception | None = None
        self._failures = 0  # operations failed in a row, across messages
        self._failed_here = False  # one failed in the message being handled
        self._retry_armed = False  # a Tick is coming after a failed storage read
        self.done_by_runner: dict[str, int] = {}
        self.tally = Tally()
        self._pauses = Pauses()
        self._paused_read_armed = False

    def on_start(self) -> None:
        try:
            self._storage.open()
        except Exception as exc:
            # Kept for the Opened probe: raised to whoever started us, by name.
            self._open_failed = exc
            return
        self._waker = Waker(self.actor_ref, self._storage.now)
        # A host started while a queue is paused starts paused.
        with contextlib.suppress(StorageError):
            self._read_paused()
        me = self.actor_ref

        def wake() -> None:
            # Called from the storage's own listener thread.
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(Tick())

        def ended(job_ids: list[uuid.UUID]) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(EndedElsewhere(tuple(job_ids)))

        self._storage.subscribe(wake, ended=ended, cancelled=self._on_cancel)

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
        if isinstance(message, _ReadPaused):
            self._paused_read_armed = False
            with contextlib.suppress(StorageError):
                self._read_paused()
            self._after_message()
            return None
        # Every answer leaves after the commit: an acknowledged job is durable.
        try:
            now = time.monotonic()
            self.tally.at(now)
            if now >= self._next_expire:
                self._expire()
            if now >= self._pauses.next_read and self._storage.poll_interval is not None:
                with contextlib.suppress(StorageError):
                    self._read_paused()  # shared: another host may have paused a queue
            if isinstance(message, Round):
                self._run_round(message.rounds.take())
                return None
            if isinstance(message, Batch):
                if message.answer is not None:
                    self._run_round([message])
                    return None
                answers = self._run_batch(message.ops)
                failed = self._commit()
                return answers if failed is None else [failed] * len(answers)
            if isinstance(message, _TOLD):
                # Nobody waits to be raised to: a failure is logged (by
                # _failed) and answered as a value, for whoever asked; raised,
                # it would stop this actor, and with it the host.
                answer = self._run_safely(message)
                failed = self._commit()
                return answer if failed is None else failed
            answer = self._run(message)
            failed = self._commit()
            if failed is not None:
                raise failed
            return answer
        finally:
            try:
                self._after_message()
            except Exception as exc:
                self._after_message_failed(exc)

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
        leaving: set[str] = set()
        for at, op in enumerate(ops):
            if isinstance(op, Complete):
                completes.append(at)
            elif isinstance(op, Start):
                # Before the completions: a job may start and end in one batch.
                self._deadlines.start(op.runner, op.job_id)
            elif isinstance(op, Pop) and op.reply is not None:
                waiting.append(op)
            else:
                others.append(at)
                if isinstance(op, Drain) or isinstance(op, Retire):  # noqa: SIM101 - faster than a union
                    leaving.add(op.runner)
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
        self._deadlines.ended(completes)
        groups: dict[tuple[str, str], list[Pop]] = {}
        paused = self._parked.paused
        for pop in pops:
            if self._parked.is_draining(pop.runner):
                self._deliver(pop, [])
            elif pop.queue in paused:
                self._parked.park(pop)  # served once the queue is resumed
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
                    self._parked.park(pop)
            raise failed from exc
        finished = Disposition.FINISHED
        debugging = log.debugging
        waiters = self._waiters
        if waiters:
            for done, disposition in zip(completes, dispositions, strict=True):
                waiters.settled(done.job_id, done.result, disposition)
        tally = self.tally.ended
        for done, disposition in zip(completes, dispositions, strict=True):
            if disposition is finished and not debugging and done.queue is not None:
                # The hot path of _settled, inline: a count per runner.
                self._settled_since_idle_check = True
                counts = self.done_by_runner
                counts[done.runner] = counts.get(done.runner, 0) + 1
                tally(done.queue, "succeeded", done.ran, done.waited)
            else:
                self._settled(done.job_id, done.runner, done.result, disposition, done)
        for group, jobs in zip(groups.values(), claimed, strict=True):
            taken = 0
            for pop in group:
                share = jobs[taken : taken + pop.limit]
                taken += len(share)
                self._parked.hand_out(pop, share)
        self._dependents()
        return dispositions

    def _dependents(self) -> None:
        """Act on what the ends of parents did to their children: serve the
        queues where some became pending, tell the waiters of those cancelled."""
        told = self._storage.dependents()
        if not told:
            return
        self._settled_since_idle_check = True
        if told.released:
            self._due_changed()
        for child in told.cancelled:
            self.tally.ended(child.queue, "cancelled")
            self._waiters.ended(child.id, Ended(child.id, Status.CANCELLED, child.reason))
            log.info("job cancelled, for its parent", job_id=child.id, reason=child.reason)
        for queue in told.released:
            self._parked.serve(queue)

    def _commit(self) -> StorageError | None:
        try:
            self._storage.commit()
        except Exception as exc:
            # Rolled back: what it ended is settled again later (a stale
            # claim is taken over), and its waiters are told then.
            self._waiters.forget_ended()
            return self._failed(_Commit(), exc)
        through, self._failed_here = not self._failed_here, False
        if through and self._failures:
            if self._failures > 1:
                log.warning("storage works again", failures=self._failures)
            self._failures = 0
        return None

    def _run_safely(self, op: object) -> Any:
        try:
            return self._run(op)
        except (StorageError, UnknownParent) as exc:
            return exc
        except Exception as exc:
            return self._failed(op, exc)

    def _failed(self, op: object, exc: Exception) -> StorageError:
        # An outage (a database restarting) fails every operation for a
        # while: its first two failures are errors, the rest debug, until a
        # message goes through and "storage works again" says it is over.
        self._failures += 1
        self._failed_here = True
        name = type(op).__name__
        if self._failures == 1:
            log.error("storage operation failed", op=name, exc_info=exc)
        elif self._failures == 2:
            log.error("storage keeps failing; more at debug till it works", op=name, error=str(exc))
        else:
            log.debug("storage operation failed", op=name, error=str(exc))
        return StorageError(op, exc)

    def _run(self, op: object) -> Any:
        try:
            return self._dispatch(op)
        except (StorageError, UnknownParent):
            raise  # UnknownParent: bad input, the caller's to hear, not a storage failure
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
                self._due_changed()
                ids = storage.push_many(jobs)
                for queue in {job.queue for job in jobs}:
                    self._parked.serve(queue)
                self._dependents()  # a child of a dead parent is cancelled as it is stored
                return ids
            case PushTick(schedule, tick_us, job):
                self._due_changed()
                queued = storage.push_tick(schedule, tick_us, job)
                if queued is not None:
                    self._parked.serve(job.queue)
                return queued
            case LastTick(schedule):
                return storage.last_tick(schedule)
            case Heartbeat(runner, job_ids):
                return storage.heartbeat(runner, job_ids)
            case Release(runner, result):
                self._deadlines.retire(runner)  # it holds nothing after this
                return self._release(runner, result)
            case Drain(runner):
                self._parked.drain(runner)
                return None
            case Retire(runner, result, unstarted, started):
                return self._retire(runner, result, unstarted, started)
            case Start(runner, job_id):
                self._deadlines.start(runner, job_id)
                return None
            case Info() | ListJobs() | Requeue() | PurgeDead() | Stats() | HostFigures() | Pause():
                return self._operate(op)
            case DoneCounts():
                return dict(self.done_by_runner)
            case WhenIdle(done):
                self._idle_waiters.append(done)
                self._settled_since_idle_check = True
                return None
            case WaitFor(job_ids, waiter):
                for job_id in job_ids:
                    self._waiters.add(job_id, waiter, storage.info(job_id))
                return None
            case Unwait(job_ids, waiter):
                for job_id in job_ids:
                    self._waiters.remove(job_id, waiter)
                return None
            case Cancel(job_id, reason):
                return self._cancel(job_id, reason)
            case EndedElsewhere(job_ids):
                for job_id in self._waiters.wanted(job_ids):
                    info = storage.info(job_id)
                    end = None if info is None else Ended.of(info)
                    if end is not None:
                        self._waiters.ended(job_id, end)
                self._settled_since_idle_check = True
                return None
            case Unpark(reply):
                self._parked.withdraw(lambda op: op.reply is reply)
                return None
            case Tick():
                self._due_changed()  # another host, or a due time passed
                if self._storage.poll_interval is not None:
                    # Shared storage: other hosts settle jobs too, and a
                    # NOTIFY (this Tick) may say that one paused a queue.
                    self._settled_since_idle_check = True
                    self._read_paused_soon()
                self._parked.serve_all()
                return None
        raise TypeError(f"StorageActor does not understand {op!r}")

    def _operate(self, op: object) -> Any:
        """What an operator or ``stats()`` asks: reads, requeues, pauses."""
        storage = self._storage
        match op:
            case Info(job_id):
                return storage.info(job_id)
            case ListJobs(queue, status, scheduled, after, limit, name):
                return storage.list(
                    queue=queue,
                    status=status,
                    scheduled=scheduled,
                    name=name,
                    after=after,
                    limit=limit,
                )
            case Requeue(job_id):
                self._due_changed()
                requeued = storage.requeue(job_id)
                if requeued:
                    self._parked.serve_all()
                return requeued
            case PurgeDead(older_than):
                return storage.purge_dead(older_than)
            case Stats():
                return storage.stats()
            case HostFigures():
                pauses = self._pauses
                here = pauses.here - pauses.stored
                return Figures(
                    storage.stats(),
                    pauses.stored,
                    here,
                    self.tally.snapshot(),
                    storage.now(),
                    tallied=True,
                )
            case Pause(queue, paused, local_only):
                if not local_only:
                    storage.set_paused(queue, paused)
                self._released(self._pauses.set(queue, paused, local_only=local_only))
                return None
        raise TypeError(f"StorageActor does not understand {op!r}")

    def _cancel(self, job_id: uuid.UUID, reason: str) -> tuple[Status | None, str | None]:
        before = self._storage.info(job_id)  # its queue, for the tally: kept or not after
        status = self._storage.cancel(job_id, reason)
        if status is Status.PENDING or status is Status.WAITING:
            if before is not None:
                self.tally.ended(before.queue, "cancelled")
            self._due_changed()
            self._settled_since_idle_check = True  # it may have been the last one
            self._waiters.ended(job_id, Ended(job_id, Status.CANCELLED, reason))
            log.info("job cancelled before it ran", job_id=job_id, reason=reason)
            self._dependents()  # its waiting children go with it
            return status, None
        if status is Status.RUNNING:
            return status, None if before is None else before.runner
        return status, None

    def _expire(self) -> None:
        self._next_expire = time.monotonic() + EXPIRE_EVERY
        try:
            expired = self._storage.expire()
        except Exception as exc:
            self._failed(_Expire(), exc)  # logged; tried again in a second
            return
        if expired:
            log.debug("kept records expired", count=expired)

    # -- pops -------------------------------------------------------------------

    def _pop(self, op: Pop) -> list[Claim] | None:
        if op.reply is not None:
            # Answered through its Reply, now or later (parked even if the
            # storage failed: it is tried again at the next push or tick).
            with contextlib.suppress(StorageError):
                self._complete_and_pop([], [op])
            return None
        if self._parked.is_draining(op.runner) or op.queue in self._parked.paused:
            return []
        return self._storage.pop(op.queue, op.runner, op.limit)

    def _deliver(self, op: Pop, jobs: list[Claim]) -> None:
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
        self._deadlines.delivered(op.runner, jobs)
        op.reply.deliver(op.token, jobs)
        self._touched.add(op.reply)

    # -- settling -----------------------------------------------------------------

    def _retire(
        self,
        runner: str,
        result: JobResult,
        unstarted: JobResult | None,
        reported: tuple[uuid.UUID, ...],
    ) -> list[tuple[uuid.UUID, Disposition]]:
        self._parked.drain(runner)
        started = sorted({*self._deadlines.retire(runner), *reported})
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
        self._due_changed()
        settled = self._storage.release(runner, result)
        # A runner's whole buffer may go back at once: one line says so, and
        # each job's own line is at debug.
        together = len(settled) > 1
        for job_id, disposition in settled:
            self._waiters.settled(job_id, result, disposition)
            self._settled(job_id, runner, result, disposition, together=together)
        self._dependents()
        back = sum(d is Disposition.REQUEUED for _, d in settled)
        if together and back:
            log.info("jobs put back", count=back, runner=runner, outcome=result.outcome.value)
        if settled:
            self._parked.serve_all()
        return settled

    def _settled(
        self,
        job_id: Any,
        runner: str,
        result: JobResult,
        disposition: Disposition,
        done: Complete | None = None,
        *,
        together: bool = False,
    ) -> None:
        self._settled_since_idle_check = True
        if disposition is Disposition.FINISHED:
            self.done_by_runner[runner] = self.done_by_runner.get(runner, 0) + 1
            if done is not None and done.queue is not None:
                self.tally.ended(done.queue, "succeeded", done.ran, done.waited)
            elif (info := self._storage.info(job_id)) is not None:
                self.tally.ended(info.queue, "succeeded")
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
        self._due_changed()  # pending again, maybe due sooner than what was known
        info = self._storage.info(job_id)
        fields: dict[str, Any] = {"job_id": job_id, "runner": runner}
        # The link's word on the queue, if any: a record kept for 0 s is gone.
        queue = done.queue if done is not None and done.queue is not None else None
        if queue is None and info is not None:
            queue = info.queue
        if queue is not None:
            self._count(queue, result, disposition, done)
        if info is not None:
            fields.update(job_name=info.name, queue=info.queue, retry_count=info.retry_count)
            # A retry or a put-back may be due at once: wake its parked pops.
            self._parked.serve(info.queue)
        if disposition is Disposition.RETRYING:
            log.warning("job failed, will retry", error=last_line(result.error), **fields)
        elif disposition is Disposition.DEAD:
            log.error("job dead, out of retries", error=last_line(result.error), **fields)
        elif result.outcome is Outcome.UNREGISTERED:
            # Never silent: a deploy that forgot a job class strands its jobs.
            log.warning("job not registered; put back for later", error=result.error, **fields)
        elif together:
            log.debug("job put back", outcome=result.outcome.value, **fields)
        else:
            log.info("job put back", outcome=result.outcome.value, **fields)

    def _count(
        self, queue: str, result: JobResult, disposition: Disposition, done: Complete | None
    ) -> None:
        """Tally an attempt that did not succeed; put-backs ran no attempt."""
        if disposition is Disposition.RETRYING:
            ending = "timed_out" if is_timeout(result.error) else "failed"
        elif disposition is Disposition.DEAD:
            ending = "dead"
        elif disposition is Disposition.CANCELLED:
            ending = "cancelled"
        else:
            return
        ran, waited = (None, None) if done is None else (done.ran, done.waited)
        self.tally.ended(queue, ending, ran, waited, retried=disposition is Disposition.RETRYING)

    # -- pausing ----------------------------------------------------------------

    def _read_paused(self) -> None:
        try:
            stored = self._storage.paused()
        except Exception as exc:
            self._pauses.next_read = time.monotonic() + READ_EVERY
            raise self._failed(_ReadPausedOp(), exc) from exc
        self._released(self._pauses.read(stored))

    def _released(self, queues: frozenset[str]) -> None:
        self._parked.paused = self._pauses.held
        for queue in queues:
            self._parked.serve(queue)

    def _read_paused_soon(self) -> None:
        """Read the paused queues now, or, if they were read a moment ago, at
        the next allowed time: a NOTIFY right after a read is not lost."""
        wait = self._pauses.next_read - time.monotonic()
        if wait <= 0:
            with contextlib.suppress(StorageError):
                self._read_paused()
        elif not self._paused_read_armed:
            self._paused_read_armed = True
            me = self.actor_ref

            def read() -> None:
                with contextlib.suppress(pykka.ActorDeadError):
                    me.tell(_ReadPaused())

            timer = threading.Timer(wait, read)
            timer.daemon = True
            timer.start()

    # -- after each message -----------------------------------------------------

    def _after_message(self) -> None:
        self._waiters.resolve()  # after the commit: what they are told is durable
        # While more messages wait, keep buffering: their deliveries then leave
        # in the same frames, one write per runner, instead of one per message.
        delivered = bool(self._touched)
        if delivered and (self._unflushed >= MAX_UNFLUSHED or self.actor_inbox.empty()):
            self._flush()
        else:
            self._unflushed += 1
        self._deadlines.expire()
        # A job just handed out is running: not idle, and no stats() to ask.
        # The message that settles the last job delivers nothing, and checks.
        if self._idle_waiters and self._settled_since_idle_check and not delivered:
            self._check_idle()
        self._arm_waker()

    def _after_message_failed(self, exc: Exception) -> None:
        # A read of the storage failed here (next_due, stats: a database
        # server restarting). Raised, it would stop this actor and the host
        # with it; instead the same work is done again shortly, on a Tick.
        self._settled_since_idle_check = True
        log.warning("storage unavailable; retrying", error=last_line(str(exc)) or repr(exc))
        if not self._retry_armed:
            self._retry_armed = True
            me = self.actor_ref

            def retry() -> None:
                self._retry_armed = False
                with contextlib.suppress(pykka.ActorDeadError):
                    me.tell(Tick())

            timer = threading.Timer(AFTER_FAILURE_RETRY, retry)
            timer.daemon = True
            timer.start()

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
        queues = self._parked.queues()
        now = time.monotonic()
        if (
            self._storage.poll_interval is None  # unshared: cheap, and exact
            or now - self._due_at >= DUE_TRUST
            or not self._due.keys() >= set(queues)
        ):
            self._due = {q: self._storage.next_due(q) for q in queues}
            self._due_at = now
        times = [t for q in queues if (t := self._due[q]) is not None]
        deadline = self._deadlines.earliest()
        if deadline is not None:
            times.append(deadline)
        poll = self._storage.poll_interval
        if poll is not None and (self._idle_waiters or self._parked):
            # Shared storage: another host may push, or settle the last job,
            # without telling us.
            times.append(self._storage.now() + poll)
        self._waker.wake_at(min(times) if times else None)

    def _due_changed(self) -> None:
        self._due_at = -DUE_TRUST

    def _is_idle(self) -> bool:
        # Jobs scheduled for later do not count: join() would wait for them.
        # Children waiting for their parents are live work: they do.
        return all(
            s.pending == s.scheduled and s.running == 0 and s.waiting == 0
            for s in self._storage.stats(levels=False).values()
        )


class Opened:
    """Answered once the storage is open; raises what ``open()`` raised."""


class _Recheck:
    """Time for an idle check that was put off."""


class _ReadPaused:
    """Time for a read of the paused queues that was put off."""


class _ReadPausedOp:
    """Names the read of the paused queues in errors and logs."""


class _Commit:
    """Names the commit in errors and logs, like an operation."""


class _Expire:
    """Names the expiry of kept records in errors and logs."""
