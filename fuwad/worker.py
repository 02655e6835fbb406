"""The worker: claims ready jobs, runs their handlers, records outcomes.

A worker is one process with its own event loop and its own connections:
a small pool for claims and outcomes, and a dedicated connection that
LISTENs for new jobs and for running jobs that were cancelled.  It runs up
to ``concurrency`` jobs at once, async handlers on the loop and plain ones
in threads, and batches its outcomes: many completions or failures go to
the database in one statement.

Under a supervisor a worker also holds a *link*, a socket pair on which it
reports what it runs (so the supervisor can enforce hard timeouts and show
titles) and takes orders: rescue the jobs of a dead sibling, cancel a job,
drain.  Alone (``fuwad worker``) it needs none of that.

Every outcome is fenced by the lease: a worker whose job was taken from it
changes nothing, and says so in its log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import inspect
import json
import logging
import os
import random
import signal
import socket
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import setproctitle

from fuwad import db, queries
from fuwad.config import Config
from fuwad.db import UndecodableData
from fuwad.errors import DatabaseError, HandlerError
from fuwad.handler import Job, JobHandler, resolve
from fuwad.policy import MAX_ATTEMPTS, backoff, should_retry
from fuwad.rescue import host_name, rescue_dead, rescue_worker
from fuwad.states import WorkerState

log = logging.getLogger("fuwad.worker")

# Exit codes a supervisor reads.  A boot failure or crash backs off before
# the next spawn; a recycle is replaced at once.
EXIT_OK = 0
EXIT_BOOT_FAILED = 3
EXIT_RECYCLE = 4
EXIT_CRASH = 70

ERROR_TEXT_LIMIT = 16384  # characters of last_error kept, traceback included
POOL_SIZE = 3
RECONNECT_MAX_S = 10.0
RESCUE_EVERY_S = 5.0
JOBS_CHANNEL = "fuwad_jobs"
STOP_CHANNEL = "fuwad_stop"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Who this worker is and what it may do."""

    index: int = 0
    role: str = "worker"
    queues: list[str] | None = None
    supervisor_pid: int | None = None
    max_jobs: int = 0
    max_memory_mb: int = 0
    idle_timeout: float | None = None


@dataclass(slots=True)
class Running:
    """A job this worker is running now."""

    job: Job
    task: asyncio.Task[None]
    timeout: float
    sync: bool = False
    stopping: str = ""  # why we stop it early: "cancelled", "lease lost"


@dataclass(slots=True)
class Outcomes:
    """Outcomes waiting to be written, in batches."""

    completed: list[tuple[int, int]] = field(default_factory=list)
    failed: list[tuple[int, int, str, float | None]] = field(
        default_factory=list
    )

    def __bool__(self) -> bool:
        return bool(self.completed or self.failed)


def clean_text(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """Return ``text`` safe for a text column: no NUL, valid UTF-8, bounded.

    The head and the tail are kept, since a traceback's last lines say the
    most.
    """
    text = text.replace("\x00", "\\x00")
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    if len(text) > limit:
        half = limit // 2 - 20
        text = f"{text[:half]}\n... [truncated] ...\n{text[-half:]}"
    return text


def describe_error(exc: BaseException) -> str:
    """Return the type, message and traceback of ``exc`` for last_error."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return clean_text("".join(lines))


def worker_id_for(pid: int) -> str:
    """Return the id a worker with ``pid`` on this host goes by."""
    return f"{host_name()}:{pid}"


def rss_mb() -> float:
    """Return this process's resident memory in MiB."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1048576


class Worker:
    """One worker process's loop.  Make it, then ``await run()``."""

    def __init__(self, config: Config, dsn: str,
                 options: WorkerOptions | None = None,
                 link: socket.socket | None = None) -> None:
        self.config = config
        self.dsn = dsn
        self.options = options or WorkerOptions()
        self.id = worker_id_for(os.getpid())
        self.link = link
        self.concurrency = config.queue.concurrency
        self.queues = (self.options.queues if self.options.queues is not None
                       else config.queue.queue_list())
        self.running: dict[int, Running] = {}
        self.outcomes = Outcomes()
        self.jobs_done = 0
        self.jobs_failed = 0
        self.exit_code = EXIT_OK
        self.draining = False
        self.drain_reason = ""
        self.abort = False
        self.started = time.monotonic()
        self.last_work = time.monotonic()
        self._handlers: dict[str, type[JobHandler]] = {}
        self._wake = asyncio.Event()
        self._outcomes_ready = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._threads = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="fuwad-job"
        )
        self._link_writer: asyncio.StreamWriter | None = None
        self._pool: asyncpg.Pool | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DatabaseError("the worker's pool is not open yet")
        return self._pool

    # Lifecycle -------------------------------------------------------------

    async def run(self) -> int:
        """Run until drained; return the process exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.drain, "signal")
        loop.add_signal_handler(signal.SIGQUIT, self.stop_now)
        self._title()
        try:
            self._preload()
        except HandlerError as exc:
            log.error("worker could not start worker_id=%s error=%s",
                      self.id, exc)
            return EXIT_BOOT_FAILED
        try:
            self._pool = await db.create_pool(self.dsn, POOL_SIZE)
            await self.pool.execute(
                queries.REGISTER_WORKER, self.id, host_name(), os.getpid(),
                self.options.role, ",".join(self.queues or []) or None,
                self.options.supervisor_pid,
            )
        except (DatabaseError, OSError, asyncpg.PostgresError) as exc:
            log.error("worker could not start worker_id=%s error=%s",
                      self.id, exc)
            if self._pool is not None:
                await self._pool.close()
            return EXIT_BOOT_FAILED
        log.info("worker started worker_id=%s concurrency=%d queues=%s",
                 self.id, self.concurrency, ",".join(self.queues or ["*"]))
        self._tasks = [
            asyncio.create_task(self._listen(), name="listen"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._record(), name="record"),
        ]
        if self.link is not None:
            reader, self._link_writer = await asyncio.open_connection(
                sock=self.link)
            self._tasks.append(asyncio.create_task(self._read_link(reader),
                                                   name="link"))
        try:
            await self._report({"e": "ready"})
            await self._claim_loop()
            await self._finish_running()
        finally:
            await self._shut_down()
        return self.exit_code

    def drain(self, reason: str) -> None:
        """Stop claiming; finish running jobs, then exit."""
        if not self.draining:
            log.info("worker draining worker_id=%s reason=%s", self.id, reason)
        self.draining = True
        self.drain_reason = self.drain_reason or reason
        self._wake.set()

    def stop_now(self) -> None:
        """Stop at once: cancel running jobs and hand them back."""
        log.warning("worker stopping now worker_id=%s", self.id)
        self.abort = True
        self.drain("stop now")

    def recycle(self, reason: str) -> None:
        """Drain, then exit asking to be replaced."""
        self.exit_code = EXIT_RECYCLE
        self.drain(reason)

    async def _shut_down(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("worker task failed at shutdown worker_id=%s",
                              self.id)
        try:
            await self._flush()
            await self.pool.execute(queries.REMOVE_WORKER, self.id)
        except (DatabaseError, OSError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:
            # The jobs whose outcome was not written are rescued later and
            # run again: delivery is at least once.
            log.error("worker could not record its last outcomes "
                      "worker_id=%s error=%s", self.id, exc)
        await self.pool.close()
        self._threads.shutdown(wait=False, cancel_futures=True)
        log.info("worker stopped worker_id=%s jobs_done=%d jobs_failed=%d",
                 self.id, self.jobs_done, self.jobs_failed)

    # Claiming --------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self.draining:
            # Let jobs finishing in this same moment free their slots, so
            # that one claim fills many slots rather than one each.
            await asyncio.sleep(0)
            # Cleared before looking, so that a wakeup from here on (a new
            # job, a freed slot) ends the wait below at once.
            self._wake.clear()
            free = self.concurrency - len(self.running)
            wait: float | None = None
            if free > 0:
                jobs = await self._claim(free)
                for job in jobs:
                    self._start(job)
                if len(jobs) == free:
                    continue
                wait = await self._next_wait()
            idle_limit = self.options.idle_timeout
            if idle_limit is not None and not self.running:
                idle_left = self.last_work + idle_limit - time.monotonic()
                if idle_left <= 0:
                    self.drain("idle timeout")
                    break
                wait = idle_left if wait is None else min(wait, idle_left)
            await self._wait(wait)

    async def _claim(self, count: int) -> list[Job]:
        try:
            rows = await self.pool.fetch(queries.CLAIM_JOBS, self.id,
                                         self.queues, count)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                TimeoutError) as exc:
            log.warning("claim failed worker_id=%s error=%s", self.id, exc)
            await self._wait(1.0)
            return []
        if rows:
            log.debug("claimed jobs worker_id=%s count=%d", self.id, len(rows))
        jobs = [Job.from_row(row) for row in rows]
        return await self._pin_max_attempts(jobs)

    async def _pin_max_attempts(self, jobs: list[Job]) -> list[Job]:
        """Write a handler's max_attempts onto its jobs before they run.

        A job with no max_attempts of its own follows its handler's; but
        if its worker dies, the rescuer cannot import the handler to ask.
        So the limit goes into the row first, and a job whose handler
        allows one attempt is not run three times by crashes.
        """
        pins: dict[int, int] = {}
        for job in jobs:
            if job.max_attempts is not None:
                continue
            try:
                limit = self._handler(job.job_class).max_attempts
            except HandlerError:
                continue  # the job fails on its own when it runs
            if limit is not None:
                pins[job.id] = min(max(int(limit), 1), MAX_ATTEMPTS)
        if not pins:
            return jobs
        try:
            await self.pool.execute(queries.PIN_MAX_ATTEMPTS, self.id,
                                    list(pins), list(pins.values()))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                TimeoutError) as exc:
            # Not fatal: the limit is still applied when the job fails.
            log.warning("pinning max_attempts failed worker_id=%s error=%s",
                        self.id, exc)
            return jobs
        return [dataclasses.replace(job, max_attempts=pins[job.id])
                if job.id in pins else job for job in jobs]

    async def _next_wait(self) -> float:
        """Seconds to sleep: until the next job falls due, or worker_sleep."""
        sleep = self.config.queue.worker_sleep
        try:
            due = await self.pool.fetchval(queries.NEXT_DUE, self.queues)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return sleep
        return sleep if due is None else min(sleep, max(float(due), 0.01))

    async def _wait(self, timeout: float | None) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    # Running ---------------------------------------------------------------

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self.running[job.id] = Running(job, task, self._timeout_of(job))
        self.last_work = time.monotonic()
        self._title()

    def _timeout_of(self, job: Job) -> float:
        handler = self._handlers.get(job.job_class)
        if handler is not None and handler.timeout:
            return float(handler.timeout)
        return self.config.queue.worker_timeout

    def _preload(self) -> None:
        """Import the configured handler modules, so a bad deploy fails
        at start rather than on each job."""
        for module in self.config.queue.import_list():
            try:
                importlib.import_module(module)
            except Exception as exc:  # an import runs arbitrary user code
                raise HandlerError(
                    f"cannot import {module!r} from [queue] imports: "
                    f"{type(exc).__name__}: {exc}") from None

    def _handler(self, path: str) -> type[JobHandler]:
        found = self._handlers.get(path)
        if found is None:
            found = resolve(path)
            self._handlers[path] = found
        return found

    async def _run(self, job: Job) -> None:
        started = time.monotonic()
        entry = self.running[job.id]
        error: BaseException | None = None
        handler_cls: type[JobHandler] | None = None
        try:
            handler_cls = self._handler(job.job_class)
            entry.timeout = float(handler_cls.timeout or entry.timeout)
            await self._report({"e": "start", "job": job.id,
                                "class": job.job_class,
                                "timeout": entry.timeout})
            await self._call(handler_cls, job, entry)
        except asyncio.CancelledError:
            if not entry.stopping:
                raise
            log.warning("job stopped job_id=%d reason=%s", job.id,
                        entry.stopping)
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            error = exc
        else:
            self._complete(job, time.monotonic() - started)
        finally:
            del self.running[job.id]
            self.last_work = time.monotonic()
            self._wake.set()
            self._title()
            await self._report({"e": "end", "job": job.id})
        if error is not None:
            self._fail(job, handler_cls, error, time.monotonic() - started)
        self._after_job()

    async def _call(self, handler_cls: type[JobHandler], job: Job,
                    entry: Running) -> None:
        if isinstance(job.job_data, UndecodableData):
            raise UnusableJob(str(job.job_data))
        handler = handler_cls()
        if inspect.iscoroutinefunction(handler.handle):
            scope = asyncio.timeout(entry.timeout)
            try:
                async with scope:
                    await handler.handle(job.job_data, job)
            except TimeoutError:
                if not scope.expired():
                    raise  # the handler's own timeout, an ordinary error
                raise JobTimeout(entry.timeout) from None
            return
        entry.sync = True
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._threads, handler.handle,
                                      job.job_data, job)
        done, _ = await asyncio.wait({future}, timeout=entry.timeout)
        if not done:
            # A thread cannot be stopped.  Give it the grace period; if it
            # still runs, the job has timed out and this worker must be
            # replaced, since the thread may never end.
            grace = self.config.queue.kill_grace
            done, _ = await asyncio.wait({future}, timeout=grace)
            if not done:
                future.add_done_callback(_ignore_result)
                self.recycle(f"job {job.id} stuck past its timeout")
                raise JobTimeout(entry.timeout)
            log.warning("job finished past its timeout job_id=%d "
                        "timeout=%.1f", job.id, entry.timeout)
        future.result()

    def _complete(self, job: Job, duration: float) -> None:
        # processing -> completed
        self.outcomes.completed.append((job.id, job.attempts))
        self._outcomes_ready.set()
        self.jobs_done += 1
        log.info("job completed job_id=%d class=%s attempt=%d duration=%.3f",
                 job.id, job.job_class, job.attempts, duration)

    def _fail(self, job: Job, handler_cls: type[JobHandler] | None,
              error: BaseException, duration: float) -> None:
        q = self.config.queue
        limit = (job.max_attempts
                 or (handler_cls.max_attempts if handler_cls else None)
                 or q.worker_max_attempts)
        if isinstance(error, JobTimeout | HandlerError):
            text = clean_text(f"{type(error).__name__}: {error}")
        else:
            text = describe_error(error)
        self.jobs_failed += 1
        if should_retry(job.attempts, limit) \
                and not isinstance(error, UnusableJob):
            # processing -> pending, attempts left, after the backoff
            base = (handler_cls.retry_delay if handler_cls else None) \
                or q.retry_delay
            cap = (handler_cls.retry_delay_max if handler_cls else None) \
                or q.retry_delay_max
            delay = backoff(job.attempts, base, max(cap, base),
                            random.random())
            self.outcomes.failed.append((job.id, job.attempts, text, delay))
            log.warning("job failed, retry scheduled job_id=%d class=%s "
                        "attempt=%d max_attempts=%d retry_in=%.1f "
                        "duration=%.3f error=%s", job.id, job.job_class,
                        job.attempts, limit, delay, duration,
                        _first_line(error))
        else:
            # processing -> failed, no attempts left
            self.outcomes.failed.append((job.id, job.attempts, text, None))
            log.error("job failed for good job_id=%d class=%s attempt=%d "
                      "duration=%.3f error=%s", job.id, job.job_class,
                      job.attempts, duration, _first_line(error))
        self._outcomes_ready.set()

    def _after_job(self) -> None:
        o = self.options
        if o.max_jobs and self.jobs_done + self.jobs_failed >= o.max_jobs:
            self.recycle(f"ran {o.max_jobs} jobs")
        elif o.max_memory_mb and rss_mb() > o.max_memory_mb:
            self.recycle(f"memory above {o.max_memory_mb} MiB")

    def stop_job(self, job_id: int, reason: str) -> bool:
        """Stop a running job (cancelled, deleted or lease lost)."""
        entry = self.running.get(job_id)
        if entry is None:
            return False
        entry.stopping = reason
        entry.task.cancel()
        if entry.sync:
            # The thread runs on; the worker is replaced once it drains.
            self.recycle(f"job {job_id} {reason} while running in a thread")
        return True

    async def _finish_running(self) -> None:
        """Wait for running jobs up to graceful_timeout; hand back the rest."""
        if self.running and not self.abort:
            tasks = [r.task for r in self.running.values()]
            log.info("worker waiting for jobs worker_id=%s count=%d",
                     self.id, len(tasks))
            await asyncio.wait(tasks,
                               timeout=self.config.queue.graceful_timeout)
        leftover = list(self.running.values())
        if not leftover:
            return
        ids = [r.job.id for r in leftover]
        for entry in leftover:
            entry.stopping = "worker stopping"
            entry.task.cancel()
        await asyncio.wait([r.task for r in leftover], timeout=1.0)
        try:
            # processing -> pending, the interrupted attempt not counted
            handed = await self.pool.fetch(
                queries.HAND_BACK_JOBS, self.id, ids,
                f"interrupted: worker {self.id} stopped "
                f"({self.drain_reason}) before the job finished")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("hand back failed worker_id=%s error=%s", self.id, exc)
            return
        log.warning("jobs handed back worker_id=%s job_ids=%s", self.id,
                    ",".join(str(r["id"]) for r in handed))

    # Recording -------------------------------------------------------------

    async def _record(self) -> None:
        while True:
            await self._outcomes_ready.wait()
            self._outcomes_ready.clear()
            await asyncio.shield(self._flush())

    async def _flush(self) -> None:
        """Write every waiting outcome, in one statement per kind."""
        async with self._flush_lock:
            delay = 0.1
            while self.outcomes:
                batch, self.outcomes = self.outcomes, Outcomes()
                try:
                    await self._write(batch)
                except (OSError, asyncpg.PostgresError,
                        asyncpg.InterfaceError, TimeoutError) as exc:
                    log.warning("recording outcomes failed worker_id=%s "
                                "error=%s retry_in=%.1f", self.id, exc, delay)
                    self.outcomes.completed[:0] = batch.completed
                    self.outcomes.failed[:0] = batch.failed
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)

    async def _write(self, batch: Outcomes) -> None:
        written: set[int] = set()
        async with self.pool.acquire() as connection:
            if batch.completed:
                ids, attempts = zip(*batch.completed)
                rows = await connection.fetch(
                    queries.COMPLETE_JOBS, self.id, list(ids), list(attempts))
                written.update(row["id"] for row in rows)
            if batch.failed:
                ids, attempts, errors, delays = zip(*batch.failed)
                rows = await connection.fetch(
                    queries.FAIL_JOBS, self.id, list(ids), list(attempts),
                    list(errors), list(delays))
                written.update(row["id"] for row in rows)
        every = [i for i, _ in batch.completed]
        every += [f[0] for f in batch.failed]
        for job_id in every:
            if job_id not in written:
                log.warning("outcome discarded, lease lost job_id=%d "
                            "worker_id=%s", job_id, self.id)

    # Background duties -----------------------------------------------------

    async def _listen(self) -> None:
        """Hold a LISTEN connection of our own; re-open it after any loss."""
        delay = 0.5
        while True:
            lost = asyncio.get_running_loop().create_future()
            try:
                connection = await db.connect(self.dsn)
            except DatabaseError as exc:
                log.warning("listen connection failed worker_id=%s error=%s "
                            "retry_in=%.1f", self.id, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = 0.5
            connection.add_termination_listener(
                functools.partial(_on_terminated, lost))
            try:
                await connection.add_listener(JOBS_CHANNEL, self._on_jobs)
                await connection.add_listener(STOP_CHANNEL, self._on_stop)
                log.debug("listening worker_id=%s", self.id)
                # A notification may have been missed while we were away.
                self._wake.set()
                await lost
                log.warning("listen connection lost worker_id=%s", self.id)
            except (OSError, asyncpg.PostgresError,
                    asyncpg.InterfaceError) as exc:
                log.warning("listen failed worker_id=%s error=%s", self.id,
                            exc)
                await asyncio.sleep(delay)
            finally:
                if not connection.is_closed():
                    connection.terminate()

    def _on_jobs(self, _c: object, _pid: int, _channel: str,
                 queue: str) -> None:
        if self.queues is None or queue in self.queues:
            self._wake.set()

    def _on_stop(self, _c: object, _pid: int, _channel: str,
                 payload: str) -> None:
        for part in payload.split(","):
            if part.isdigit():
                self.stop_job(int(part), "cancelled")

    async def _heartbeat(self) -> None:
        interval = self.config.queue.heartbeat_interval
        next_rescue = 0.0
        while True:
            state = (WorkerState.DRAINING if self.draining
                     else WorkerState.BUSY if self.running
                     else WorkerState.IDLE)
            current = next(iter(self.running), None)
            try:
                row = await self.pool.fetchval(
                    queries.HEARTBEAT, self.id, state.value, current,
                    self.jobs_done, self.jobs_failed)
                if row is None:
                    # Someone took us for dead and removed our row; our
                    # leases are fenced, so just stand up again.
                    await self.pool.execute(
                        queries.REGISTER_WORKER, self.id, host_name(),
                        os.getpid(), self.options.role,
                        ",".join(self.queues or []) or None,
                        self.options.supervisor_pid)
                await self._check_leases()
                if self._link_writer is not None:
                    ready = await self.pool.fetchval(queries.READY_COUNT)
                    await self._report({"e": "backlog", "ready": ready})
                if time.monotonic() >= next_rescue:
                    next_rescue = time.monotonic() + RESCUE_EVERY_S
                    await self.rescue_dead_workers()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                    TimeoutError) as exc:
                log.warning("heartbeat failed worker_id=%s error=%s",
                            self.id, exc)
            await asyncio.sleep(interval)

    async def _check_leases(self) -> None:
        """Stop running jobs whose lease is gone (cancelled, rescued...)."""
        ids = [i for i, r in self.running.items() if not r.stopping]
        if not ids:
            return
        rows = await self.pool.fetch(queries.HELD_JOBS, self.id, ids)
        held = {row["id"] for row in rows}
        for job_id in ids:
            if job_id not in held and job_id in self.running:
                log.warning("job lease lost job_id=%d worker_id=%s",
                            job_id, self.id)
                self.stop_job(job_id, "lease lost")

    async def rescue_dead_workers(self) -> int:
        """Rescue the jobs of workers that are gone; return how many."""
        async with self.pool.acquire() as connection:
            return await rescue_dead(connection, self.config.queue,
                                     exclude=self.id)

    async def rescue(self, worker_id: str, reason: str,
                     timed_out: dict[int, str]) -> int:
        """Rescue the jobs of a sibling the supervisor saw die."""
        async with self.pool.acquire() as connection:
            return await rescue_worker(
                connection, self.config.queue, worker_id, reason, timed_out)

    # The link to the supervisor -------------------------------------------

    async def _read_link(self, reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line:
                # The supervisor is gone: drain rather than run unwatched.
                self.drain("supervisor gone")
                return
            try:
                order = json.loads(line)
                await self._obey(order)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("bad order from supervisor worker_id=%s error=%s",
                          self.id, exc)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                    DatabaseError) as exc:
                log.warning("order failed worker_id=%s error=%s", self.id,
                            exc)

    async def _obey(self, order: dict[str, Any]) -> None:
        command = order["cmd"]
        if command == "rescue":
            timed_out = {int(k): str(v)
                         for k, v in order.get("timed_out", {}).items()}
            count = await self.rescue(str(order["worker_id"]),
                                      str(order["reason"]), timed_out)
            await self._report({"e": "rescued",
                                "worker_id": order["worker_id"],
                                "jobs": count})
        elif command == "cancel":
            # processing -> cancelled; the trigger's NOTIFY would stop the
            # job too, but stopping it here saves the round trip.
            job_id = int(order["job"])
            await self.pool.fetchval(queries.CANCEL_JOB, job_id)
            self.stop_job(job_id, "cancelled")
        elif command == "drain":
            self.drain(str(order.get("reason", "asked")))
        elif command == "recycle":
            self.recycle(str(order.get("reason", "asked")))
        else:
            raise KeyError(f"unknown order {command!r}")

    async def _report(self, event: dict[str, Any]) -> None:
        writer = self._link_writer
        if writer is None or writer.is_closing():
            return
        writer.write(json.dumps(event).encode() + b"\n")
        try:
            await writer.drain()
        except OSError:
            self._link_writer = None

    def _title(self) -> None:
        role = self.options.role
        label = (f"fuwad: worker {self.options.index}" if role == "worker"
                 else f"fuwad: {role} worker")
        if self.draining:
            label += " draining"
        if not self.running:
            setproctitle.setproctitle(f"{label} idle")
            return
        first = next(iter(self.running.values())).job
        more = f" +{len(self.running) - 1}" if len(self.running) > 1 else ""
        setproctitle.setproctitle(
            f"{label} job {first.id} {first.job_class}{more}")


class UnusableJob(HandlerError):
    """A job no attempt can run, such as one whose data cannot decode."""


class JobTimeout(Exception):
    """A job ran past its timeout."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"job timed out after {seconds:g} seconds")
        self.seconds = seconds


def _first_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return clean_text(f"{type(error).__name__}: {text}", 200)


def _on_terminated(future: asyncio.Future[None], _connection: object) -> None:
    if not future.done():
        future.set_result(None)


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # consumed, so asyncio does not warn
