"""The README's REST API examples, run as written against a real server.

Every ``curl`` command in the README's api section runs in bash with
``FUWAD_URL`` and ``FUWAD_TOKEN`` set, as the README tells the reader to
set them; the jobs its examples name (42, 43, 44) are made first.  The
workers and monitor examples need the daemon: here, with none, they must
fail with the API's 503 saying so; test_http_daemon.py runs them all
against a running daemon, where they must pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

import asyncpg
import pytest

from fuwad import tokens
from fuwad.config import load
from fuwad.http.app import ROUTES
from fuwad.tokens import Role
from tests.system.test_http_serve import Server

README = Path(__file__).resolve().parents[2] / "README.md"
DAEMON_CALLS = ("/api/queue/workers", "/api/queue/monitor/", "/healthz")


def api_section() -> str:
    text = README.read_text()
    match = re.search(r"<!-- section: api -->(.*?)<!-- end: api -->", text,
                      re.S)
    if match is None or not match.group(1).strip():
        pytest.fail("README.md has no api section")
    return match.group(1)


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", api_section(), re.S)


def curl_commands() -> list[str]:
    """Return each curl command of the section, continuations joined."""
    commands = []
    for block in blocks("sh"):
        joined = re.sub(r"\\\n\s*", "", block)
        commands += [line.strip() for line in joined.splitlines()
                     if line.strip().startswith("curl ")]
    return commands


async def prepare_examples(dsn: str) -> str:
    """Make the token 'me' and the jobs the examples name; return it."""
    connection = await asyncpg.connect(dsn)
    try:
        token, _ = await tokens.create(connection, "me", Role.ADMIN)
        # The jobs the examples name: 42 failed, 43 pending, 44 any.  The
        # pending ones are due in an hour, so that no worker claims them.
        await connection.execute(
            """INSERT INTO queue_jobs (id, job_name, job_class, queue, status,
                                       available_at, failed_at, last_error)
               VALUES (42, 'welcome', 'app.jobs.SendWelcome', 'mail',
                       'failed', now(), now(), 'boom'),
                      (43, 'report', 'app.jobs.Report', 'default',
                       'pending', now() + interval '1 hour', NULL, NULL),
                      (44, 'old', 'app.jobs.Report', 'default',
                       'pending', now() + interval '1 hour', NULL, NULL)""")
    finally:
        await connection.close()
    return token


def test_the_readme_documents_every_endpoint_with_curl() -> None:
    commands = curl_commands()
    for route in ROUTES:
        url = f'"$FUWAD_URL{route.path}'
        found = [c for c in commands if url + '"' in c or url + "?" in c]
        assert found, f"no curl example for {route.method} {route.path}"
        for command in found:
            if route.method == "GET":
                assert "-X " not in command and " -d " not in command
            elif route.method == "POST":
                assert "-X POST" in command or " -d " in command
            else:
                assert f"-X {route.method}" in command


def run_curl_examples(url: str, token: str, daemon: bool) -> None:
    """Run every curl example; those needing the daemon must pass if it
    runs, else fail with the API's 503 saying so."""
    env = {**os.environ, "FUWAD_URL": url, "FUWAD_TOKEN": token}
    commands = curl_commands()
    assert len(commands) >= 16
    for command in commands:
        done = subprocess.run(["bash", "-c", command], env=env,
                              capture_output=True, text=True, timeout=60,
                              check=False)
        if any(p in command for p in DAEMON_CALLS) and not daemon:
            assert done.returncode == 22, (command, done.stdout)
            assert ("not running" in done.stdout
                    or "supervisor not reachable" in done.stdout)
            continue
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        if "/metrics" in command:
            assert "fuwad_jobs_ready" in done.stdout
            continue
        answer = json.loads(done.stdout)
        if "openapi.json" in command:
            assert answer["openapi"].startswith("3.")
            continue
        assert answer["success"] is True, (command, answer)


@pytest.mark.slow
def test_the_readme_curl_examples_work_as_written(
    dsn: str, tmp_path: Path,
) -> None:
    token = asyncio.run(prepare_examples(dsn))
    server = Server(dsn, tmp_path)
    try:
        server.wait_ready()
        run_curl_examples(server.url, token, daemon=False)
    finally:
        assert server.stop() == 0


def test_the_readme_users_query_loads_and_prepares(
    dsn: str, tmp_path: Path,
) -> None:
    (ini,) = [b for b in blocks("ini") if "users_query" in b]
    path = tmp_path / "fuwad.ini"
    path.write_text(ini)
    config = load(path, env={})
    assert config.auth.users_query.startswith("SELECT username")

    async def check() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "CREATE TABLE app_users (username text, api_key_sha256 text, "
                "is_staff boolean, is_active boolean)")
            await tokens.check_users_query(connection,
                                           config.auth.users_query)
        finally:
            await connection.close()

    asyncio.run(check())
