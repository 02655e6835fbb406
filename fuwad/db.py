"""Reaching PostgreSQL: which server, and connections set up for fuwad.

With ``[database] dsn`` (or ``FUWAD_DSN``) fuwad uses that server; with none
it starts or joins the embedded one in the data directory.  Connections
decode ``jsonb`` to Python values, so callers never see JSON text.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import asyncpg

from fuwad import embedded
from fuwad.config import Config
from fuwad.errors import DatabaseError

log = logging.getLogger("fuwad.db")

CONNECT_TIMEOUT_S = 10.0


def resolve_dsn(config: Config) -> str:
    """Return the DSN to use, starting the embedded server when needed."""
    if config.database.dsn:
        return config.database.dsn
    return embedded.ensure_running(config.data_dir())


def redact(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***``."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password=)[^&\s]*", r"\1***", dsn)


class UndecodableData(str):
    """Job data PostgreSQL holds but Python cannot decode.

    jsonb accepts nesting far deeper than Python's recursion limit allows
    ``json.loads`` to follow; a row inserted by plain SQL may hold such
    data.  It comes back as this string, which says what is wrong, so that
    listing jobs, the API and the admin page keep working, and a worker
    fails the job instead of crashing on it.
    """


def decode_json(text: str) -> Any:
    """Decode a jsonb value, or return UndecodableData saying why not."""
    try:
        return json.loads(text)
    except RecursionError:
        return UndecodableData(
            f"[fuwad: this job's data ({len(text)} bytes of JSON) is nested "
            "too deeply to decode; push flatter data]"
        )


async def _setup(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=decode_json,
        schema="pg_catalog", format="text",
    )


async def connect(dsn: str) -> asyncpg.Connection:
    """Open one connection, with a clear error when the server is away."""
    try:
        connection = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except (ValueError, OverflowError) as exc:
        raise DatabaseError(_unusable(dsn, exc)) from None
    except (OSError, TimeoutError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as exc:
        raise DatabaseError(_unreachable(dsn, exc)) from None
    await _setup(connection)
    return connection


async def create_pool(dsn: str, size: int = 4) -> asyncpg.Pool:
    """Open a pool of ``size`` connections."""
    try:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=max(1, size), init=_setup,
            timeout=CONNECT_TIMEOUT_S,
        )
    except (ValueError, OverflowError) as exc:
        raise DatabaseError(_unusable(dsn, exc)) from None
    except (OSError, TimeoutError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as exc:
        raise DatabaseError(_unreachable(dsn, exc)) from None
    if pool is None:  # only with a lazy pool, which we never ask for
        raise DatabaseError("the connection pool did not open")
    return pool


def _unusable(dsn: str, exc: BaseException) -> str:
    # asyncpg raises these, not its own errors, for a DSN it cannot use,
    # such as one with port 99999.
    return (f"cannot use the DSN {redact(dsn)}: {exc}; fix [database] dsn "
            "or FUWAD_DSN")


def _unreachable(dsn: str, exc: BaseException) -> str:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return (f"cannot reach PostgreSQL at {redact(dsn)}: {reason}; check that "
            "the server runs and [database] dsn or FUWAD_DSN is right")


def jsonable(value: Any) -> Any:
    """Return ``value`` with datetimes as ISO strings, for JSON output."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
