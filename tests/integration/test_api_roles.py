"""Every API endpoint for every role, allowed and refused, on a real server.

The app runs on a real socket against a real database; no daemon runs, so
the endpoints that ask the daemon answer 503.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from fuwad import tokens
from fuwad.http.api import ENDPOINTS, Endpoint
from fuwad.manager import QueueManager
from fuwad.tokens import Role


@pytest.fixture
async def role_tokens(dsn: str) -> dict[Role, str]:
    connection = await asyncpg.connect(dsn)
    try:
        made = {}
        for role in Role:
            made[role], _ = await tokens.create(connection, role.value, role)
        return made
    finally:
        await connection.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def prepare(endpoint: Endpoint, manager: QueueManager) -> Any:
    """Return a body the endpoint can act on, making the job it needs."""
    job_id = await manager.push("welcome", "app.jobs.SendEmail", {"to": "a"})
    if endpoint.path.endswith("/retry"):
        await manager.mark_failed(job_id, "boom")
        return {"id": job_id}
    if endpoint.path.endswith(("/cancel", "/delete")):
        return {"id": job_id}
    return None


DAEMON_PATHS = ("/workers", "/monitor/start", "/monitor/stop",
                "/monitor/running")
CASES = [
    (endpoint, role)
    for endpoint in ENDPOINTS if endpoint.role is not None
    for role in Role
]


@pytest.mark.parametrize(
    ("endpoint", "role"), CASES,
    ids=[f"{e.method}-{e.path.rsplit('/', 2)[-1]}-{r.value}"
         for e, r in CASES],
)
async def test_each_endpoint_for_each_role(
    endpoint: Endpoint, role: Role, client: TestClient,
    role_tokens: dict[Role, str], manager: QueueManager,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = await prepare(endpoint, manager)
    url = endpoint.path
    if endpoint.path.endswith("/job"):
        job_id = (await manager.list_jobs())[0][0].id
        url = f"{endpoint.path}?id={job_id}"
    caplog.set_level(logging.INFO, logger="fuwad.audit")
    response = await client.request(endpoint.method, url, json=body,
                                    headers=bearer(role_tokens[role]))
    answer = await response.json()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.content_type == "application/json"
    assert endpoint.role is not None
    if not role.allows(endpoint.role):
        assert response.status == 403
        assert answer == {"success": False, "error": answer["error"]}
        assert f"needs the {endpoint.role.value} role" in answer["error"]
    elif endpoint.path.endswith(DAEMON_PATHS):
        assert response.status == 503
        assert "not running" in answer["error"]
    else:
        assert response.status == 200, answer
        assert answer["success"] is True
        assert isinstance(answer["message"], str)
    if endpoint.action is not None:
        lines = [r.getMessage() for r in caplog.records
                 if r.name == "fuwad.audit"]
        assert len(lines) == 1
        assert f"token={role.value} role={role.value}" in lines[0]
        assert f"action={endpoint.action}" in lines[0]
        if body is not None and role.allows(endpoint.role):
            assert f"job_id={body['id']}" in lines[0]
        outcome = "ok" if response.status == 200 else "refused"
        assert f"outcome={outcome}" in lines[0]


async def test_each_change_is_reflected_in_the_database(
    client: TestClient, role_tokens: dict[Role, str],
    manager: QueueManager,
) -> None:
    admin = bearer(role_tokens[Role.ADMIN])
    failed = await manager.push("a", "app.jobs.A")
    await manager.mark_failed(failed, "boom")
    pending = await manager.push("b", "app.jobs.A")
    doomed = await manager.push("c", "app.jobs.A")

    response = await client.post("/api/queue/retry", headers=admin,
                                 json={"id": failed, "delay": 30})
    assert (await response.json())["data"] == {"id": failed,
                                               "status": "pending"}
    job = await manager.get_job(failed)
    assert (job.status, job.attempts) == ("pending", 0)
    assert (job.available_at - job.created_at).total_seconds() > 25

    response = await client.post("/api/queue/cancel", headers=admin,
                                 json={"id": pending})
    assert (await response.json())["data"] == {"id": pending,
                                               "status": "cancelled"}
    assert (await manager.get_job(pending)).status == "cancelled"

    response = await client.delete("/api/queue/delete", headers=admin,
                                   json={"id": doomed})
    assert (await response.json())["data"] == {"id": doomed,
                                               "status": "deleted"}
    assert (await manager.get_stats())["total"] == 2


async def test_a_move_the_status_forbids_is_409_and_unknown_job_404(
    client: TestClient, role_tokens: dict[Role, str],
    manager: QueueManager,
) -> None:
    admin = bearer(role_tokens[Role.ADMIN])
    pending = await manager.push("a", "app.jobs.A")
    response = await client.post("/api/queue/retry", headers=admin,
                                 json={"id": pending})
    assert response.status == 409
    assert (await response.json())["error"] == (
        f"job {pending} is pending and cannot be retried")
    for method, path in (("POST", "/api/queue/cancel"),
                         ("DELETE", "/api/queue/delete"),
                         ("POST", "/api/queue/retry")):
        response = await client.request(method, path, headers=admin,
                                        json={"id": 999999})
        assert response.status == 404
        assert (await response.json())["error"] == "job 999999 does not exist"
    response = await client.get("/api/queue/job?id=999999", headers=admin)
    assert response.status == 404


async def test_whoami_names_the_token_and_its_role(
    client: TestClient, role_tokens: dict[Role, str],
) -> None:
    for role, token in role_tokens.items():
        response = await client.get("/api/queue/whoami",
                                    headers=bearer(token))
        data = (await response.json())["data"]
        assert data == {"name": role.value, "role": role.value}


async def test_refused_change_is_audited_and_changes_nothing(
    client: TestClient, role_tokens: dict[Role, str],
    manager: QueueManager, caplog: pytest.LogCaptureFixture,
) -> None:
    job_id = await manager.push("a", "app.jobs.A")
    caplog.set_level(logging.INFO, logger="fuwad.audit")
    response = await client.delete("/api/queue/delete", json={"id": job_id},
                                   headers=bearer(role_tokens[Role.OPERATOR]))
    assert response.status == 403
    assert (await response.json())["error"] == (
        "this call needs the admin role or higher; token operator has "
        "operator")
    assert (await manager.get_job(job_id)).status == "pending"
    audit = [r.getMessage() for r in caplog.records if r.name == "fuwad.audit"]
    assert audit == ["audit token=operator role=operator action=delete "
                     "job_id=- outcome=refused role"]
