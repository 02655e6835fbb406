"""What the API answers about the queue: stats, jobs, cleanup, metrics,
health and the OpenAPI document, checked against the database."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from fuwad.config import Config
from fuwad.http.api import merge_workers
from fuwad.http.app import ROUTES, make_app
from fuwad.manager import QueueManager


async def data(client: TestClient, path: str,
               headers: dict[str, str]) -> Any:
    response = await client.get(path, headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["success"] is True
    return body["data"]


async def test_stats_match_the_database(
    client: TestClient, admin: dict[str, str], manager: QueueManager,
    dsn: str,
) -> None:
    ids = [await manager.push(f"j{i}", "app.jobs.A") for i in range(6)]
    await manager.push("later", "app.jobs.A", delay=3600)
    await manager.mark_completed(ids[0])
    await manager.mark_completed(ids[1])
    await manager.mark_failed(ids[2], "boom")
    await manager.cancel(ids[3])
    connection = await asyncpg.connect(dsn)
    try:
        # One completion ten minutes ago, to land in an earlier minute.
        await connection.execute(
            "UPDATE queue_jobs SET completed_at = now() - interval '10 min' "
            "WHERE id = $1", ids[1])
        await connection.execute(
            "UPDATE queue_jobs SET available_at = now() - interval '30 s' "
            "WHERE id = $1", ids[4])
    finally:
        await connection.close()
    stats = await data(client, "/api/queue/stats", admin)
    assert {k: stats[k] for k in ("pending", "processing", "completed",
                                  "failed", "cancelled", "total",
                                  "ready")} == {
        "pending": 3, "processing": 0, "completed": 2, "failed": 1,
        "cancelled": 1, "total": 7, "ready": 2,
    }
    assert 29 <= stats["oldest_ready_age_s"] < 600
    minutes = stats["per_minute"]
    assert len(minutes) == 60
    stamps = [datetime.fromisoformat(m["minute"]) for m in minutes]
    assert all(s.tzinfo is not None for s in stamps)
    assert all(b - a == timedelta(minutes=1)
               for a, b in zip(stamps, stamps[1:]))
    assert sum(m["completed"] for m in minutes) == 2
    assert sum(m["failed"] for m in minutes) == 1
    # The minute may turn between the moves and the query.
    recent = minutes[-2:]
    assert sum(m["completed"] for m in recent) == 1
    assert sum(m["failed"] for m in recent) == 1


async def test_stats_give_the_servers_default_max_attempts(
    api_config: Config, dsn: str, admin: dict[str, str],
) -> None:
    # What a job without max_attempts of its own gets: [queue]
    # worker_max_attempts, as this server is configured.
    changed = replace(api_config, queue=replace(api_config.queue,
                                                worker_max_attempts=7))
    async with TestClient(TestServer(make_app(changed, dsn))) as client:
        stats = await data(client, "/api/queue/stats", admin)
        assert stats["default_max_attempts"] == 7
        document = await (await client.get("/api/queue/openapi.json")).json()
    schema = document["components"]["schemas"]["Stats"]
    assert "default_max_attempts" in schema["required"]
    assert "worker_max_attempts" in (
        schema["properties"]["default_max_attempts"]["description"])


async def test_jobs_are_listed_newest_first_with_filters_and_paging(
    client: TestClient, admin: dict[str, str], manager: QueueManager,
) -> None:
    ids = [await manager.push(f"j{i}", "app.jobs.A",
                              queue="mail" if i % 2 else "default")
           for i in range(7)]
    await manager.push("other", "app.jobs.B")
    await manager.mark_failed(ids[0], "boom")
    page = await data(client, "/api/queue/jobs?limit=3&page=2", admin)
    assert (page["total"], page["page"], page["limit"]) == (8, 2, 3)
    assert [j["id"] for j in page["jobs"]] == [ids[4], ids[3], ids[2]]
    mail = await data(client, "/api/queue/jobs?queue=mail", admin)
    assert [j["id"] for j in mail["jobs"]] == [ids[5], ids[3], ids[1]]
    b = await data(client, "/api/queue/jobs?job_class=app.jobs.B", admin)
    assert b["total"] == 1 and b["jobs"][0]["job_name"] == "other"
    failed = await data(client, "/api/queue/jobs?status=failed", admin)
    assert [j["id"] for j in failed["jobs"]] == [ids[0]]
    everything = await data(client, "/api/queue/jobs?status=", admin)
    assert everything["total"] == 8

    # Pinned at max_id, page 2 holds still while new jobs arrive.
    pinned = f"/api/queue/jobs?limit=3&page=2&max_id={ids[6]}"
    before = await data(client, pinned, admin)
    await manager.push("newer", "app.jobs.A")
    after = await data(client, pinned, admin)
    assert after == before and after["total"] == 7


async def test_a_job_has_every_field_and_times_with_a_timezone(
    client: TestClient, admin: dict[str, str], manager: QueueManager,
) -> None:
    job_id = await manager.push("mail", "app.jobs.Send",
                                {"to": "<img src=x onerror=alert(1)>"},
                                priority="high", max_attempts=4)
    await manager.mark_failed(job_id, "Traceback: boom\n")
    job = await data(client, f"/api/queue/job?id={job_id}", admin)
    assert list(job) == [
        "id", "job_name", "job_class", "job_data", "queue", "priority",
        "status", "attempts", "max_attempts", "delay", "available_at",
        "created_at", "started_at", "completed_at", "failed_at",
        "last_error", "worker_id", "leased_at",
    ]
    assert job["job_data"] == {"to": "<img src=x onerror=alert(1)>"}
    assert (job["priority"], job["max_attempts"], job["status"]) == (
        10, 4, "failed")
    assert job["last_error"] == "Traceback: boom\n"
    for name in ("available_at", "created_at", "failed_at"):
        assert datetime.fromisoformat(job[name]).tzinfo is not None
    assert job["started_at"] is None and job["leased_at"] is None


async def test_cleanup_removes_old_finished_jobs_and_counts_them(
    client: TestClient, admin: dict[str, str], manager: QueueManager,
    dsn: str,
) -> None:
    old = await manager.push("old", "app.jobs.A")
    fresh = await manager.push("fresh", "app.jobs.A")
    await manager.mark_completed(old)
    await manager.mark_completed(fresh)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE queue_jobs SET completed_at = now() - interval '30 days' "
            "WHERE id = $1", old)
    finally:
        await connection.close()
    response = await client.post("/api/queue/cleanup", headers=admin)
    assert (await response.json())["data"] == {"cleaned_count": 1}
    assert (await manager.get_stats())["total"] == 1


async def test_metrics_are_prometheus_text_for_loopback_without_a_token(
    client: TestClient, manager: QueueManager, dsn: str,
) -> None:
    for _ in range(3):
        await manager.push("a", "app.jobs.A", queue="mail")
    done = await manager.push("b", "app.jobs.A")
    await manager.mark_completed(done)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO queue_workers (id, host, pid, state, jobs_done, "
            "jobs_failed) VALUES ('w1', 'h', 1, 'busy', 7, 2), "
            "('w2', 'h', 2, 'idle', 5, 0)")
    finally:
        await connection.close()
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    text = await response.text()
    assert 'fuwad_jobs{status="pending",queue="mail"} 3' in text
    assert 'fuwad_jobs{status="completed",queue="default"} 1' in text
    assert 'fuwad_jobs{status="failed",queue="default"} 0' in text
    assert "fuwad_jobs_ready 3" in text
    assert re.search(r"^fuwad_oldest_ready_job_age_seconds \d+\.\d+$", text,
                     re.M)
    assert 'fuwad_workers{state="busy"} 1' in text
    assert 'fuwad_workers{state="draining"} 0' in text
    assert "fuwad_jobs_processed_total 12" in text
    assert "fuwad_jobs_failed_total 2" in text
    for line in text.splitlines():
        assert line.startswith("#") or re.match(
            r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \S+$', line)


async def test_metrics_need_a_token_outside_the_allow_list(
    config: Config, dsn: str, admin: dict[str, str],
) -> None:
    closed = replace(config, http=replace(config.http, metrics_allow=""),
                     auth=replace(config.auth, failed_rate=0))
    async with TestClient(TestServer(make_app(closed, dsn))) as client:
        response = await client.get("/metrics")
        assert response.status == 401
        assert (await response.json())["success"] is False
        response = await client.get("/metrics", headers=admin)
        assert response.status == 200
        assert "fuwad_jobs_ready 0" in await response.text()


async def test_daemon_endpoints_and_health_are_503_without_a_daemon(
    client: TestClient, admin: dict[str, str], api_config: Config,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="fuwad.http")
    socket_path = str(api_config.socket_path())
    for method, path in (("GET", "/api/queue/workers"),
                         ("GET", "/api/queue/monitor/running"),
                         ("POST", "/api/queue/monitor/start"),
                         ("POST", "/api/queue/monitor/stop")):
        response = await client.request(method, path, headers=admin)
        assert response.status == 503
        body = await response.json()
        assert body["success"] is False
        # The server's file system is not the caller's business: the path
        # of the control socket goes to the log, under the request id.
        assert body["error"] == ("the fuwad daemon is not running; start "
                                 "it with 'fuwad run'")
        request_id = response.headers["X-Request-Id"]
        logged = [r.getMessage() for r in caplog.records
                  if request_id in r.getMessage()]
        assert len(logged) == 1 and socket_path in logged[0]
    response = await client.get("/healthz")
    assert response.status == 503
    assert (await response.json())["error"] == (
        "unhealthy: supervisor not reachable")


async def test_every_route_is_in_the_openapi_document(
    client: TestClient,
) -> None:
    response = await client.get("/api/queue/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.")
    described = {(method.upper(), path)
                 for path, item in document["paths"].items()
                 for method in item}
    served = {(route.method, route.path) for route in ROUTES}
    # HEAD is served, and described, wherever GET is.
    served |= {("HEAD", path) for method, path in served if method == "GET"}
    assert described == served
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        if route.role is None:
            continue
        assert operation["x-fuwad-role"] == route.role.value
        assert {"401", "403", "429"} <= set(operation["responses"])


def test_workers_join_the_daemons_view_with_the_database_rows() -> None:
    rows = [
        {"id": "h1:10", "host": "h1", "pid": 10, "role": "worker",
         "state": "idle", "current_job": None, "jobs_done": 3,
         "heartbeat_age": 1.5},
        {"id": "h1:9", "host": "h1", "pid": 9, "role": "supervisor",
         "state": "idle", "current_job": None, "jobs_done": 0,
         "heartbeat_age": 0.5},
        {"id": "h2:10", "host": "h2", "pid": 10, "role": "worker",
         "state": "busy", "current_job": 7, "jobs_done": 1,
         "heartbeat_age": 2.0},
    ]
    live = [
        {"index": 0, "pid": 10, "worker_id": "h1:10", "state": "busy",
         "job_id": 12, "job_class": "app.jobs.A", "jobs_done": 4},
        {"index": 1, "pid": 11, "worker_id": "h1:11", "state": "starting",
         "job_id": None, "jobs_done": 0},
    ]
    merged = merge_workers(live, rows, "h1")
    assert [(w["id"], w["source"]) for w in merged] == [
        ("h1:10", "supervisor"), ("h1:11", "supervisor"),
        ("h1:9", "database"), ("h2:10", "database")]
    first = merged[0]
    assert (first["state"], first["current_job"], first["jobs_done"],
            first["heartbeat_age"], first["role"]) == ("busy", 12, 4, 1.5,
                                                      "worker")
    assert (merged[1]["host"], merged[1]["role"],
            merged[1]["heartbeat_age"]) == ("h1", None, None)
