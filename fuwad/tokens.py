"""API bearer tokens: make, store as hashes, look up, list and revoke.

A token is shown once, when it is made; the table ``queue_api_tokens``
keeps only its SHA-256.  Each token has a name (for logs and revocation),
a role, an optional expiry and, once revoked, the time it was revoked.
Expiry is judged by the database clock, like every time compared across
hosts.  Optionally an application's own users table vouches for tokens the
table does not know: see :func:`lookup_user`.  The HTTP side
(:mod:`fuwad.http.auth`) decides what a role may do; this module only says
who holds a token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from fuwad import queries
from fuwad.errors import FuwadError

log = logging.getLogger("fuwad.tokens")

# Every token starts with this, so that secret scanners and people can
# tell one at a glance.
TOKEN_PREFIX = "fwd_"
TOKEN_BYTES = 32  # 256 bits from the system's CSPRNG
MAX_TOKEN_CHARS = 512  # longer Authorization values are refused unread
MAX_EXPIRY_S = 10 * 365 * 86400

_NAME = re.compile(r"^[A-Za-z0-9][\w.@:-]{0,63}$")
_DURATION = re.compile(r"^(\d{1,9})\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Return 0, 1 or 2: each role may do all that lower ones may."""
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Tell whether this role may make a call that needs ``needed``."""
        return self.rank >= needed.rank


class TokenError(FuwadError):
    """A token cannot be made, found or revoked as asked."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request: a token's name and its role."""

    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """One row of ``queue_api_tokens``, without its hash."""

    name: str
    role: Role
    state: str  # active, expired or revoked
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def parse_role(value: str) -> Role:
    """Return the role named ``value``, or raise TokenError."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise TokenError(
            f"unknown role {value!r}; use one of {valid}"
        ) from None


def check_name(name: str) -> str:
    """Return ``name`` if it can name a token, or raise TokenError."""
    if not _NAME.match(name):
        raise TokenError(
            f"token name {name[:70]!r} must be 1 to 64 letters, digits or "
            ". _ @ : -, starting with a letter or digit"
        )
    return name


def parse_expiry(text: str) -> int:
    """Return seconds from a duration such as ``30d``, ``12h`` or ``90m``."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise TokenError(
            f"cannot read expiry {text!r}; write a number and a unit "
            "(s, m, h, d or w), such as 30d or 12h"
        )
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= MAX_EXPIRY_S:
        raise TokenError(
            f"expiry {text!r} must be above 0 and at most 10 years"
        )
    return seconds


def generate() -> str:
    """Return a new random token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Return the hex SHA-256 under which ``token`` is stored.

    A plain fast hash is enough here, unlike for passwords: our tokens hold
    256 random bits, so nobody can guess one from its hash however fast
    the guessing goes, and a salt-free hash lets us find the row by an
    index instead of trying every row's slow hash in turn.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _info(row: asyncpg.Record) -> TokenInfo:
    return TokenInfo(
        name=row["name"], role=Role(row["role"]), state=row["state"],
        created_at=row["created_at"], expires_at=row["expires_at"],
        revoked_at=row["revoked_at"], last_used_at=row["last_used_at"],
    )


async def create(
    executor: asyncpg.Connection | asyncpg.Pool,
    name: str,
    role: Role,
    expires_in_s: int | None = None,
) -> tuple[str, TokenInfo]:
    """Make a token; return it (the only time it is seen) and its row.

    A revoked or expired token's name may be reused: its row is replaced.
    """
    token = generate()
    row = await executor.fetchrow(
        queries.CREATE_TOKEN, check_name(name), hash_token(token),
        role.value, expires_in_s,
    )
    if row is None:
        raise TokenError(
            f"a token named {name!r} already exists and is active; revoke "
            "it first with 'fuwactl token revoke' or choose another name"
        )
    log.info("token created name=%s role=%s", name, role.value)
    return token, _info(row)


async def list_tokens(
    executor: asyncpg.Connection | asyncpg.Pool,
) -> list[TokenInfo]:
    """Return every token's row, by name."""
    return [_info(row) for row in await executor.fetch(queries.LIST_TOKENS)]


async def revoke(
    executor: asyncpg.Connection | asyncpg.Pool, name: str,
) -> TokenInfo:
    """Revoke the token ``name`` at once; return its row."""
    row = await executor.fetchrow(queries.REVOKE_TOKEN, name)
    if row is None:
        raise TokenError(
            f"no token is named {name[:70]!r}; list them with "
            "'fuwactl token list'"
        )
    log.info("token revoked name=%s", name)
    return _info(row)


async def count_active(executor: asyncpg.Connection | asyncpg.Pool) -> int:
    """Return how many tokens are neither revoked nor expired."""
    return int(await executor.fetchval(queries.COUNT_ACTIVE_TOKENS))


async def lookup(
    executor: asyncpg.Connection | asyncpg.Pool, token: str,
) -> Identity | None:
    """Return who holds ``token``, or None if it is unknown, expired or
    revoked."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    digest = hash_token(token)
    row = await executor.fetchrow(queries.FIND_TOKEN, digest)
    # The row was found by its hash, and the hash of a random secret
    # tells a timing observer nothing; comparing again in constant time
    # keeps the check independent of how the index compared.
    if row is None or not hmac.compare_digest(row["token_hash"], digest):
        return None
    if row["revoked"] or row["expired"]:
        log.debug("token refused name=%s revoked=%s expired=%s",
                  row["name"], row["revoked"], row["expired"])
        return None
    await executor.execute(queries.TOUCH_TOKEN, row["id"])
    return Identity(name=row["name"], role=Role(row["role"]))


def _wrapped(sql: str) -> str:
    # The application's query runs as a subquery, so that it can only
    # read, and so that both parameters have a type even when it uses one.
    body = sql.strip().rstrip(";")
    return (f"SELECT q.* FROM ({body}) AS q "
            "WHERE $1::text IS NOT NULL AND $2::text IS NOT NULL LIMIT 1")


async def check_users_query(connection: asyncpg.Connection, sql: str) -> None:
    """Prepare ``[auth] users_query``, or raise TokenError saying why it
    cannot work."""
    try:
        statement = await connection.prepare(_wrapped(sql))
    except asyncpg.PostgresError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TokenError(
            f"[auth] users_query does not prepare: {first}; it must be one "
            "SELECT using $1 (the token) or $2 (its SHA-256 in hex)"
        ) from None
    columns = {a.name for a in statement.get_attributes()}
    if "role" not in columns:
        raise TokenError(
            "[auth] users_query must return a role column (viewer, operator "
            "or admin), and may return a name column"
        )


async def lookup_user(
    connection: asyncpg.Connection, sql: str, token: str,
) -> Identity | None:
    """Ask the application's users table about ``token``.

    ``sql`` comes from ``[auth] users_query``: one SELECT that receives the
    token as ``$1`` and its SHA-256 in hex as ``$2`` (both text; use
    either), and returns a ``role`` column holding viewer, operator or
    admin, and optionally a ``name`` for the logs.  The first row counts.
    It runs in a read-only transaction.
    """
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return None  # PostgreSQL text cannot hold it, so no user has it
    async with connection.transaction(readonly=True):
        row = await connection.fetchrow(_wrapped(sql), token,
                                        hash_token(token))
    if row is None or row["role"] is None:
        return None
    try:
        role = Role(str(row["role"]).strip().lower())
    except ValueError:
        log.warning("users_query gave an unknown role=%.32r; refused",
                    row["role"])
        return None
    keys = row.keys()
    name = str(row["name"]) if "name" in keys and row["name"] else "user"
    return Identity(name=f"user:{name[:64]}", role=role)
