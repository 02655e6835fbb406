"""The REST API under /api/queue: its handlers and its one route table.

Handlers stay thin: read and check the input, call :class:`QueueManager`
(jobs live in the database) or the control socket (workers and the monitor
live in the daemon), and wrap the answer in the envelope.  Who may call
what is in :data:`ENDPOINTS`, enforced by :func:`fuwad.http.auth.guard`
before a handler runs.  Error codes:

- 400: the input is wrong (the message says which field and why);
- 404: no job has that id;
- 409: the job is in a state that cannot make the asked move;
- 413: the body is larger than ``[http] max_body_bytes``;
- 503: the database or the daemon does not answer (or the daemon refuses
  this process on its control socket).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from fuwad import queries
from fuwad.control.client import AsyncControlClient
from fuwad.errors import (
    ControlError,
    ControlTimeout,
    DaemonNotRunning,
    DatabaseError,
    FuwadError,
    InvalidJob,
    InvalidMove,
    JobNotFound,
)
from fuwad.handler import Job
from fuwad.http.common import (
    AUDIT_JOB,
    CONFIG,
    IDENTITY,
    MANAGER,
    REQUEST_ID,
    ApiError,
    ok,
)
from fuwad.tokens import Identity, Role
from fuwad.rescue import host_name

log = logging.getLogger("fuwad.http.api")

PREFIX = "/api/queue"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200  # larger limits are cut to this; the answer says which
MAX_PAGE = 1_000_000
MAX_ID = 2**63 - 1
MAX_FILTER_CHARS = 255
HEALTH_TIMEOUT_S = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Input ---------------------------------------------------------------------

def _text(value: str, name: str) -> str:
    """Refuse text PostgreSQL would refuse, before it reaches a query."""
    if "\x00" in value:
        raise ApiError(400, f"{name} must not hold a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{name} must be valid UTF-8 text") from None
    return value


def _whole(raw: str, name: str, low: int, high: int,
           bounds: str | None = None) -> int:
    """Read a query parameter's digits; ``bounds`` says what is allowed
    when it is not plainly ``low`` to ``high``."""
    if raw[:1] in ("+", " ") or raw != raw.strip():
        raise ApiError(
            400, f"{name} must be written in digits alone, with no sign or "
            "space (a '+' in a URL reads as a space)"
        )
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise ApiError(
            400, f"{name} must be a whole number from {low}, not {raw[:40]!r}"
        )
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(
            400, f"{name} must be {bounds or f'{low} to {high}'}, not {value}"
        )
    return value


def _query_once(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, f"give the query parameter {name} once")
    return values[0] if values else None


def query_int(request: web.Request, name: str, default: int | None,
              low: int, high: int, bounds: str | None = None) -> int:
    """Return the whole-number query parameter ``name``."""
    raw = _query_once(request, name)
    if raw is None:
        if default is None:
            raise ApiError(400, f"the query parameter {name} is required, "
                           f"such as ?{name}=1")
        return default
    return _whole(raw, name, low, high, bounds)


def query_text(request: web.Request, name: str) -> str | None:
    """Return the text query parameter ``name``, None when absent or
    empty."""
    raw = _query_once(request, name)
    if not raw:
        return None
    if len(raw) > MAX_FILTER_CHARS:
        raise ApiError(
            400, f"{name} must be at most {MAX_FILTER_CHARS} characters"
        )
    return _text(raw, name)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class LongNumber:
    """A JSON integer with more digits than any field takes, kept only by
    its length (Python refuses to read one of over 4300 digits)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | LongNumber:
    digits = len(text.lstrip("-"))
    return LongNumber(digits) if digits > 20 else int(text)


def _kind(value: object) -> str:
    """Name a JSON value's kind, for a message that says what came."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, LongNumber):
        return f"a number of {value.digits} digits"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40], ensure_ascii=False)}"
    return "an array" if isinstance(value, list) else "an object"


async def read_body(request: web.Request, fields: Mapping[str, bool],
                    example: str) -> dict[str, Any]:
    """Return the JSON object in the body, with only ``fields`` (name ->
    required) in it."""
    limit = request.app[CONFIG].http.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    if len(raw) > limit:
        raise _too_large(limit)
    needed = [name for name, required in fields.items() if required]
    if not raw.strip() and not needed:
        return {}
    try:
        body = json.loads(raw.decode("utf-8"), parse_int=_parse_int,
                          parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise ApiError(
            400, f"the body must be a JSON object, such as {example}"
        )
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ApiError(
            400, f"unknown field {unknown[0][:40]!r}; this call takes "
            f"{', '.join(fields) or 'no fields'}"
        )
    for name in needed:
        if name not in body:
            raise ApiError(400, f"the body needs {name}, such as {example}")
    return body


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"the body is over the {limit}-byte limit ([http] max_body_bytes)"
    )


def body_id(request: web.Request, body: Mapping[str, Any]) -> int:
    """Return the body's job id, remembered for the audit log."""
    value = body.get("id")
    if isinstance(value, LongNumber):
        raise ApiError(400, f"id must be 1 to {MAX_ID}, not {_kind(value)}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"id must be a JSON integer, not {_kind(value)}")
    if not 1 <= value <= MAX_ID:
        raise ApiError(400, f"id must be 1 to {MAX_ID}, not {value}")
    request[AUDIT_JOB] = value
    return value


# Output --------------------------------------------------------------------

def job_dict(job: Job) -> dict[str, Any]:
    """Return a job as the API shows it."""
    return {name: getattr(job, name) for name in Job.__slots__}


def _identity(request: web.Request) -> Identity:
    who = request.get(IDENTITY)
    if not isinstance(who, Identity):  # the guard always sets it
        raise ApiError(401, "this call needs an API token")
    return who


def _job_error(exc: FuwadError) -> ApiError:
    if isinstance(exc, JobNotFound):
        return ApiError(404, f"job {exc.job_id} does not exist")
    if isinstance(exc, InvalidMove):
        return ApiError(409, str(exc))
    return ApiError(400, str(exc))


# Jobs ----------------------------------------------------------------------

async def whoami(request: web.Request) -> web.Response:
    """Name the caller's token and role."""
    who = _identity(request)
    return ok({"name": who.name, "role": who.role.value}, "token is valid")


async def stats(request: web.Request) -> web.Response:
    """Count jobs by status, ready jobs, and finishes per minute."""
    manager = request.app[MANAGER]
    counts: dict[str, Any] = dict(await manager.get_stats())
    ready, oldest = await manager.ready()
    rows = await manager.pool.fetch(queries.PER_MINUTE)
    counts["ready"] = ready
    counts["oldest_ready_age_s"] = round(max(0.0, oldest), 3)
    # What a job with no max_attempts gets unless its handler sets one.
    counts["default_max_attempts"] = (
        request.app[CONFIG].queue.worker_max_attempts)
    counts["per_minute"] = [
        {"minute": row["minute"], "completed": int(row["completed"]),
         "failed": int(row["failed"])}
        for row in rows
    ]
    return ok(counts, "queue statistics")


async def list_jobs(request: web.Request) -> web.Response:
    """One page of jobs, newest first; up to ``max_id`` when given."""
    page = query_int(request, "page", 1, 1, MAX_PAGE)
    limit = min(query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_ID,
                          f"1 or more (a page holds at most {MAX_LIMIT} "
                          "jobs)"),
                MAX_LIMIT)
    max_id = None
    if _query_once(request, "max_id") is not None:
        max_id = query_int(request, "max_id", None, 1, MAX_ID)
    try:
        found, total = await request.app[MANAGER].list_jobs(
            status=query_text(request, "status"), page=page, limit=limit,
            queue=query_text(request, "queue"),
            job_class=query_text(request, "job_class"), max_id=max_id)
    except InvalidJob as exc:
        raise ApiError(400, str(exc)) from None
    jobs = [job_dict(job) for job in found]
    data = {"jobs": jobs, "total": int(total), "page": page, "limit": limit}
    return ok(data, f"{len(jobs)} of {total} jobs")


async def get_job(request: web.Request) -> web.Response:
    """One job by id."""
    job_id = query_int(request, "id", None, 1, MAX_ID)
    try:
        job = await request.app[MANAGER].get_job(job_id)
    except (InvalidJob, JobNotFound) as exc:
        raise _job_error(exc) from None
    return ok(job_dict(job), f"job {job_id}")


async def _moved(request: web.Request, job_id: int,
                 move: Awaitable[object], verb: str) -> web.Response:
    """Await one move of a job; answer with the status it has after."""
    try:
        await move
    except (InvalidJob, JobNotFound, InvalidMove) as exc:
        raise _job_error(exc) from None
    try:
        status = (await request.app[MANAGER].get_job(job_id)).status
    except JobNotFound:
        status = "deleted"  # by this move, or by someone else since
    return ok({"id": job_id, "status": status}, f"job {job_id} {verb}")


async def retry(request: web.Request) -> web.Response:
    """failed | completed -> pending, after an optional delay."""
    body = await read_body(request, {"id": True, "delay": False},
                           '{"id": 12, "delay": 60}')
    job_id = body_id(request, body)
    delay = body.get("delay", 0)
    if delay is None:
        delay = 0
    if isinstance(delay, bool) or not isinstance(delay, int | float | str):
        raise ApiError(
            400, "delay must be seconds, or text such as '+10 minutes'"
        )
    return await _moved(request, job_id,
                        request.app[MANAGER].retry(job_id, delay), "retried")


async def cancel(request: web.Request) -> web.Response:
    """pending | processing -> cancelled."""
    body = await read_body(request, {"id": True}, '{"id": 12}')
    job_id = body_id(request, body)
    return await _moved(request, job_id, request.app[MANAGER].cancel(job_id),
                        "cancelled")


async def delete(request: web.Request) -> web.Response:
    """Delete one job, whatever its status."""
    body = await read_body(request, {"id": True}, '{"id": 12}')
    job_id = body_id(request, body)
    return await _moved(request, job_id, request.app[MANAGER].delete(job_id),
                        "deleted")


async def cleanup(request: web.Request) -> web.Response:
    """Delete finished jobs past their time to live."""
    await read_body(request, {}, "{}")
    count = await request.app[MANAGER].cleanup()
    return ok({"cleaned_count": count}, f"{count} finished jobs removed")


# Workers and the monitor, over the control socket ---------------------------

NOT_RUNNING = "the fuwad daemon is not running; start it with 'fuwad run'"


def _control_refusal(exc: FuwadError, request_id: str) -> str:
    """Say what went wrong with the daemon without the server's details.

    The client's messages name the control socket's path, the user and
    the group; those belong to the server's log, not to API callers.
    """
    if isinstance(exc, DaemonNotRunning):
        return NOT_RUNNING
    where = f"the server log has the details under request id {request_id}"
    if isinstance(exc, ControlTimeout):
        return f"the fuwad daemon did not answer in time; {where}"
    if isinstance(exc, ControlError):
        return f"the fuwad daemon refused this server's request; {where}"
    return f"the fuwad daemon gave no usable answer; {where}"


async def control(request: web.Request, command: str) -> Any:
    """Send ``command`` to the daemon; return its answer's data."""
    client = AsyncControlClient.from_config(request.app[CONFIG])
    try:
        return await client.request(command)
    except FuwadError as exc:
        # Not running, timed out, refused this user or answered garbage.
        request_id = request.get(REQUEST_ID, "-")
        log.warning("control failed cmd=%s request_id=%s error=%s: %s",
                    command, request_id, type(exc).__name__, exc)
        raise ApiError(503, _control_refusal(exc, request_id)) from None


WORKER_FIELDS = ("id", "host", "pid", "role", "state", "current_job",
                 "heartbeat_age", "jobs_done")


def merge_workers(live: Any, rows: list[dict[str, Any]],
                  host: str) -> list[dict[str, Any]]:
    """Join the daemon's view of its workers with the database's rows.

    A daemon entry meets its row by worker id (else by pid on ``host``);
    the daemon's fields win, being fresher, and its ``job_id`` is the
    current job.  Rows no entry met (other hosts, the supervisors, stopped
    daemons) follow with ``source`` "database".
    """
    entries = live if isinstance(live, list) else []
    if isinstance(live, dict) and isinstance(live.get("workers"), list):
        entries = live["workers"]
    merged: list[dict[str, Any]] = []
    used: set[int] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        match = _matching_row(entry, rows, used, host)
        base: dict[str, Any] = {"host": host}
        if match is not None:
            used.add(match)
            base = dict(rows[match])
        worker = {**base, **entry, "source": "supervisor"}
        if "job_id" in entry:
            worker["current_job"] = entry["job_id"]
        if worker.get("id") is None:
            worker["id"] = entry.get("worker_id")
        merged.append(worker)
    for i, row in enumerate(rows):
        if i not in used:
            merged.append({**row, "source": "database"})
    for worker in merged:
        for name in WORKER_FIELDS:
            worker.setdefault(name, None)
    return merged


def _matching_row(entry: dict[str, Any], rows: list[dict[str, Any]],
                  used: set[int], host: str) -> int | None:
    free = [i for i in range(len(rows)) if i not in used]
    wanted = entry.get("worker_id")
    for i in free:
        if wanted is not None and rows[i]["id"] == wanted:
            return i
    for i in free:
        if (rows[i]["pid"] == entry.get("pid")
                and rows[i]["host"] == entry.get("host", host)):
            return i
    return None


async def workers(request: web.Request) -> web.Response:
    """The daemon's workers with their database rows."""
    live = await control(request, "workers")
    rows = await request.app[MANAGER].pool.fetch(queries.LIST_WORKERS)
    merged = merge_workers(live, [dict(r) for r in rows], host_name())
    return ok({"workers": merged}, f"{len(merged)} workers")


def _running(answer: Any) -> bool:
    if isinstance(answer, dict):
        return bool(answer.get("running"))
    return bool(answer)


async def monitor_start(request: web.Request) -> web.Response:
    """Bring the worker pool back."""
    await read_body(request, {}, "{}")
    running = _running(await control(request, "monitor.start"))
    return ok({"running": running}, "monitor started")


async def monitor_stop(request: web.Request) -> web.Response:
    """Drain every worker; the daemon stays up."""
    await read_body(request, {}, "{}")
    running = _running(await control(request, "monitor.stop"))
    return ok({"running": running}, "monitor stopped")


async def monitor_running(request: web.Request) -> web.Response:
    """Tell whether the worker pool runs."""
    running = _running(await control(request, "monitor.running"))
    return ok({"running": running},
              "monitor is running" if running else "monitor is stopped")


# Operations ----------------------------------------------------------------

async def healthz(request: web.Request) -> web.Response:
    """200 when the database and the daemon answer, else 503."""
    problems = []
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await request.app[MANAGER].pool.fetchval("SELECT 1")
    except (OSError, TimeoutError, DatabaseError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as exc:
        log.warning("health database failed error=%s", type(exc).__name__)
        problems.append("database unreachable")
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await AsyncControlClient.from_config(
                request.app[CONFIG]).request("ping")
    except (TimeoutError, FuwadError) as exc:
        log.debug("health daemon failed error=%s", type(exc).__name__)
        problems.append("supervisor not reachable")
    if problems:
        raise ApiError(503, "unhealthy: " + ", ".join(problems))
    return ok({"database": "ok", "supervisor": "ok"}, "healthy")


# The route table -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route: who may call it and, for a change, its audit name."""

    method: str
    path: str
    handler: Handler
    role: Role | None  # None: no token needed
    action: str | None = None  # names a change in the audit log


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", f"{PREFIX}/whoami", whoami, Role.VIEWER),
    Endpoint("GET", f"{PREFIX}/stats", stats, Role.VIEWER),
    Endpoint("GET", f"{PREFIX}/jobs", list_jobs, Role.VIEWER),
    Endpoint("GET", f"{PREFIX}/job", get_job, Role.VIEWER),
    Endpoint("POST", f"{PREFIX}/retry", retry, Role.OPERATOR, "retry"),
    Endpoint("POST", f"{PREFIX}/cancel", cancel, Role.OPERATOR, "cancel"),
    Endpoint("DELETE", f"{PREFIX}/delete", delete, Role.ADMIN, "delete"),
    Endpoint("POST", f"{PREFIX}/cleanup", cleanup, Role.ADMIN, "cleanup"),
    Endpoint("GET", f"{PREFIX}/workers", workers, Role.VIEWER),
    Endpoint("POST", f"{PREFIX}/monitor/start", monitor_start, Role.ADMIN,
             "monitor.start"),
    Endpoint("POST", f"{PREFIX}/monitor/stop", monitor_stop, Role.ADMIN,
             "monitor.stop"),
    Endpoint("GET", f"{PREFIX}/monitor/running", monitor_running,
             Role.VIEWER),
    Endpoint("GET", "/healthz", healthz, None),
)
