"""What every part of the HTTP side shares: the envelope and the app's keys.

Every JSON answer is ``{"success": true, "message": ..., "data": ...}`` or
``{"success": false, "error": ...}``.  Handlers raise :class:`ApiError` for
a refusal a person can act on; :mod:`fuwad.http.app` turns it, and any
other failure, into the envelope.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from fuwad.config import Config
from fuwad.db import jsonable
from fuwad.errors import FuwadError
from fuwad.manager import QueueManager
from fuwad.tokens import Identity

JSON_TYPE = "application/json"

CONFIG = web.AppKey("fuwad_config", Config)
MANAGER = web.AppKey("fuwad_manager", QueueManager)

# Set by the middleware in fuwad.http.app, the guard in fuwad.http.auth and
# the handlers that act on a job (for the audit line).
REQUEST_ID = web.RequestKey("fuwad_request_id", str)
IDENTITY = web.RequestKey("fuwad_identity", Identity)
AUDIT_JOB = web.RequestKey("fuwad_audit_job", int)


class ApiError(FuwadError):
    """Refuse a request with ``status`` and a message for its sender."""

    def __init__(self, status: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def ok(data: Any, message: str = "ok", status: int = 200) -> web.Response:
    """Answer success with ``data``."""
    body = {"success": True, "message": message, "data": jsonable(data)}
    return web.json_response(body, status=status, dumps=_dumps)


def refuse(status: int, message: str,
           headers: Mapping[str, str] | None = None) -> web.Response:
    """Answer failure with ``message``."""
    return web.json_response(
        {"success": False, "error": message}, status=status,
        headers=headers, dumps=_dumps,
    )


def finite(value: float) -> float | None:
    """Return ``value``, or None where JSON has no number for it."""
    return value if math.isfinite(value) else None
