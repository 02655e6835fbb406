"""fuwactl's database commands: migrate, dsn, and pushing and steering jobs.

These commands talk to PostgreSQL through :class:`~fuwad.manager.QueueManager`
and never to the daemon, so they work whether it runs or not.  What can be
checked without the database (ids, JSON, priority, delay, status, the
configuration) is checked before connecting, so a typo is reported even
while the database is away.

Exit codes: 0 done; 1 the command failed (no such job, a move the job's
state forbids, the database unreachable or refusing); 2 the command line or
the configuration is wrong.  Output of job values is plain text: control
characters from a job's name, data or error are shown escaped, never sent
to the terminal as they are.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from fuwad import db, embedded
from fuwad import migrate as migrations
from fuwad.config import Config
from fuwad.ctl.database import run_on_database
from fuwad.ctl.output import (
    emit_json,
    pairs,
    table,
)
from fuwad.errors import InvalidJob
from fuwad.handler import Job
from fuwad.manager import (
    MAX_PAGE_SIZE,
    PRIORITY_NAMES,
    JobSpec,
    QueueManager,
    check_spec,
    parse_status,
)
from fuwad.states import JobStatus
from fuwad.when import delay_seconds, parse_relative

log = logging.getLogger("fuwad.ctl")

Command = Callable[[argparse.Namespace, Config], Coroutine[Any, Any, int]]

# One connection is all a single command needs.
POOL_SIZE = 1

# Control characters (C0 but tab and newline, DEL, C1) and the bidirectional
# overrides that can make text display as something else.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_PRIORITY_WORDS = {number: name for name, number in PRIORITY_NAMES.items()}


# Parsing -------------------------------------------------------------------


def _job_id(text: str) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a job id is a positive whole number, not {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"a job id is a positive whole number, not {text!r}"
        )
    return value


def _positive(text: str) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of 1 or more, not {text!r}"
        )
    return value


def _json_data(text: str | None) -> Any:
    """Return the value of ``--data``, or raise InvalidJob saying why not."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJob(
            f"--data is not valid JSON ({exc.msg} at column {exc.colno}); "
            """write it like '{"path": "/srv/uploads"}'"""
        ) from None
    except RecursionError:
        raise InvalidJob("--data is nested too deeply") from None


def _at_seconds(text: str) -> float:
    """Return seconds until ``--at``: '+1 day', '+90 minutes' or ISO time."""
    cleaned = text.strip()
    if not cleaned.startswith("+"):
        try:
            moment = datetime.fromisoformat(cleaned)
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                raise InvalidJob(
                    f"--at {text!r} has no timezone; add one, as in "
                    "2030-01-31T09:00:00+01:00 or 2030-01-31T08:00:00Z"
                )
            return delay_seconds(moment)
    try:
        return delay_seconds(parse_relative(cleaned))
    except InvalidJob:
        raise InvalidJob(
            f"cannot read --at {text!r}; write '+90 minutes', '+1 day' or "
            "an ISO time with a timezone such as 2030-01-31T09:00:00+01:00"
        ) from None


def _delay(args: argparse.Namespace) -> float:
    if args.at is not None:
        return _at_seconds(args.at)
    if args.delay is not None:
        return delay_seconds(args.delay)
    return 0.0


# Showing -------------------------------------------------------------------


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(text: str) -> str:
    """Return ``text`` with control characters shown as escapes.

    Tabs and newlines stay, for tracebacks; everything a terminal would
    act on (escape sequences, carriage returns, direction overrides) is
    made visible instead.
    """
    return _UNSAFE.sub(_escape, text)


def _cell(text: str) -> str:
    # table() turns newlines into spaces; tabs would break its columns.
    return plain(text).replace("\t", " ")


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone().isoformat(sep=" ", timespec="seconds")


def _short_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _priority(value: int) -> str:
    word = _PRIORITY_WORDS.get(value)
    return f"{value} ({word})" if word else str(value)


def _attempts(job: Job) -> str:
    if job.max_attempts is None:
        return (f"{job.attempts} (maximum: the handler's, else [queue] "
                "worker_max_attempts)")
    return f"{job.attempts} of {job.max_attempts}"


def _record(job: Job) -> dict[str, Any]:
    return dataclasses.asdict(job)


def _indented(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def show_job(job: Job) -> str:
    """Return every field of ``job`` for a person to read."""
    fields = [
        ("id", job.id),
        ("name", _cell(job.job_name)),
        ("class", _cell(job.job_class)),
        ("queue", _cell(job.queue)),
        ("status", job.status),
        ("priority", _priority(job.priority)),
        ("attempts", _attempts(job)),
        ("delay", f"{job.delay}s"),
        ("available at", _time(job.available_at)),
        ("created at", _time(job.created_at)),
        ("started at", _time(job.started_at)),
        ("completed at", _time(job.completed_at)),
        ("failed at", _time(job.failed_at)),
        ("worker", None if job.worker_id is None else _cell(job.worker_id)),
        ("leased at", _time(job.leased_at)),
    ]
    data = json.dumps(job.job_data, indent=2, ensure_ascii=False)
    parts = [pairs(fields), "data:", _indented(plain(data))]
    if job.last_error:
        parts += ["last error:", _indented(plain(job.last_error))]
    else:
        parts.append("last error: -")
    return "\n".join(parts)


def _job_rows(jobs: list[Job]) -> list[list[Any]]:
    rows = []
    for job in jobs:
        tries = str(job.attempts)
        if job.max_attempts is not None:
            tries += f"/{job.max_attempts}"
        rows.append([
            job.id, job.status, _cell(job.job_name), _cell(job.job_class),
            _cell(job.queue), _PRIORITY_WORDS.get(job.priority, job.priority),
            tries, _short_time(job.created_at),
        ])
    return rows


# Running -------------------------------------------------------------------


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap ``command`` so that every failure leaves as one Fail."""

    def run(args: argparse.Namespace) -> int:
        return run_on_database(args, command)

    return run


async def _connect(dsn: str) -> asyncpg.Connection:
    return await db.connect(dsn)


@asynccontextmanager
async def _manager(config: Config) -> AsyncIterator[QueueManager]:
    dsn = db.resolve_dsn(config)
    pool = await db.create_pool(dsn, POOL_SIZE)
    manager = QueueManager(pool, config, owns_pool=True)
    try:
        yield manager
    finally:
        await manager.close()


# Commands ------------------------------------------------------------------


async def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    connection = await _connect(db.resolve_dsn(config))
    try:
        applied = await migrations.migrate(connection)
    finally:
        await connection.close()
    if args.json:
        emit_json({"applied": applied})
    elif applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("the schema is up to date")
    return 0


async def cmd_dsn(args: argparse.Namespace, config: Config) -> int:
    dsn = db.resolve_dsn(config)
    if args.json:
        emit_json({"dsn": dsn})
    else:
        print(dsn)
    return 0


async def cmd_stop_db(args: argparse.Namespace, config: Config) -> int:
    if config.database.dsn:
        # Not an error: systemd's ExecStopPost runs this whatever the
        # configuration.
        message = ("a DSN is configured, so fuwad runs no database of its "
                   "own; nothing to stop")
        if args.json:
            emit_json({"stopped": False, "reason": message})
        else:
            print(message)
        return 0
    data_dir = config.data_dir()
    stopped = embedded.stop(data_dir)
    if args.json:
        emit_json({"stopped": stopped, "data_dir": str(data_dir)})
    elif stopped:
        print(f"stopped the embedded PostgreSQL in {data_dir}")
    else:
        print(f"no embedded PostgreSQL runs in {data_dir}")
    return 0


async def cmd_push(args: argparse.Namespace, config: Config) -> int:
    spec = JobSpec(
        job_name=args.name,
        job_class=args.job_class,
        data=_json_data(args.data),
        priority=args.priority,
        queue=args.queue,
        delay=_delay(args),
        max_attempts=args.max_attempts,
    )
    check_spec(spec, config.queue.max_payload_bytes)
    async with _manager(config) as manager:
        job_id = await manager.push(
            spec.job_name, spec.job_class, spec.data,
            priority=spec.priority, queue=spec.queue, delay=spec.delay,
            max_attempts=spec.max_attempts,
        )
    log.debug("job pushed id=%d", job_id)
    if args.json:
        emit_json({"id": job_id})
    else:
        print(job_id)
    return 0


async def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    async with _manager(config) as manager:
        stats = await manager.get_stats()
    if args.json:
        emit_json(stats)
        return 0
    rows = [[status.value, stats[status.value]] for status in JobStatus]
    rows.append(["total", stats["total"]])
    print(table(["status", "jobs"], rows))
    return 0


async def cmd_list(args: argparse.Namespace, config: Config) -> int:
    status = None if args.status is None else parse_status(args.status)
    async with _manager(config) as manager:
        jobs, total = await manager.list_jobs(
            status=status, page=args.page, limit=args.limit,
            queue=args.queue, job_class=args.job_class,
        )
    size = min(args.limit, MAX_PAGE_SIZE)
    if args.json:
        emit_json({"jobs": [_record(job) for job in jobs], "total": total,
                   "page": args.page, "limit": size})
        return 0
    pages = max(1, math.ceil(total / size))
    if not jobs:
        print("no jobs" if total == 0
              else f"no jobs on page {args.page}; there are {pages} pages")
        return 0
    headers = ["id", "status", "name", "class", "queue", "priority",
               "attempts", "created"]
    print(table(headers, _job_rows(jobs)))
    noun = "job" if total == 1 else "jobs"
    print(f"page {args.page} of {pages}, {total} {noun}")
    return 0


async def cmd_show(args: argparse.Namespace, config: Config) -> int:
    async with _manager(config) as manager:
        job = await manager.get_job(args.id)
    if args.json:
        emit_json(_record(job))
    else:
        print(show_job(job))
    return 0


async def cmd_retry(args: argparse.Namespace, config: Config) -> int:
    delay = 0.0 if args.delay is None else delay_seconds(args.delay)
    async with _manager(config) as manager:
        await manager.retry(args.id, delay)
        job = await manager.get_job(args.id)
    # A worker may claim the job at once, so report the move made, not
    # the status read back.
    if args.json:
        emit_json({"id": job.id, "status": JobStatus.PENDING.value,
                   "available_at": job.available_at})
    else:
        print(f"job {job.id} is pending again, due at "
              f"{_time(job.available_at)}")
    return 0


async def cmd_cancel(args: argparse.Namespace, config: Config) -> int:
    async with _manager(config) as manager:
        await manager.cancel(args.id)
    if args.json:
        emit_json({"id": args.id, "status": JobStatus.CANCELLED.value})
    else:
        print(f"job {args.id} cancelled")
    return 0


async def cmd_delete(args: argparse.Namespace, config: Config) -> int:
    async with _manager(config) as manager:
        was = await manager.delete(args.id)
    if args.json:
        emit_json({"id": args.id, "deleted": True, "status": was})
    else:
        print(f"job {args.id} deleted (it was {was})")
    return 0


async def cmd_cleanup(args: argparse.Namespace, config: Config) -> int:
    async with _manager(config) as manager:
        count = await manager.cleanup()
    q = config.queue
    if args.json:
        emit_json({"deleted": count,
                   "completed_job_ttl": q.completed_job_ttl,
                   "failed_job_ttl": q.failed_job_ttl})
    else:
        noun = "job" if count == 1 else "jobs"
        print(f"deleted {count} finished {noun} (completed ones older than "
              f"{q.completed_job_ttl}s, failed and cancelled ones older "
              f"than {q.failed_job_ttl}s)")
    return 0


# The parser ----------------------------------------------------------------


def _add(commands: Any, name: str, command: Command,
         help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text[:1].upper()
        + help_text[1:] + ".",
    )
    # Also accepted after the command.  SUPPRESS keeps a missing flag here
    # from resetting one given before the command.
    parser.add_argument("--json", action="store_true",
                        default=argparse.SUPPRESS,
                        help="print JSON for scripts instead of tables")
    parser.set_defaults(run=_runner(command))
    return parser


def _add_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", type=_job_id, required=True, metavar="N",
                        help="the job's id")


def register(commands: Any) -> None:
    """Add the database commands to fuwactl's subcommands."""
    _add(commands, "migrate", cmd_migrate,
         "create or upgrade the queue tables")
    _add(commands, "dsn", cmd_dsn,
         "print the database URL in use (starts the embedded server if "
         "no DSN is configured)")

    _add(commands, "stop-db", cmd_stop_db,
         "stop the embedded PostgreSQL (stop the daemon first; the next "
         "fuwad or fuwactl command starts it again)")

    push = _add(commands, "push", cmd_push, "push one job; print its id")
    push.add_argument("name", metavar="NAME", help="a name for people")
    push.add_argument("job_class", metavar="CLASS",
                      help="dotted path of the handler, e.g. app.jobs.Send")
    push.add_argument("--data", metavar="JSON",
                      help="the job's data as JSON (default: {})")
    push.add_argument("--queue", default="default", metavar="Q",
                      help="queue name (default: default)")
    push.add_argument("--priority", default="normal", metavar="P",
                      help="low, normal, high or 1..10 (default: normal)")
    when = push.add_mutually_exclusive_group()
    when.add_argument("--delay", metavar="SECONDS",
                      help="run no sooner than this many seconds from now")
    when.add_argument("--at", metavar="WHEN",
                      help="run at '+90 minutes', '+1 day' or an ISO time "
                           "with a timezone")
    push.add_argument("--max-attempts", type=int, metavar="N",
                      help="attempts before the job fails for good "
                           "(default: the handler's, else the config's)")

    _add(commands, "stats", cmd_stats, "count jobs in each status")

    listing = _add(commands, "list", cmd_list, "list jobs, newest first")
    listing.add_argument("--status", metavar="S",
                         help="only jobs in this status: " + ", ".join(
                             s.value for s in JobStatus))
    listing.add_argument("--queue", metavar="Q", help="only this queue")
    listing.add_argument("--class", dest="job_class", metavar="C",
                         help="only jobs of this handler class")
    listing.add_argument("--page", type=_positive, default=1, metavar="P",
                         help="page number (default: 1)")
    listing.add_argument("--limit", type=_positive, default=50, metavar="L",
                         help=f"jobs per page, at most {MAX_PAGE_SIZE} "
                              "(default: 50)")

    show = _add(commands, "show", cmd_show, "show every field of one job")
    show.add_argument("id", type=_job_id, metavar="ID", help="the job's id")

    retry = _add(commands, "retry", cmd_retry,
                 "run a failed or completed job again, attempts reset")
    _add_id(retry)
    retry.add_argument("--delay", metavar="S",
                       help="seconds (or '+10 minutes') before it is due")

    _add_id(_add(commands, "cancel", cmd_cancel,
                 "cancel a pending or processing job"))
    _add_id(_add(commands, "delete", cmd_delete,
                 "delete a job, whatever its status"))
    _add(commands, "cleanup", cmd_cleanup,
         "delete finished jobs past [queue] completed_job_ttl and "
         "failed_job_ttl")
