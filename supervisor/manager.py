"""Manager: the public face of a running system.

``Manager`` is what ``WorkerConfig.start`` returns: queue jobs, inspect them,
wait for them, operate the queues (pause, scale, list), run recurring
schedules (``every``, ``cron``: supervisor/schedules.py), stop. It owns the
host's StorageActor and the ManagerActor (supervisor/arbiters.py) that
supervises the arbiter processes.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, cast

import pykka

from actors.arbiter import ArbiterSpec
from actors.ops import (
    Cancel,
    Figures,
    HostFigures,
    Info,
    LastTick,
    ListJobs,
    Pause,
    PurgeDead,
    PushTick,
    Requeue,
    WhenIdle,
)
from actors.storage_actor import Opened, StorageActor, wait_for
from actors.waiters import Ended
from storage import Job, JobInfo, NewJob, Status, Storage
from storage.events import EventLog
from supervisor import waiting
from supervisor.aio import AsyncHandle
from supervisor.arbiters import (
    CANCEL_GRACE,
    KILL_GRACE,
    BeginStop,
    CancelRunning,
    CrashLooping,
    GiveUp,
    ManagerActor,
    Relay,
    ScaleQueue,
    Snapshot,
    Supervised,
    WhenCrashLooping,
)
from supervisor.errors import CrashLoopError, ManagerStopped
from supervisor.handle import (
    QueueHandle,
    StorageTransport,
    check_int_at_least,
    check_job,
    check_job_name,
    check_queue_name,
)
from supervisor.handle import job_id as parse_job_id
from supervisor.operations import list_filter
from supervisor.schedules import CatchUp, Schedule, Scheduler, catch_up_of, default_name
from supervisor.stats import ManagerStats, queue_figures
from supervisor.ticks import Cron, Every, Timing

if TYPE_CHECKING:
    from supervisor.http import HttpServer

log = EventLog("manager")

REQUEUE_PAGE = 500  # dead jobs read per page by requeue_dead


class _HostTransport(StorageTransport):
    """The Manager's transport: a stopped Manager says so by name, and a job
    queued where no worker of this host will ever take it is warned of once."""

    def __init__(self, storage: pykka.ActorRef[Any], served: frozenset[str] | None) -> None:
        super().__init__(storage)
        self._served = served  # None: the storage is shared, others may serve it
        self._warned: set[str] = set()

    def push(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        self.warn_unserved(jobs)
        try:
            return super().push(jobs)
        except pykka.ActorDeadError:
            raise ManagerStopped("queue") from None

    def warn_unserved(self, jobs: Sequence[NewJob]) -> None:
        if self._served is not None:
            for queue in {job.queue for job in jobs} - self._served - self._warned:
                self._warned.add(queue)
                log.warning(
                    "jobs queued on a queue no worker of this host serves; they wait "
                    "until a host that serves it runs",
                    queue=queue,
                    served=",".join(sorted(self._served)) or "none",
                )


class _First:
    """The first of several answers (idle, or a crash loop), for one waiter."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.value: CrashLoopError | None = None

    def set(self, value: CrashLoopError | None) -> None:
        with self._lock:
            if not self._event.is_set():
                self.value = value
                self._event.set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)


class Manager(QueueHandle):
    """A running jobarbiter: a StorageActor, a ManagerActor and its arbiters.

    It is a QueueHandle (``queue``, ``queue_many``, ``schedule``) onto its
    storage, plus supervision, inspection and stopping. With no arbiter
    processes it is a producer only: it queues and inspects, and runs nothing.

    Use it as a context manager, or call ``stop``; ``run_forever`` blocks until
    SIGTERM or SIGINT and then stops gracefully. After ``stop`` every call
    raises ManagerStopped.
    """

    def __init__(self, *, storage: Storage, spec: ArbiterSpec, processes: int) -> None:
        """Use ``WorkerConfig.start``, which freezes a config into ``spec``."""
        relay = Relay()
        self._storage = StorageActor.start(
            storage, on_timeout=relay.timed_out, on_cancel=relay.cancelled
        )
        try:
            self._storage.ask(Opened())
        except BaseException:
            self._storage.stop()
            raise
        shared = storage.poll_interval is not None
        served = frozenset(q for q, n in spec.queues if n > 0 and processes > 0)
        self._host = _HostTransport(self._storage, None if shared else served)
        super().__init__(self._host)
        self._schedules = Scheduler(
            push_tick=self._push_tick,
            last_tick=self._last_tick,
            now=storage.now,
            shared=shared,
        )
        self._actor = ManagerActor.start(spec, processes, self._storage)
        relay.target = self._actor
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._servers: list[HttpServer] = []

    def _check(self, call: str) -> None:
        if self._stopped:
            raise ManagerStopped(call)

    # -- queueing ---------------------------------------------------------------------

    def queue(self, job: Job, **options: Any) -> uuid.UUID:
        self._check("queue")
        return super().queue(job, **options)

    def queue_many(
        self,
        jobs: Iterable[Job],
        *,
        after: Mapping[int, Iterable[int | uuid.UUID | str]] | None = None,
    ) -> list[uuid.UUID]:
        self._check("queue_many")
        return super().queue_many(jobs, after=after)

    def schedule(self, job: Job, at: Any, **options: Any) -> uuid.UUID:
        self._check("schedule")
        return super().schedule(job, at, **options)

    @property
    def aio(self) -> AsyncHandle:
        """The queueing calls as coroutines, for asyncio code: ``await
        manager.aio.queue(job)`` never blocks the caller's event loop."""
        self._check("aio")
        return AsyncHandle(self._storage, self._check, self._host.warn_unserved)

    @property
    def handle(self) -> QueueHandle:
        """A plain QueueHandle onto the same storage, to hand to other code."""
        self._check("handle")
        return QueueHandle(self._host)

    def every(
        self,
        interval: dt.timedelta | float,
        job: Job,
        *,
        name: str | None = None,
        catch_up: CatchUp | str = CatchUp.SKIP,
    ) -> Schedule:
        """Queue ``job`` at every multiple of ``interval`` since the epoch
        (UTC), from the first after now, until removed or stopped.

        On a shared storage (PostgreSQL) each tick is queued once however
        many hosts run the schedule, known by its ``name``: by default the
        job's NAME and the interval, so hosts running the same ``every`` share
        it. Ticks missed while no host ran it are skipped, or the latest of
        them queued with ``catch_up="latest"``. Returns a handle whose
        ``remove()`` stops it (or ``remove_schedule(name)``).
        """
        self._check("every")
        if isinstance(interval, dt.timedelta):
            seconds = interval.total_seconds()
        elif isinstance(interval, int | float) and not isinstance(interval, bool):
            seconds = float(interval)
        else:
            raise TypeError(f"every() takes a timedelta or seconds, got {type(interval).__name__}")
        return self._add_schedule("every()", Every.of(seconds), job, name, catch_up)

    def cron(
        self,
        expression: str,
        job: Job,
        *,
        tz: str = "UTC",
        name: str | None = None,
        catch_up: CatchUp | str = CatchUp.SKIP,
    ) -> Schedule:
        """Queue ``job`` at the instants of a cron ``expression`` in the zone
        ``tz``: croniter's syntax, five fields (minute hour day month
        weekday) or six with seconds last (``"* * * * * */5"``: every 5 s).
        A bad expression or zone raises ValueError here. Otherwise as
        ``every``: one job per tick across hosts on a shared storage, missed
        ticks skipped unless ``catch_up="latest"``, a handle to ``remove()``.
        """
        self._check("cron")
        timing = Cron.of(expression, tz, self._schedules.now_us())
        return self._add_schedule("cron()", timing, job, name, catch_up)

    def remove_schedule(self, name: str) -> bool:
        """Stop the schedule ``name`` on this host; False when there is none."""
        self._check("remove_schedule")
        if not isinstance(name, str):
            raise TypeError(f"remove_schedule() takes a schedule's name (a str); got {name!r}")
        return self._schedules.remove(name)

    def _add_schedule(
        self, method: str, timing: Timing, job: Job, name: str | None, catch_up: CatchUp | str
    ) -> Schedule:
        checked = check_job(job, method)
        if name is None:
            name = default_name(checked.NAME, timing)
        elif not isinstance(name, str):
            raise TypeError(f"{method} name= must be a str; got {name!r}")
        elif not name:
            raise ValueError(f"{method} name= must be a non-empty str; got {name!r}")
        # Encoded once, now: a job that cannot be encoded is refused here, not at a tick.
        new = checked.to_new()
        return self._schedules.add(name, timing, new, catch_up_of(catch_up))

    def _push_tick(self, schedule: str, tick_us: int, job: NewJob) -> uuid.UUID | None:
        self._host.warn_unserved([job])
        return cast(uuid.UUID | None, self._storage.ask(PushTick(schedule, tick_us, job)))

    def _last_tick(self, schedule: str) -> int | None:
        return cast(int | None, self._storage.ask(LastTick(schedule)))

    # -- inspecting -------------------------------------------------------------------

    def info(self, job_id: uuid.UUID | str) -> JobInfo | None:
        """The job's record, or None: never queued, or its record expired (an
        ended job's is kept for its RESULT_TTL)."""
        self._check("info")
        return cast(JobInfo | None, self._storage.ask(Info(parse_job_id(job_id))))

    # -- results and cancelling ---------------------------------------------------

    def wait(self, job_id: uuid.UUID | str, timeout: float | None = None) -> object:
        """Block until the job ends; returns what its ``run`` returned.

        Raises JobFailed (it is dead), JobCancelled, TimeoutError, or
        JobNotFound for an id never queued or whose record expired. A job that
        ended before the call is answered from its kept record at once.
        """
        self._check("wait")
        return waiting.wait(self._storage, parse_job_id(job_id), timeout)

    def as_completed(
        self, job_ids: Iterable[uuid.UUID | str], timeout: float | None = None
    ) -> Iterator[tuple[uuid.UUID, Ended]]:
        """Yield ``(id, ended)`` as each job ends, in the order they end;
        ``ended.status`` says how, ``ended.value()`` what it returned. Raises
        JobNotFound for an unknown id and TimeoutError after ``timeout`` s."""
        self._check("as_completed")
        ids = [parse_job_id(job_id) for job_id in job_ids]
        return waiting.as_completed(self._storage, ids, timeout)

    def cancel(self, job_id: uuid.UUID | str, *, grace: float = CANCEL_GRACE) -> bool:
        """Cancel a job; False if it has already ended or has no record.

        A pending, scheduled or waiting job is cancelled at once and never
        runs (its waiting children are cancelled with it). A
        running one is asked to stop (``current_job().cancelled`` turns true,
        then its thread gets JobInterrupted; an async job's task is
        cancelled); one still running ``grace`` s later is stopped for real,
        with its arbiter. Either way it is never retried.
        """
        self._check("cancel")
        job = parse_job_id(job_id)
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not grace >= 0:
            raise ValueError(f"cancel() grace must be a number of seconds >= 0; got {grace!r}")
        reason = "cancelled by Manager.cancel()"
        answer = self._storage.ask(Cancel(job, reason))
        status, runner = cast(tuple[Status | None, str | None], answer)
        if status is Status.RUNNING and runner is not None:
            # Ours, or another host's (a shared storage told it already).
            self._actor.tell(CancelRunning(runner, job, reason, float(grace)))
        return status in (Status.PENDING, Status.WAITING, Status.RUNNING)

    def dead_jobs(self, queue: str | None = None, *, limit: int = 1000) -> list[JobInfo]:
        self._check("dead_jobs")
        return self.jobs(queue, Status.DEAD, limit=limit)

    def jobs(
        self,
        queue: str | None = None,
        status: Status | str | None = None,
        *,
        name: str | None = None,
        limit: int = 100,
        after: uuid.UUID | str | None = None,
    ) -> list[JobInfo]:
        """Job records in the order they were queued, at most ``limit``, from
        just past ``after``: pass the last id of a page to get the next one.

        ``status`` is a Status or its name, or "scheduled" (pending, not due
        yet, never failed); None lists every kept record. ``name`` keeps the
        jobs of that name (a Job class's ``NAME``) alone. On SQL storage each
        page is an index range, never an OFFSET scan.
        """
        self._check("jobs")
        if queue is not None:
            check_queue_name(queue, "jobs() queue")
        if name is not None:
            check_job_name(name, "jobs() name")
        check_int_at_least(limit, 1, "jobs() limit", "an int >= 1")
        state, scheduled = list_filter(status)
        start = None if after is None else parse_job_id(after)
        ask = ListJobs(queue, state, scheduled, start, limit, name)
        return cast(list[JobInfo], self._storage.ask(ask))

    def requeue(self, job_id: uuid.UUID | str) -> bool:
        """Give a dead job a fresh set of retries, due now."""
        self._check("requeue")
        return cast(bool, self._storage.ask(Requeue(parse_job_id(job_id))))

    def requeue_dead(self, queue: str | None = None) -> int:
        """Requeue every dead job (of ``queue``); returns how many."""
        self._check("requeue_dead")
        count = 0
        while page := self.jobs(queue, Status.DEAD, limit=REQUEUE_PAGE):
            # Requeued jobs leave the dead, so each page starts from the top.
            count += sum(self.requeue(info.id) for info in page)
            if len(page) < REQUEUE_PAGE:
                break
        return count

    def purge_dead(self, older_than: dt.timedelta | float | None = None) -> int:
        self._check("purge_dead")
        seconds = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        return cast(int, self._storage.ask(PurgeDead(seconds)))

    def stats(self) -> ManagerStats:
        """Every queue's figures (see QueueFigures), every arbiter's, and this
        host's schedules (``every``, ``cron``) with their next runs."""
        self._check("stats")
        figures = cast(Figures, self._storage.ask(HostFigures()))
        supervised = cast(Supervised, self._actor.ask(Snapshot()))
        queues = queue_figures(figures, supervised.arbiters, supervised.workers)
        return ManagerStats(
            queues=queues, arbiters=supervised.arbiters, schedules=self._schedules.listing()
        )

    # -- operating ----------------------------------------------------------------

    def serve_http(
        self, host: str = "127.0.0.1", port: int = 0, *, auth: str | tuple[str, str] | None = None
    ) -> str:
        """Serve the web dashboard (at the root), ``/metrics`` and the JSON API
        (``/api/...``) from a thread of this process until ``stop``; returns
        the base URL. It binds loopback unless told otherwise; ``port=0``
        takes a free port. Changes (POST) are refused unless ``auth`` is set:
        a bearer token, or a (user, password) pair for basic auth. Needs the
        ``http`` extra."""
        self._check("serve_http")
        try:
            from supervisor import http  # noqa: PLC0415 - the http extra is optional
        except ImportError as exc:
            raise ImportError(
                f"serve_http() needs the http extra: pip install 'jobarbiter[http]' ({exc})"
            ) from exc
        server = http.serve(self, host, port, auth=auth)
        self._servers.append(server)
        log.info("serving HTTP", url=server.url)
        return server.url

    def set_worker_count(self, queue: str, count: int) -> None:
        """Give ``queue`` ``count`` worker slots in every arbiter, now, without
        a restart; a slot taken away finishes its job first. It holds for
        arbiters started later too (until this Manager stops)."""
        self._check("set_worker_count")
        check_queue_name(queue, "set_worker_count() queue")
        check_int_at_least(count, 0, f"worker count for queue {queue!r}", "an int >= 0")
        self._actor.ask(ScaleQueue(queue, count))

    def pause(self, queue: str, *, local_only: bool = False) -> None:
        """Hand out no job of ``queue`` until ``resume``: running jobs finish,
        queueing is still accepted. The pause is stored: on SQLite and
        PostgreSQL it outlives a restart, and on PostgreSQL every host holds
        the queue within a second. ``local_only=True`` holds it on this host
        alone, until ``resume`` or stop."""
        self._check("pause")
        check_queue_name(queue, "pause() queue")
        self._storage.ask(Pause(queue, True, local_only))

    def resume(self, queue: str, *, local_only: bool = False) -> None:
        """Hand out ``queue``'s jobs again: lifts the stored pause and this
        host's own; ``local_only=True`` lifts only this host's."""
        self._check("resume")
        check_queue_name(queue, "resume() queue")
        self._storage.ask(Pause(queue, False, local_only))

    def join(self, timeout: float | None = None) -> None:
        """Block until no job is due or running.

        Jobs scheduled for later (``schedule``, not yet due and never run) do
        not count; retries waiting out their backoff do. Raises TimeoutError
        after ``timeout`` seconds, and CrashLoopError once every arbiter is in a
        crash loop (3 deaths in a row at start-up) and has died at start-up
        again since join began: nothing would ever run.
        """
        self._check("join")
        first = _First()
        self._storage.tell(WhenIdle(lambda _: first.set(None)))
        self._actor.tell(WhenCrashLooping(first.set))
        if not first.wait(timeout):
            raise TimeoutError(f"jobs still due or running after {timeout} s")
        if first.value is not None:
            raise first.value

    # -- stopping ---------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> None:
        """Stop pulling, let running jobs finish for up to ``timeout`` s, then end
        the arbiters; what did not finish goes back unexecuted."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._schedules.stop()
        for server in self._servers:
            server.close()
        try:
            wait_for(self._actor, BeginStop, timeout)
        except pykka.Timeout:
            log.warning(
                "jobs still running after the grace period; killing arbiters", timeout=timeout
            )
            future: pykka.ThreadingFuture[bool] = pykka.ThreadingFuture()
            self._actor.tell(BeginStop(future.set))
            self._actor.tell(GiveUp())
            try:
                future.get(timeout=KILL_GRACE)
            except pykka.Timeout:
                log.error("arbiters did not end after SIGKILL", timeout=KILL_GRACE)
        self._actor.stop()
        self._storage.stop()

    def run_forever(self, grace: float = 30.0, *, crash_loop_exit: float = 10.0) -> None:
        """Block until SIGTERM or SIGINT, then stop with ``grace`` seconds for
        running jobs; a second signal ends them at once (put back unexecuted).

        Raises CrashLoopError, after stopping, once every arbiter has been in
        a crash loop for ``crash_loop_exit`` seconds: a service that can run
        no job should fail where its supervisor (systemd, Kubernetes) sees it.
        """
        self._check("run_forever")
        wake = threading.Event()
        signals: list[int] = []
        failed: CrashLoopError | None = None

        def on_signal(signum: int, frame: FrameType | None) -> None:
            signals.append(signum)
            name = signal.Signals(signum).name
            if len(signals) == 1:
                log.info("signal received, stopping", signal=name)
            else:
                log.warning("second signal: running jobs go back now", signal=name)
                self._actor.tell(GiveUp())
            wake.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not signals:
                self._actor.tell(WhenCrashLooping(lambda _: wake.set()))
                wake.wait()
                if signals:
                    break
                # A crash loop: a short grace to recover (a database back up).
                wake.clear()
                if wake.wait(crash_loop_exit) and signals:
                    break
                failed = cast(CrashLoopError | None, self._actor.ask(CrashLooping()))
                if failed is not None:
                    log.error("giving up: every arbiter is in a crash loop", error=str(failed))
                    break
                wake.clear()
        finally:
            try:
                self.stop(timeout=grace)
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        if failed is not None:
            raise failed

    def __enter__(self) -> Manager:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
