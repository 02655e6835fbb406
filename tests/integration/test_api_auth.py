"""Authentication, rate limits and the optional users table, on a real
server and database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from fuwad import tokens
from fuwad.config import Config
from fuwad.http.app import make_app
from fuwad.http.auth import Bucket, Limit, RateLimiter, refill, wait_needed
from fuwad.tokens import Role

Serve = Callable[..., Any]


@pytest.fixture
def serve(config: Config, dsn: str) -> Serve:
    """Serve the app with some [auth] keys changed."""

    @asynccontextmanager
    async def start(**auth: Any) -> AsyncIterator[TestClient]:
        changed = replace(config, auth=replace(config.auth, **auth))
        async with TestClient(TestServer(make_app(changed, dsn))) as client:
            yield client

    return start


async def make_token(dsn: str, name: str, role: Role,
                     expires: int | None = None) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        token, _ = await tokens.create(connection, name, role, expires)
        return token
    finally:
        await connection.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_missing_wrong_expired_and_revoked_tokens_get_401(
    serve: Serve, dsn: str,
) -> None:
    good = await make_token(dsn, "good", Role.ADMIN)
    expired = await make_token(dsn, "old", Role.ADMIN, 3600)
    revoked = await make_token(dsn, "gone", Role.ADMIN)
    connection = await asyncpg.connect(dsn)
    try:
        # Expiry is judged by the database clock: move it into the past.
        await connection.execute(
            "UPDATE queue_api_tokens SET expires_at = now() - interval '1s' "
            "WHERE name = 'old'")
        await tokens.revoke(connection, "gone")
    finally:
        await connection.close()
    cases = {
        "missing": {},
        "empty": {"Authorization": "Bearer "},
        "basic scheme": {"Authorization": f"Basic {good}"},
        "wrong": bearer(good[:-2] + "xx"),
        "too long": bearer("x" * 5000),
        "expired": bearer(expired),
        "revoked": bearer(revoked),
    }
    async with serve(failed_rate=0) as client:
        for name, headers in cases.items():
            for method, path in (("GET", "/api/queue/stats"),
                                 ("POST", "/api/queue/cleanup")):
                response = await client.request(method, path,
                                                headers=headers)
                assert response.status == 401, name
                body = await response.json()
                assert body["success"] is False
                assert "Authorization: Bearer" in body["error"]
                assert response.headers["WWW-Authenticate"].startswith(
                    "Bearer")
        response = await client.get("/api/queue/stats", headers=bearer(good))
        assert response.status == 200


async def test_the_token_is_stored_only_as_its_hash(dsn: str) -> None:
    token = await make_token(dsn, "hashed", Role.VIEWER)
    connection = await asyncpg.connect(dsn)
    try:
        stored = await connection.fetchval(
            "SELECT token_hash FROM queue_api_tokens WHERE name = 'hashed'")
        assert stored == tokens.hash_token(token) and token not in stored
        assert token.startswith("fwd_") and len(token) >= 40
    finally:
        await connection.close()


async def test_a_token_past_its_burst_gets_429_with_retry_after(
    serve: Serve, dsn: str,
) -> None:
    viewer = await make_token(dsn, "v", Role.VIEWER)
    admin = await make_token(dsn, "a", Role.ADMIN)
    async with serve(rate_viewer=0.01, burst_viewer=3, rate_admin=0.01,
                     burst_admin=5) as client:
        statuses = []
        for _ in range(4):
            response = await client.get("/api/queue/whoami",
                                        headers=bearer(viewer))
            statuses.append(response.status)
        assert statuses == [200, 200, 200, 429]
        body = await response.json()
        assert body["success"] is False and "token v" in body["error"]
        assert int(response.headers["Retry-After"]) >= 1
        # The limit is per token and per role: the admin has its own.
        statuses = []
        for _ in range(6):
            response = await client.get("/api/queue/whoami",
                                        headers=bearer(admin))
            statuses.append(response.status)
        assert statuses == [200] * 5 + [429]


async def test_an_address_failing_too_often_is_refused_even_a_good_token(
    serve: Serve, dsn: str,
) -> None:
    good = await make_token(dsn, "good", Role.VIEWER)
    async with serve(failed_rate=0.01, failed_burst=3) as client:
        statuses = []
        for _ in range(4):
            response = await client.get("/api/queue/stats",
                                        headers=bearer("fwd_guess"))
            statuses.append(response.status)
        assert statuses == [401, 401, 401, 429]
        assert int(response.headers["Retry-After"]) >= 1
        response = await client.get("/api/queue/stats", headers=bearer(good))
        assert response.status == 429
        assert "failed authentications" in (await response.json())["error"]


async def test_the_users_query_vouches_for_an_applications_tokens(
    serve: Serve, dsn: str, manager: Any,
) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "CREATE TABLE app_users (username text, api_key_sha256 text, "
            "is_staff boolean, active boolean)")
        await connection.executemany(
            "INSERT INTO app_users VALUES ($1, $2, $3, $4)",
            [("ann", tokens.hash_token("ann-key"), True, True),
             ("bob", tokens.hash_token("bob-key"), False, True),
             ("cat", tokens.hash_token("cat-key"), True, False)],
        )
    finally:
        await connection.close()
    query = ("SELECT username AS name, CASE WHEN is_staff THEN 'operator' "
             "ELSE 'viewer' END AS role FROM app_users "
             "WHERE api_key_sha256 = $2 AND active")
    job_id = await manager.push("a", "app.jobs.A")
    async with serve(users_query=query, failed_rate=0) as client:
        response = await client.get("/api/queue/whoami",
                                    headers=bearer("ann-key"))
        assert (await response.json())["data"] == {"name": "user:ann",
                                                   "role": "operator"}
        response = await client.post("/api/queue/cancel", json={"id": job_id},
                                     headers=bearer("bob-key"))
        assert response.status == 403
        response = await client.post("/api/queue/cancel", json={"id": job_id},
                                     headers=bearer("ann-key"))
        assert response.status == 200
        for key in ("cat-key", "nobody"):
            response = await client.get("/api/queue/whoami",
                                        headers=bearer(key))
            assert response.status == 401


async def test_a_users_query_that_cannot_work_stops_the_start(
    config: Config, dsn: str,
) -> None:
    changed = replace(config, auth=replace(
        config.auth, users_query="SELECT 1 AS nothing FROM pg_class"))
    server = TestServer(make_app(changed, dsn))
    with pytest.raises(tokens.TokenError, match="role column"):
        await server.start_server()
    await server.close()


def test_buckets_refill_at_the_rate_up_to_the_burst() -> None:
    limit = Limit(rate=2.0, burst=4)
    bucket = Bucket(level=0.0, updated=10.0)
    assert wait_needed(bucket, limit) == pytest.approx(0.5)
    refill(bucket, limit, 11.0)
    assert bucket.level == pytest.approx(2.0)
    refill(bucket, limit, 100.0)
    assert bucket.level == 4.0
    limiter = RateLimiter()
    waits = [limiter.take("k", limit, 0.0) for _ in range(5)]
    assert waits[:4] == [0.0] * 4 and waits[4] == pytest.approx(0.5)
    assert limiter.take("k", limit, 0.5) == 0.0
    assert limiter.take("k", Limit(0.0, 1), 0.5) == 0.0  # rate 0: no limit


async def test_concurrent_first_uses_of_a_token_all_pass(
    serve: Serve, dsn: str,
) -> None:
    token = await make_token(dsn, "busy", Role.VIEWER)
    async with serve(rate_viewer=0) as client:
        responses = await asyncio.gather(*[
            client.get("/api/queue/whoami", headers=bearer(token))
            for _ in range(20)
        ])
        assert [r.status for r in responses] == [200] * 20


async def test_parallel_bad_tokens_get_no_more_tries_than_the_burst(
    serve: Serve, dsn: str,
) -> None:
    # Every guess is sent before any is answered: the check and the count
    # of a failure must not let in-flight guesses slip past the limit.
    async with serve(failed_rate=0.001, failed_burst=20) as client:
        responses = await asyncio.gather(*[
            client.get("/api/queue/stats", headers=bearer(f"fwd_guess{n}"))
            for n in range(300)
        ])
        statuses = [r.status for r in responses]
        assert statuses.count(401) == 20
        assert statuses.count(429) == 280


async def test_parallel_good_calls_from_one_address_all_pass(
    serve: Serve, dsn: str,
) -> None:
    # Calls waiting on the failure budget are let through as the ones
    # ahead of them prove good, instead of being refused.
    token = await make_token(dsn, "busy", Role.VIEWER)
    async with serve(rate_viewer=0, failed_rate=0.001,
                     failed_burst=2) as client:
        responses = await asyncio.gather(*[
            client.get("/api/queue/whoami", headers=bearer(token))
            for _ in range(60)
        ])
        assert [r.status for r in responses] == [200] * 60
        guess = await client.get("/api/queue/whoami",
                                 headers=bearer("fwd_guess"))
        assert guess.status == 401
