"""schemathesis against the live API with a real admin token: no 5xx, and
no answer outside the OpenAPI document.

The run is bounded (a fixed seed and few examples per operation) so that
it stays well under a minute.  No daemon runs here, so the operations that
ask the daemon answer their documented 503: they are checked for
conformance in a second run that does not count 503 as a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from fuwad import tokens
from fuwad.manager import QueueManager
from fuwad.tokens import Role
from tests.system.test_http_serve import Server

DAEMON_PATHS = r"^/(api/queue/(workers|monitor/.*)|healthz)$"
# A fixed seed keeps the run repeatable; FUWAD_FUZZ_SEED and
# FUWAD_FUZZ_EXAMPLES widen it by hand.
SEED = os.environ.get("FUWAD_FUZZ_SEED", "7")
EXAMPLES = os.environ.get("FUWAD_FUZZ_EXAMPLES", "50")
FULL_CHECKS = ("not_a_server_error,negative_data_rejection,"
               "unsupported_method,ignored_auth,")
CONFORMANCE = ("status_code_conformance,content_type_conformance,"
               "response_headers_conformance,response_schema_conformance")


def _schemathesis() -> str:
    beside = Path(sys.executable).parent / "schemathesis"
    found = str(beside) if beside.exists() else shutil.which("schemathesis")
    if found is None:
        pytest.fail("schemathesis is not installed; pip install -e '.[test]'")
    return found


async def _prepare(dsn: str) -> str:
    """Make an admin token and jobs in every status; return the token."""
    connection = await asyncpg.connect(dsn)
    try:
        token, _ = await tokens.create(connection, "fuzz", Role.ADMIN)
    finally:
        await connection.close()
    async with await QueueManager.connect(dsn) as manager:
        for i in range(20):
            job_id = await manager.push(f"job{i}", "app.jobs.Fuzz", {"i": i})
            if i % 4 == 1:
                await manager.mark_failed(job_id, "boom")
            elif i % 4 == 2:
                await manager.mark_completed(job_id)
            elif i % 4 == 3:
                await manager.cancel(job_id)
    return token


def run_schemathesis(url: str, token: str, tmp_path: Path,
                     *options: str) -> subprocess.CompletedProcess[str]:
    """Run schemathesis against the API at ``url`` with ``token``."""
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    return subprocess.run(
        [_schemathesis(), "run", f"{url}/api/queue/openapi.json",
         "--url", url,
         "-H", f"Authorization: Bearer {token}",
         "--seed", SEED, "--max-examples", EXAMPLES, "--workers", "1",
         "--phases", "examples,coverage,fuzzing",
         "--request-timeout", "10",
         "--report-dir", str(tmp_path / "report"),
         *options],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_nothing_off_schema(
    dsn: str, tmp_path: Path,
) -> None:
    token = asyncio.run(_prepare(dsn))
    server = Server(dsn, tmp_path, FUWAD_AUTH_RATE_ADMIN="0",
                    FUWAD_AUTH_FAILED_RATE="0")
    try:
        server.wait_ready()
        everything = run_schemathesis(
            server.url, token, tmp_path,
            "--checks", FULL_CHECKS + CONFORMANCE,
            "--exclude-path-regex", DAEMON_PATHS,
        )
        assert everything.returncode == 0, everything.stdout[-6000:]
        daemon = run_schemathesis(
            server.url, token, tmp_path, "--checks", CONFORMANCE,
            "--include-path-regex", DAEMON_PATHS,
        )
        assert daemon.returncode == 0, daemon.stdout[-6000:]
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.output()
