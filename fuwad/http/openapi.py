"""The OpenAPI 3.1 document of the REST API, served at
/api/queue/openapi.json.

It is built from :data:`fuwad.http.api.ENDPOINTS` (paths, methods and
roles) and the schemas below (inputs and answers), so the roles it states
are the ones the guard enforces.  The tests check that every route is
described and run schemathesis against the live API with it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fuwad import __version__
from fuwad.http.api import (
    ENDPOINTS,
    MAX_FILTER_CHARS,
    MAX_ID,
    MAX_PAGE,
    PREFIX,
    WORKER_FIELDS,
)
from fuwad.http.common import JSON_TYPE
from fuwad.policy import MAX_DELAY_S
from fuwad.states import JobStatus

Schema = dict[str, Any]

STATUSES = [s.value for s in JobStatus]
ROLES = ["viewer", "operator", "admin"]
NO_NUL = "^[^\\u0000]*$"
# What fuwad.when.parse_relative reads: '+90 minutes', '2h', '30'.
DELAY_TEXT = ("^\\+?\\s*[0-9]{1,9}(\\.[0-9]{1,6})?\\s*"
              "(s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?|w|weeks?)?$")


def nullable(schema: Schema) -> Schema:
    kind = schema["type"]
    return {**schema, "type": [kind, "null"]}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def envelope(data: Schema) -> Schema:
    """The success envelope around ``data``."""
    return {
        "type": "object",
        "required": ["success", "message", "data"],
        "additionalProperties": False,
        "properties": {
            "success": {"const": True},
            "message": {"type": "string"},
            "data": data,
        },
    }


TIME = {"type": "string", "format": "date-time"}
COUNT = {"type": "integer", "minimum": 0}

JOB: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "id", "job_name", "job_class", "job_data", "queue", "priority",
        "status", "attempts", "max_attempts", "delay", "available_at",
        "created_at", "started_at", "completed_at", "failed_at",
        "last_error", "worker_id", "leased_at",
    ],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "job_name": {"type": "string"},
        "job_class": {"type": "string"},
        "job_data": {"description": "The job's data, any JSON value."},
        "queue": {"type": "string"},
        "priority": {"type": "integer", "minimum": 1, "maximum": 10},
        "status": {"enum": STATUSES},
        "attempts": COUNT,
        "max_attempts": nullable({"type": "integer", "minimum": 1}),
        "delay": COUNT,
        "available_at": TIME,
        "created_at": TIME,
        "started_at": nullable(TIME),
        "completed_at": nullable(TIME),
        "failed_at": nullable(TIME),
        "last_error": nullable({"type": "string"}),
        "worker_id": nullable({"type": "string"}),
        "leased_at": nullable(TIME),
    },
}

STATS: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": [*STATUSES, "total", "ready", "oldest_ready_age_s",
                 "default_max_attempts", "per_minute"],
    "properties": {
        **{status: COUNT for status in STATUSES},
        "total": COUNT,
        "ready": COUNT,
        "oldest_ready_age_s": {"type": "number", "minimum": 0},
        "default_max_attempts": {
            "type": "integer", "minimum": 1,
            "description": "The attempts a job whose max_attempts is null "
                           "gets, unless its handler sets max_attempts: "
                           "[queue] worker_max_attempts of this server's "
                           "configuration (the workers read theirs from "
                           "the same file when they share it).",
        },
        "per_minute": {
            "type": "array",
            "minItems": 60,
            "maxItems": 60,
            "description": "The last 60 minutes, oldest first.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["minute", "completed", "failed"],
                "properties": {"minute": TIME, "completed": COUNT,
                               "failed": COUNT},
            },
        },
    },
}

WORKER: Schema = {
    "type": "object",
    "description": "A worker as the daemon and the database know it; "
                   "source says which (supervisor or database).",
    "required": [*WORKER_FIELDS, "source"],
    "properties": {
        "id": nullable({"type": "string"}),
        "host": nullable({"type": "string"}),
        "pid": nullable({"type": "integer"}),
        "role": nullable({"type": "string"}),
        "state": nullable({"type": "string"}),
        "current_job": nullable({"type": "integer"}),
        "heartbeat_age": nullable({"type": "number"}),
        "jobs_done": nullable({"type": "integer"}),
        "source": {"enum": ["supervisor", "database"]},
    },
}

MOVED: Schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "status": {"enum": [*STATUSES, "deleted"]},
    },
}


def _obj(**properties: Schema) -> Schema:
    return {"type": "object", "additionalProperties": False,
            "required": list(properties), "properties": properties}


def _obj_opt(properties: Schema, required: list[str]) -> Schema:
    return {"type": "object", "additionalProperties": False,
            "required": required, "properties": properties}


SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "additionalProperties": False,
        "required": ["success", "error"],
        "properties": {"success": {"const": False},
                       "error": {"type": "string"}},
    },
    "Job": JOB,
    "Stats": STATS,
    "Worker": WORKER,
    "Moved": MOVED,
}

JOB_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
FILTER = {"type": "string", "maxLength": MAX_FILTER_CHARS,
          "pattern": NO_NUL}


def _query(name: str, schema: Schema, about: str,
           required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required,
            "schema": schema, "description": about}


def _body(schema: Schema, example: Any) -> Schema:
    return {"required": True, "content": {
        JSON_TYPE: {"schema": schema, "example": example}}}


ERRORS = {
    400: "The input is wrong; the error says which field and why.",
    401: "The token is missing, unknown, expired or revoked.",
    403: "The token's role may not make this call; the error names the "
         "role it needs.",
    404: "No job has this id.",
    409: "The job's status does not allow this move.",
    413: "The body is larger than [http] max_body_bytes.",
    429: "Too many requests for this token, or too many failed "
         "authentications from this address; wait Retry-After seconds.",
    500: "An unexpected failure; the error holds a request id that finds "
         "the details in the server log.",
    503: "The database or the daemon does not answer.",
}


def _error(status: int) -> Schema:
    answer: Schema = {
        "description": ERRORS[status],
        "content": {JSON_TYPE: {"schema": ref("Error")}},
    }
    if status == 429:
        answer["headers"] = {"Retry-After": {
            "description": "Seconds to wait.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    if status == 401:
        answer["headers"] = {"WWW-Authenticate": {
            "schema": {"type": "string"}}}
    return answer


# What each operation takes and answers, beyond its method and role.
OPERATIONS: dict[tuple[str, str], Schema] = {
    ("GET", f"{PREFIX}/whoami"): {
        "summary": "Name the token's holder and role",
        "data": _obj(name={"type": "string"}, role={"enum": ROLES}),
    },
    ("GET", f"{PREFIX}/stats"): {
        "summary": "Count jobs by status, ready jobs, and finishes per "
                   "minute over the last hour",
        "data": ref("Stats"),
    },
    ("GET", f"{PREFIX}/jobs"): {
        "summary": "One page of jobs, newest first",
        "parameters": [
            _query("page", {"type": "integer", "minimum": 1,
                            "maximum": MAX_PAGE}, "Page number, from 1."),
            _query("limit", {"type": "integer", "minimum": 1,
                             "maximum": MAX_ID},
                   "Jobs per page, 50 by default; more than 200 is cut "
                   "to 200 (the answer's limit says what was used)."),
            _query("max_id", JOB_ID,
                   "Only jobs with this id or lower, so that later pages "
                   "hold still while new jobs arrive."),
            _query("status", {"enum": [*STATUSES, ""]},
                   "Only jobs in this status; empty means every status."),
            _query("queue", FILTER, "Only jobs of this queue."),
            _query("job_class", FILTER, "Only jobs of this class."),
        ],
        "errors": [400],
        "data": _obj(jobs={"type": "array", "items": ref("Job")},
                     total=COUNT, page={"type": "integer", "minimum": 1},
                     limit={"type": "integer", "minimum": 1,
                            "maximum": 200}),
    },
    ("GET", f"{PREFIX}/job"): {
        "summary": "One job by id",
        "parameters": [_query("id", JOB_ID, "The job's id.", True)],
        "errors": [400, 404],
        "data": ref("Job"),
    },
    ("POST", f"{PREFIX}/retry"): {
        "summary": "Retry a failed or completed job (back to pending, "
                   "attempts reset)",
        "body": _body(_obj_opt(
            {"id": JOB_ID,
             "delay": {"type": ["number", "string", "null"],
                       "minimum": 0, "maximum": MAX_DELAY_S,
                       "pattern": DELAY_TEXT,
                       "description": "Seconds, or text such as "
                                      "'+10 minutes'; none by default."}},
            ["id"]), {"id": 12, "delay": 60}),
        "errors": [400, 404, 409, 413],
        "data": ref("Moved"),
    },
    ("POST", f"{PREFIX}/cancel"): {
        "summary": "Cancel a pending or processing job",
        "body": _body(_obj_opt({"id": JOB_ID}, ["id"]), {"id": 12}),
        "errors": [400, 404, 409, 413],
        "data": ref("Moved"),
    },
    ("DELETE", f"{PREFIX}/delete"): {
        "summary": "Delete a job, whatever its status",
        "body": _body(_obj_opt({"id": JOB_ID}, ["id"]), {"id": 12}),
        "errors": [400, 404, 413],
        "data": ref("Moved"),
    },
    ("POST", f"{PREFIX}/cleanup"): {
        "summary": "Delete finished jobs older than their time to live",
        "errors": [400, 413],
        "data": _obj(cleaned_count=COUNT),
    },
    ("GET", f"{PREFIX}/workers"): {
        "summary": "The daemon's workers, with their database rows",
        "data": _obj(workers={"type": "array", "items": ref("Worker")}),
    },
    ("POST", f"{PREFIX}/monitor/start"): {
        "summary": "Bring the worker pool back",
        "errors": [400, 413],
        "data": _obj(running={"type": "boolean"}),
    },
    ("POST", f"{PREFIX}/monitor/stop"): {
        "summary": "Drain every worker; the daemon stays up",
        "errors": [400, 413],
        "data": _obj(running={"type": "boolean"}),
    },
    ("GET", f"{PREFIX}/monitor/running"): {
        "summary": "Tell whether the worker pool runs",
        "data": _obj(running={"type": "boolean"}),
    },
    ("GET", "/healthz"): {
        "summary": "200 when the database and the daemon answer, else 503",
        "data": _obj(database={"const": "ok"}, supervisor={"const": "ok"}),
    },
}


def _operation(method: str, path: str, role: str | None) -> Schema:
    spec = OPERATIONS[(method, path)]
    codes = set(spec.get("errors", [])) | {500, 503}
    if role is not None:
        codes |= {401, 403, 429}
    operation: Schema = {
        "summary": spec["summary"],
        "operationId": (method.lower() + path.replace(PREFIX, "")
                        .replace("/", "_")),
        "responses": {
            "200": {"description": "Done.", "content": {
                JSON_TYPE: {"schema": envelope(spec["data"])}}},
            **{str(code): _error(code) for code in sorted(codes)},
        },
    }
    if role is None:
        operation["security"] = []
    else:
        operation["description"] = f"Needs the {role} role or higher."
        operation["x-fuwad-role"] = role
    if "parameters" in spec:
        operation["parameters"] = spec["parameters"]
    if "body" in spec:
        operation["requestBody"] = spec["body"]
    return operation


def _extra_paths() -> dict[str, Schema]:
    return {
        f"{PREFIX}/openapi.json": {"get": {
            "summary": "This document",
            "operationId": "get_openapi",
            "security": [],
            "responses": {"200": {"description": "The OpenAPI document.",
                                  "content": {JSON_TYPE: {
                                      "schema": {"type": "object"}}}}},
        }},
        "/metrics": {"get": {
            "summary": "The queue in Prometheus' text format",
            "description": "Open to [http] metrics_allow; others need a "
                           "token of any role.",
            "operationId": "get_metrics",
            "security": [{}, {"bearer": []}],
            "responses": {
                "200": {"description": "Prometheus text.", "content": {
                    "text/plain": {"schema": {"type": "string"}}}},
                **{str(c): _error(c) for c in (401, 429, 500, 503)},
            },
        }},
    }


def _head(get: Schema) -> Schema:
    """The HEAD twin of a GET operation: its answers without bodies."""
    head = {**get, "operationId": "head" + get["operationId"][3:],
            "summary": f"{get['summary']} (headers only)"}
    head["responses"] = {
        code: {k: v for k, v in answer.items() if k != "content"}
        for code, answer in get["responses"].items()
    }
    return head


def build() -> Schema:
    """Return the OpenAPI document."""
    paths: dict[str, Schema] = {}
    for endpoint in ENDPOINTS:
        role = endpoint.role.value if endpoint.role else None
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = (
            _operation(endpoint.method, endpoint.path, role)
        )
    paths.update(_extra_paths())
    for item in paths.values():
        if "get" in item:
            item["head"] = _head(item["get"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fuwad queue API",
            "version": __version__,
            "description": (
                "Inspect and steer fuwad's job queue. Every answer is "
                "{success, message, data} or {success: false, error}. "
                "Send a token made with 'fuwactl token create' as "
                "'Authorization: Bearer <token>'. Roles: viewer reads; "
                "operator also retries and cancels; admin also deletes, "
                "cleans up and starts or stops the monitor."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http",
                                           "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "paths": paths,
    }


DOCUMENT = web.AppKey("fuwad_openapi", dict[str, Any])


async def document(request: web.Request) -> web.Response:
    """Serve the OpenAPI document."""
    return web.json_response(request.app[DOCUMENT])
