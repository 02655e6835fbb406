"""Input the API refuses, and how: 400, 404, 405, 413 and 500, always in the
envelope and before any work is done."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from fuwad.config import Config
from fuwad.http.app import ROUTES
from fuwad.manager import QueueManager

BODY_LIMIT = 2048


@pytest.fixture
def api_config(config: Config) -> Config:
    return replace(
        config,
        http=replace(config.http, max_body_bytes=BODY_LIMIT),
        auth=replace(config.auth, rate_admin=0, failed_rate=0),
    )


async def refused(response: ClientResponse, status: int) -> str:
    """Check an error envelope with ``status``; return its message."""
    assert response.status == status
    assert response.content_type == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = await response.json()
    assert set(body) == {"success", "error"} and body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


@pytest.mark.parametrize("value", [
    "0", "-1", "abc", "1.5", "", " ", "1e3", "99999999999999999999",
    "٣",  # a digit, but not an ASCII one
])
async def test_a_job_id_in_the_query_must_be_a_positive_whole_number(
    client: TestClient, admin: dict[str, str], value: str,
) -> None:
    response = await client.get("/api/queue/job", params={"id": value},
                                headers=admin)
    message = await refused(response, 400)
    assert "id" in message


@pytest.mark.parametrize("value", [0, -5, "7", 1.5, True, None, [1],
                                   2**63, {"id": 1}])
async def test_a_job_id_in_the_body_must_be_a_positive_whole_number(
    client: TestClient, admin: dict[str, str], value: object,
) -> None:
    for method, path in (("POST", "/api/queue/retry"),
                         ("POST", "/api/queue/cancel"),
                         ("DELETE", "/api/queue/delete")):
        response = await client.request(method, path, json={"id": value},
                                        headers=admin)
        assert "id must be" in await refused(response, 400)


async def test_an_unknown_status_lists_the_valid_ones(
    client: TestClient, admin: dict[str, str],
) -> None:
    response = await client.get("/api/queue/jobs?status=stuck",
                                headers=admin)
    message = await refused(response, 400)
    assert message == ("unknown status 'stuck'; use one of pending, "
                       "processing, completed, failed, cancelled")


@pytest.mark.parametrize("query", [
    "page=0", "page=x", "page=1000001", "limit=0", "limit=-3",
    "limit=99999999999999999999", "queue=" + "q" * 300, "job_class=a%00b",
    "limit=", "page=1&page=2", "status=failed&status=pending", "max_id=",
    "max_id=0", "max_id=x",
])
async def test_bad_list_parameters_are_400(
    client: TestClient, admin: dict[str, str], query: str,
) -> None:
    response = await client.get(f"/api/queue/jobs?{query}", headers=admin)
    await refused(response, 400)


async def test_the_limit_is_capped_and_the_answer_says_so(
    client: TestClient, admin: dict[str, str], manager: QueueManager,
) -> None:
    await manager.push("a", "app.jobs.A")
    response = await client.get("/api/queue/jobs?limit=5000", headers=admin)
    data = (await response.json())["data"]
    assert (data["limit"], data["total"], len(data["jobs"])) == (200, 1, 1)


@pytest.mark.parametrize("body", [
    b"not json", b"{", b"[1, 2]", b'"text"', b"NaN", b'{"id": NaN}',
    b"\xff\xfe", b"[" * 1020 + b"]" * 1020, b"",
])
async def test_a_body_that_is_not_a_json_object_is_400(
    client: TestClient, admin: dict[str, str], manager: QueueManager,
    body: bytes,
) -> None:
    job_id = await manager.push("a", "app.jobs.A")
    response = await client.post(
        "/api/queue/cancel", data=body,
        headers={**admin, "Content-Type": "application/json"},
    )
    message = await refused(response, 400)
    assert "JSON object" in message or "the body needs id" in message
    assert (await manager.get_job(job_id)).status == "pending"


async def test_unknown_fields_and_bad_delays_are_400(
    client: TestClient, admin: dict[str, str], manager: QueueManager,
) -> None:
    job_id = await manager.push("a", "app.jobs.A")
    await manager.mark_failed(job_id)
    cases = [
        ({"id": job_id, "force": True}, "unknown field 'force'"),
        ({"id": job_id, "delay": -1}, "delay"),
        ({"id": job_id, "delay": 1e300}, "10-year"),
        ({"id": job_id, "delay": "soon"}, "cannot read 'soon'"),
        ({"id": job_id, "delay": True}, "delay must be"),
        ({"id": job_id, "delay": [5]}, "delay must be"),
    ]
    for body, expected in cases:
        response = await client.post("/api/queue/retry", json=body,
                                     headers=admin)
        assert expected in await refused(response, 400)
    assert (await manager.get_job(job_id)).status == "failed"
    response = await client.post("/api/queue/retry", headers=admin,
                                 json={"id": job_id, "delay": "+2 hours"})
    assert response.status == 200


async def test_an_oversized_body_is_413_before_any_work(
    client: TestClient, admin: dict[str, str], manager: QueueManager,
) -> None:
    job_id = await manager.push("a", "app.jobs.A")
    big = json.dumps({"id": job_id, "pad": "x" * BODY_LIMIT}).encode()
    response = await client.post("/api/queue/cancel", data=big,
                                 headers=admin)
    assert "2048-byte limit" in await refused(response, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1024  # no Content-Length: sent chunked

    response = await client.post("/api/queue/cancel", data=chunks(),
                                 headers=admin)
    await refused(response, 413)
    assert (await manager.get_job(job_id)).status == "pending"


async def test_wrong_methods_and_paths_answer_in_the_envelope(
    client: TestClient, admin: dict[str, str],
) -> None:
    response = await client.post("/api/queue/stats", headers=admin)
    message = await refused(response, 405)
    assert message == ("POST is not allowed on /api/queue/stats; use GET, "
                       "HEAD")
    assert response.headers["Allow"] == "GET,HEAD"
    response = await client.get("/api/queue/delete", headers=admin)
    assert response.headers["Allow"] == "DELETE"
    await refused(response, 405)
    response = await client.get("/api/queue/nothing", headers=admin)
    assert "openapi.json" in await refused(response, 404)


async def test_an_unexpected_failure_is_500_with_a_request_id_in_the_log(
    client: TestClient, admin: dict[str, str], manager: QueueManager,
    dsn: str, caplog: pytest.LogCaptureFixture,
) -> None:
    job_id = await manager.push("a", "app.jobs.A")
    connection = await asyncpg.connect(dsn)
    try:
        # A schema the code does not expect: a real fault, not a mock.
        await connection.execute(
            "ALTER TABLE queue_jobs RENAME COLUMN last_error TO lost")
    finally:
        await connection.close()
    caplog.set_level(logging.ERROR, logger="fuwad.http")
    response = await client.get(f"/api/queue/job?id={job_id}",
                                headers=admin)
    message = await refused(response, 500)
    request_id = response.headers["X-Request-Id"]
    assert message == ("internal error; the server log has the details "
                       f"under request id {request_id}")
    assert "last_error" not in message and "SELECT" not in message
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None


async def test_head_answers_wherever_get_does_with_no_body(
    client: TestClient, admin: dict[str, str], manager: QueueManager,
) -> None:
    job_id = await manager.push("a", "app.jobs.A")
    gets = [route.path for route in ROUTES if route.method == "GET"]
    assert len(gets) >= 9
    for path in gets:
        target = f"{path}?id={job_id}" if path.endswith("/job") else path
        got = await client.get(target, headers=admin)
        await got.read()
        head = await client.head(target, headers=admin)
        assert head.status == got.status, path
        assert await head.read() == b"", path
        assert head.content_type == got.content_type, path
        assert head.headers["X-Content-Type-Options"] == "nosniff"
        assert "X-Request-Id" in head.headers
    # The token is checked on HEAD as on GET.
    head = await client.head("/api/queue/stats")
    assert head.status == 401


async def test_refusals_of_ids_and_limits_say_what_was_sent_and_wanted(
    client: TestClient, admin: dict[str, str],
) -> None:
    async def body_error(body: bytes) -> str:
        response = await client.post(
            "/api/queue/cancel", data=body,
            headers={**admin, "Content-Type": "application/json"})
        return await refused(response, 400)

    assert await body_error(b'{"id": "1"}') == (
        'id must be a JSON integer, not the string "1"')
    assert await body_error(b'{"id": 1.5}') == (
        "id must be a JSON integer, not the number 1.5")
    assert await body_error(b'{"id": null}') == (
        "id must be a JSON integer, not null")
    assert await body_error(b'{"id": [1]}') == (
        "id must be a JSON integer, not an array")
    # Past 4300 digits Python will not read a number at all; this one is
    # shorter to fit the body limit, and takes the same way.
    assert await body_error(b'{"id": ' + b"7" * 2000 + b"}") == (
        f"id must be 1 to {2**63 - 1}, not a number of 2000 digits")

    async def query_error(query: str) -> str:
        response = await client.get(f"/api/queue/{query}", headers=admin)
        return await refused(response, 400)

    assert await query_error("jobs?limit=0") == (
        "limit must be 1 or more (a page holds at most 200 jobs), not 0")
    # A '+' in a query string is a space; neither is part of a number.
    for query in ("job?id=+1", "job?id=%2B1", "job?id=%201"):
        assert await query_error(query) == (
            "id must be written in digits alone, with no sign or space "
            "(a '+' in a URL reads as a space)"), query
