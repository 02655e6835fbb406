"""Who may call the API: bearer tokens, roles and rate limits.

Each call's guard runs, in order, before the handler does any work:
refuse an address that failed to authenticate too often (429), find the
token (401), count the call against the token's rate (429), check the role
(403).  An address may have only as many token lookups in flight as it has
failures left to spend, so that guesses sent all at once, before any is
answered, get no more tries than guesses sent one by one; its other calls
wait for those lookups to end.  Calls that change something are written to the audit log
(``fuwad.audit``) with the token's name, role, action, job id and outcome.

Rate limits are token buckets kept in this process's memory: several
``fuwad http`` processes each allow the full rate, and a restart forgets
them.  The client address is the TCP peer's; behind a reverse proxy every
caller shares the proxy's address, so set ``[auth] failed_burst`` with that
in mind.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from fuwad import tokens
from fuwad.config import AuthConfig
from fuwad.http.common import AUDIT_JOB, IDENTITY, ApiError
from fuwad.tokens import Identity, Role

log = logging.getLogger("fuwad.http.auth")
audit_log = logging.getLogger("fuwad.audit")

MAX_BUCKETS = 10000  # callers remembered at once; the oldest go first

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Bucket:
    """A token bucket: ``level`` calls may be made now."""

    level: float
    updated: float  # time.monotonic() of the last refill


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` calls per second on average, ``burst`` at once."""

    rate: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0


def role_limit(config: AuthConfig, role: Role) -> Limit:
    """Return the configured limit for tokens of ``role``."""
    rate = {Role.VIEWER: config.rate_viewer,
            Role.OPERATOR: config.rate_operator,
            Role.ADMIN: config.rate_admin}[role]
    burst = {Role.VIEWER: config.burst_viewer,
             Role.OPERATOR: config.burst_operator,
             Role.ADMIN: config.burst_admin}[role]
    return Limit(rate, max(1, burst))


def refill(bucket: Bucket, limit: Limit, now: float) -> None:
    """Add what ``limit`` grants for the time since the last refill."""
    elapsed = max(0.0, now - bucket.updated)
    bucket.level = min(float(limit.burst), bucket.level + elapsed * limit.rate)
    bucket.updated = now


def wait_needed(bucket: Bucket, limit: Limit) -> float:
    """Return seconds until one call is allowed; 0 if one is now."""
    if bucket.level >= 1.0:
        return 0.0
    return (1.0 - bucket.level) / limit.rate


class RateLimiter:
    """Token buckets by key, at most :data:`MAX_BUCKETS` of them."""

    def __init__(self) -> None:
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def _bucket(self, key: str, limit: Limit, now: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = Bucket(float(limit.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            refill(bucket, limit, now)
        return bucket

    def blocked_for(self, key: str, limit: Limit, now: float,
                    held: int = 0) -> float:
        """Return seconds until ``key`` may act again, taking nothing,
        with ``held`` calls already promised to others."""
        if limit.unlimited:
            return 0.0
        if key not in self._buckets:
            level = float(limit.burst)
        else:
            level = self._bucket(key, limit, now).level
        missing = held + 1.0 - level
        return 0.0 if missing <= 0 else missing / limit.rate

    def take(self, key: str, limit: Limit, now: float) -> float:
        """Take one call for ``key``; return 0, or seconds to wait."""
        if limit.unlimited:
            return 0.0
        bucket = self._bucket(key, limit, now)
        wait = wait_needed(bucket, limit)
        if wait == 0.0:
            bucket.level -= 1.0
        return wait


def too_many(wait_s: float, what: str) -> ApiError:
    seconds = max(1, math.ceil(wait_s))
    return ApiError(
        429, f"too many {what}; try again in {seconds}s",
        {"Retry-After": str(seconds)},
    )


def bearer(request: web.Request) -> str | None:
    """Return the token of an ``Authorization: Bearer`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class FailureBudget:
    """Lets an address look tokens up only while its failed-authentication
    bucket could pay for every lookup in flight failing.

    A lookup that would overdraw the bucket waits for one in flight to end
    (a good token gives its place back, a bad one spends it); once nothing
    is in flight and the bucket is still short, the call is refused.
    """

    def __init__(self, limiter: RateLimiter, limit: Limit) -> None:
        self.limiter = limiter
        self.limit = limit
        self._held: dict[str, int] = {}
        self._ended: dict[str, asyncio.Event] = {}

    async def hold(self, key: str) -> None:
        """Promise one failure of ``key``'s; raise ApiError 429 when it has
        none left."""
        while True:
            held = self._held.get(key, 0)
            wait = self.limiter.blocked_for(key, self.limit,
                                            time.monotonic(), held)
            if wait == 0.0:
                self._held[key] = held + 1
                return
            if held == 0:
                raise too_many(wait, "failed authentications from this "
                               "address")
            await self._ended.setdefault(key, asyncio.Event()).wait()

    def release(self, key: str, failed: bool) -> None:
        """End a held lookup; a failed one is spent from the bucket."""
        if failed:
            self.limiter.take(key, self.limit, time.monotonic())
        held = self._held.pop(key, 1) - 1
        if held > 0:
            self._held[key] = held
        ended = self._ended.pop(key, None)
        if ended is not None:
            ended.set()  # the waiters look again, in arrival order


class Authenticator:
    """Finds who holds a token, and keeps the rate limits."""

    def __init__(self, pool: asyncpg.Pool, config: AuthConfig) -> None:
        self.pool = pool
        self.config = config
        self.limiter = RateLimiter()
        self.failed_limit = Limit(config.failed_rate,
                                  max(1, config.failed_burst))
        self.failures = FailureBudget(self.limiter, self.failed_limit)

    async def identify(self, token: str) -> Identity | None:
        """Return who holds ``token``: our table first, then the users
        query when one is configured."""
        found = await tokens.lookup(self.pool, token)
        if found is None and self.config.users_query:
            async with self.pool.acquire() as connection:
                found = await tokens.lookup_user(
                    connection, self.config.users_query, token
                )
        return found

    async def authenticate(self, request: web.Request) -> Identity:
        """Return the caller's identity, or raise ApiError 401 or 429."""
        address = request.remote or "unknown"
        key = f"addr:{address}"
        # An address that failed too often is refused before its token is
        # even looked at: guessing must not go on at the database's cost.
        await self.failures.hold(key)
        token = bearer(request)
        found = None
        answered = False
        try:
            found = await self.identify(token) if token else None
            answered = True
        finally:
            # Only a lookup that ended with no holder is a failure; one the
            # database could not answer spends nothing.
            self.failures.release(key, failed=answered and found is None)
        if found is None:
            reason = "no bearer token" if not token else "unknown token"
            log.info("auth refused addr=%s reason=%s path=%s", address,
                     reason, request.path)
            raise ApiError(
                401,
                "send a valid API token as 'Authorization: Bearer <token>'; "
                "the token is missing, unknown, expired or revoked (make "
                "one with 'fuwactl token create')",
                {"WWW-Authenticate": 'Bearer realm="fuwad"'},
            )
        limit = role_limit(self.config, found.role)
        wait = self.limiter.take(f"token:{found.name}", limit,
                                 time.monotonic())
        if wait:
            raise too_many(wait, f"requests for token {found.name}")
        return found


AUTHENTICATOR = web.AppKey("fuwad_authenticator", Authenticator)


def guard(handler: Handler, role: Role | None,
          action: str | None) -> Handler:
    """Wrap ``handler`` so that it runs only for callers with ``role``.

    ``role`` None lets anyone call it; ``action`` names a change for the
    audit log.
    """
    if role is None:
        return handler

    async def guarded(request: web.Request) -> web.StreamResponse:
        who = await request.app[AUTHENTICATOR].authenticate(request)
        request[IDENTITY] = who
        if not who.role.allows(role):
            if action:
                _audit(who, action, None, "refused role")
            raise ApiError(
                403,
                f"this call needs the {role.value} role or higher; token "
                f"{who.name} has {who.role.value}",
            )
        if action is None:
            return await handler(request)
        outcome = "error"
        try:
            response = await handler(request)
            outcome = "ok"
            return response
        except ApiError as exc:
            outcome = f"refused {exc.status}"
            raise
        finally:
            _audit(who, action, request.get(AUDIT_JOB), outcome)

    return guarded


def _audit(who: Identity, action: str, job_id: int | None,
           outcome: str) -> None:
    extra = {"event": "audit", "token": who.name, "role": who.role.value,
             "action": action, "job_id": job_id, "outcome": outcome}
    audit_log.info(
        "audit token=%s role=%s action=%s job_id=%s outcome=%s",
        who.name, who.role.value, action,
        "-" if job_id is None else job_id, outcome, extra=extra,
    )
