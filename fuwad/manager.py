"""QueueManager: push jobs and steer them, from any asyncio program.

Producers and operators use this class; workers do not (they have their own
batched moves in :mod:`fuwad.worker`).  Every method is one statement, so
each move is one transaction.  Input is checked before it reaches the
database, and refused with :class:`~fuwad.errors.InvalidJob` saying what to
change.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from fuwad import db, queries
from fuwad import migrate as migrations
from fuwad.config import Config, load
from fuwad.errors import DatabaseError, InvalidJob, InvalidMove, JobNotFound
from fuwad.handler import Job, JobHandler, class_path
from fuwad.policy import MAX_ATTEMPTS
from fuwad.states import JobStatus
from fuwad.when import When, check_delay, delay_seconds

PRIORITY_LOW = 1
PRIORITY_NORMAL = 5
PRIORITY_HIGH = 10
PRIORITY_NAMES = {"low": PRIORITY_LOW, "normal": PRIORITY_NORMAL,
                  "high": PRIORITY_HIGH}

_CLASS_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
_QUEUE_NAME = re.compile(r"^[\w.:-]{1,64}$")

# asyncpg ships no type hints: both are Any to mypy, and both have fetch*.
Executor: TypeAlias = Any


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job for :meth:`QueueManager.push_many`."""

    job_name: str
    job_class: str | type[JobHandler]
    data: Any = None
    priority: int | str = PRIORITY_NORMAL
    queue: str = "default"
    delay: When = 0
    max_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class _Checked:
    job_name: str
    job_class: str
    data: str
    queue: str
    priority: int
    max_attempts: int | None
    delay: int


def parse_priority(value: int | str) -> int:
    """Return a priority 1..10 from a number or low|normal|high."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in PRIORITY_NAMES:
            return PRIORITY_NAMES[name]
        try:
            value = int(name)
        except ValueError:
            raise InvalidJob(
                f"priority must be low, normal, high or 1..10, not {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"priority must be an integer 1..10, not {value!r}")
    if not 1 <= value <= 10:
        raise InvalidJob(f"priority must be 1 (low) to 10 (high), not {value}")
    return value


# A NUL in any string of the data, as json.dumps escapes it: \u0000 after
# an even number of backslashes (an odd number would escape the slash).
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode_data(data: Any, limit: int) -> str:
    """Return ``data`` as JSON text, refusing what PostgreSQL would refuse."""
    try:
        # ensure_ascii=False keeps a lone surrogate as it is, so that the
        # UTF-8 check below finds it (escaped, PostgreSQL would refuse it).
        text = json.dumps({} if data is None else data, allow_nan=False,
                          ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(
            f"job data must be JSON: {exc}; pass dicts, lists, strings, "
            "finite numbers, booleans and None"
        ) from None
    except RecursionError:
        raise InvalidJob(
            "job data is nested too deeply to encode; push flatter data"
        ) from None
    if _ESCAPED_NUL.search(text):
        raise InvalidJob(
            "job data holds a NUL character (\\u0000), which PostgreSQL "
            "cannot store; encode binary data as base64"
        )
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise InvalidJob(
            "job data holds a string that is not valid Unicode (a lone "
            "surrogate, as from undecodable bytes); clean it or send bytes "
            "as base64"
        ) from None
    if size > limit:
        raise InvalidJob(
            f"job data is {size} bytes, over the {limit}-byte limit "
            "([queue] max_payload_bytes); store large data elsewhere and "
            "pass its key"
        )
    return text


def check_spec(spec: JobSpec, max_payload_bytes: int) -> _Checked:
    """Validate one job, or raise InvalidJob naming what is wrong."""
    if not isinstance(spec.job_name, str) or not spec.job_name.strip():
        raise InvalidJob("job_name must be a non-empty string")
    if len(spec.job_name) > 255 or "\x00" in spec.job_name \
            or not _valid_unicode(spec.job_name):
        raise InvalidJob("job_name must be at most 255 characters of valid "
                         "Unicode, with no NUL")
    path = class_path(spec.job_class)
    if len(path) > 255 or not _CLASS_PATH.match(path):
        raise InvalidJob(
            f"job_class {path[:80]!r} is not a dotted class path such as "
            "app.jobs.SendEmail"
        )
    if not isinstance(spec.queue, str) or not _QUEUE_NAME.match(spec.queue):
        raise InvalidJob(
            "queue must be 1 to 64 letters, digits or . _ : -, "
            f"not {spec.queue!r}"
        )
    attempts = spec.max_attempts
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int)
        or not 1 <= attempts <= MAX_ATTEMPTS
    ):
        raise InvalidJob(
            f"max_attempts must be 1 to {MAX_ATTEMPTS}, not {attempts!r}"
        )
    return _Checked(
        job_name=spec.job_name,
        job_class=path,
        data=encode_data(spec.data, max_payload_bytes),
        queue=spec.queue,
        priority=parse_priority(spec.priority),
        max_attempts=attempts,
        delay=math.ceil(delay_seconds(spec.delay)),
    )


class QueueManager:
    """Push, inspect and steer jobs.

    Make one with :meth:`connect` (which opens a pool, and starts the
    embedded database when no DSN is configured) or around a pool of your
    own.  Methods that write take ``connection=`` to join the caller's
    transaction: the job then exists only if that transaction commits.
    """

    def __init__(self, pool: asyncpg.Pool, config: Config | None = None,
                 *, owns_pool: bool = False) -> None:
        self.pool = pool
        self.config = config or Config()
        self._owns_pool = owns_pool

    @classmethod
    async def connect(cls, dsn: str | None = None,
                      config: Config | None = None, *,
                      migrate: bool = True) -> QueueManager:
        """Open a manager on ``dsn``, or on the configured database.

        The schema is created or upgraded first unless ``migrate`` is
        false, so a producer may start before the daemon ever ran.
        """
        config = config or load()
        target = dsn or db.resolve_dsn(config)
        pool = await db.create_pool(target, config.database.pool_size)
        if migrate:
            try:
                async with pool.acquire() as connection:
                    await migrations.migrate(connection)
            except BaseException:
                await pool.close()
                raise
        return cls(pool, config, owns_pool=True)

    async def close(self) -> None:
        """Close the pool if this manager opened it."""
        if self._owns_pool:
            await self.pool.close()

    async def __aenter__(self) -> QueueManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _on(self, connection: asyncpg.Connection | None) -> Executor:
        return connection if connection is not None else self.pool

    # Producers ---------------------------------------------------------

    async def push(
        self,
        job_name: str,
        job_class: str | type[JobHandler],
        data: Any = None,
        *,
        priority: int | str = PRIORITY_NORMAL,
        queue: str = "default",
        delay: When = 0,
        max_attempts: int | None = None,
        connection: asyncpg.Connection | None = None,
    ) -> int:
        """Push one job; return its id."""
        spec = JobSpec(job_name, job_class, data, priority, queue, delay,
                       max_attempts)
        c = check_spec(spec, self.config.queue.max_payload_bytes)
        job_id = await self._guard(self._on(connection).fetchval(
            queries.PUSH_JOB, c.job_name, c.job_class, c.data, c.queue,
            c.priority, c.max_attempts, c.delay,
        ))
        return int(job_id)

    async def push_high(self, job_name: str, job_class: str | type[JobHandler],
                        data: Any = None, **options: Any) -> int:
        """Push one job at priority 10."""
        return await self.push(job_name, job_class, data,
                               priority=PRIORITY_HIGH, **options)

    async def push_low(self, job_name: str, job_class: str | type[JobHandler],
                       data: Any = None, **options: Any) -> int:
        """Push one job at priority 1."""
        return await self.push(job_name, job_class, data,
                               priority=PRIORITY_LOW, **options)

    async def schedule(self, job_name: str,
                       job_class: str | type[JobHandler], when: When,
                       data: Any = None, **options: Any) -> int:
        """Push one job to run at ``when`` ('+1 day', seconds, timedelta,
        or an aware datetime)."""
        return await self.push(job_name, job_class, data, delay=when,
                               **options)

    async def push_many(
        self,
        jobs: Iterable[JobSpec],
        *,
        connection: asyncpg.Connection | None = None,
    ) -> list[int]:
        """Push many jobs in one statement; return their ids in order.

        Every job is checked first: one bad job refuses the whole batch,
        and nothing is written.
        """
        limit = self.config.queue.max_payload_bytes
        checked = [check_spec(spec, limit) for spec in jobs]
        if not checked:
            return []
        rows = await self._guard(self._on(connection).fetch(
            queries.PUSH_JOBS,
            [c.job_name for c in checked], [c.job_class for c in checked],
            [c.data for c in checked], [c.queue for c in checked],
            [c.priority for c in checked], [c.max_attempts for c in checked],
            [c.delay for c in checked],
        ))
        return [int(row["id"]) for row in rows]

    # Reading -----------------------------------------------------------

    async def get_job(self, job_id: int) -> Job:
        """Return one job, or raise JobNotFound."""
        row = await self._guard(
            self.pool.fetchrow(queries.GET_JOB, _job_id(job_id))
        )
        if row is None:
            raise JobNotFound(job_id)
        return Job.from_row(row)

    async def get_pending_jobs(self, limit: int = 100,
                               queue: str | None = None) -> list[Job]:
        """Return pending jobs in the order workers will claim them."""
        rows = await self._guard(self.pool.fetch(
            queries.GET_PENDING_JOBS, _limit(limit), queue
        ))
        return [Job.from_row(row) for row in rows]

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        page: int = 1,
        limit: int = 50,
        queue: str | None = None,
        job_class: str | None = None,
        max_id: int | None = None,
    ) -> tuple[list[Job], int]:
        """Return one page of jobs, newest first, and the total matching.

        With ``max_id``, only jobs up to that id: pages that hold still
        while new jobs arrive.
        """
        if status is not None:
            status = parse_status(status)
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise InvalidJob(f"page must be 1 or more, not {page!r}")
        if page > MAX_PAGE:
            raise InvalidJob(f"page must be at most {MAX_PAGE}, not {page}")
        size = _limit(limit)
        offset = (page - 1) * size
        newest = None if max_id is None else _job_id(max_id)
        rows = await self._guard(self.pool.fetch(
            queries.LIST_JOBS, status, queue, job_class, size, offset, newest
        ))
        total = await self._guard(self.pool.fetchval(
            queries.COUNT_JOBS, status, queue, job_class, newest
        ))
        return [Job.from_row(row) for row in rows], int(total)

    async def get_stats(self) -> dict[str, int]:
        """Return the number of jobs in each status, and ``total``."""
        rows = await self._guard(self.pool.fetch(queries.STATS))
        stats = {status.value: 0 for status in JobStatus}
        for row in rows:
            stats[row["status"]] = int(row["count"])
        stats["total"] = sum(stats.values())
        return stats

    async def ready(self) -> tuple[int, float]:
        """Return how many jobs are ready now and the oldest one's wait."""
        row = await self._guard(self.pool.fetchrow(queries.READY))
        return int(row[0]), float(row[1])

    # Operators ---------------------------------------------------------

    async def retry(self, job_id: int, delay: When = 0) -> None:
        """failed | completed -> pending, with attempts reset."""
        seconds = check_delay(delay_seconds(delay))
        await self._move(queries.RETRY_JOB, job_id, "retried", seconds)

    async def cancel(self, job_id: int) -> None:
        """pending | processing -> cancelled; never retried after."""
        await self._move(queries.CANCEL_JOB, job_id, "cancelled")

    async def mark_completed(self, job_id: int) -> None:
        """pending | processing -> completed, by hand."""
        await self._move(queries.MARK_COMPLETED, job_id, "marked completed")

    async def mark_failed(self, job_id: int, error: str = "") -> None:
        """pending | processing -> failed, by hand, with ``error``."""
        text = (error or "marked failed by an operator").replace("\x00", "")
        await self._move(queries.MARK_FAILED, job_id, "marked failed", text)

    async def delete(self, job_id: int) -> str:
        """Delete a job whatever its status; return the status it had."""
        row = await self._guard(
            self.pool.fetchrow(queries.DELETE_JOB, _job_id(job_id))
        )
        if row is None:
            raise JobNotFound(job_id)
        return str(row["status"])

    async def cleanup(self, completed_ttl: int | None = None,
                      failed_ttl: int | None = None) -> int:
        """Delete finished jobs past their time to live; return how many."""
        q = self.config.queue
        done = q.completed_job_ttl if completed_ttl is None else completed_ttl
        failed = q.failed_job_ttl if failed_ttl is None else failed_ttl
        count = await self._guard(
            self.pool.fetchval(queries.CLEANUP, float(done), float(failed))
        )
        return int(count)

    async def _move(self, query: str, job_id: int, action: str,
                    *args: Any) -> None:
        checked = _job_id(job_id)
        moved = await self._guard(self.pool.fetchval(query, checked, *args))
        if moved is None:
            status = await self._guard(
                self.pool.fetchval(queries.JOB_STATUS, checked)
            )
            if status is None:
                raise JobNotFound(checked)
            raise InvalidMove(checked, status, action)

    @staticmethod
    async def _guard(awaitable: Any) -> Any:
        """Await a query, turning a lost connection into DatabaseError."""
        try:
            return await awaitable
        except (OSError, asyncpg.InterfaceError,
                asyncpg.PostgresConnectionError) as exc:
            raise DatabaseError(
                f"lost the connection to PostgreSQL: {exc}; "
                "check that the server runs"
            ) from None


def _valid_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _job_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidJob(f"a job id is a positive integer, not {value!r}")
    if value > 2**63 - 1:
        raise JobNotFound(value)
    return value


MAX_PAGE_SIZE = 500
MAX_PAGE = 10**9  # far past any table, and the offset still fits bigint


def _limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidJob(f"limit must be a positive integer, not {value!r}")
    return min(value, MAX_PAGE_SIZE)


def parse_status(value: str) -> str:
    """Return ``value`` if it names a job status, else raise InvalidJob."""
    try:
        return JobStatus(value).value
    except ValueError:
        valid = ", ".join(s.value for s in JobStatus)
        raise InvalidJob(
            f"unknown status {value!r}; use one of {valid}"
        ) from None
