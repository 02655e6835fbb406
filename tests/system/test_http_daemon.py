"""The API inside a running daemon: workers, the monitor and health answer
from the supervisor over its control socket, and the README's examples all
pass."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until_sync
from tests.system.conftest import Daemon
from tests.system.test_http_readme import prepare_examples, run_curl_examples
from tests.system.test_http_schemathesis import (
    CONFORMANCE,
    DAEMON_PATHS,
    FULL_CHECKS,
    run_schemathesis,
)
from tests.system.test_http_serve import free_port


def call(url: str, token: str, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(
        url, method=method, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, None


@pytest.mark.slow
def test_workers_monitor_and_health_answer_from_the_daemon(
    daemon: Daemon, dsn: str, tmp_path: Path,
) -> None:
    token = asyncio.run(prepare_examples(dsn))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # No rate limit: schemathesis sends hundreds of requests, some without
    # a token on purpose.
    daemon.start("--workers", "1", http={"enabled": True, "port": port},
                 auth={"rate_admin": 0, "failed_rate": 0})
    daemon.wait_ready(workers=1)
    wait_until_sync(lambda: call(f"{url}/healthz", token)[0] == 200,
                    timeout=30, message="healthz 200")
    status, health = call(f"{url}/healthz", token)
    assert health["data"] == {"database": "ok", "supervisor": "ok"}

    # The daemon's worker, joined to its database row.
    (worker_pid,) = [w["pid"] for w in daemon.workers()]

    def listed() -> Any:
        answer = call(f"{url}/api/queue/workers", token)[1]
        found = [w for w in answer["data"]["workers"]
                 if w["pid"] == worker_pid and w["source"] == "supervisor"]
        return found and found[0]["role"] == "worker" and found[0]

    worker = wait_until_sync(listed, timeout=30, message="worker row")
    assert worker["host"] and worker["heartbeat_age"] is not None
    assert worker["state"] in ("idle", "busy")

    # Stop the monitor: the workers drain, the daemon stays up.
    status, answer = call(f"{url}/api/queue/monitor/stop", token, "POST")
    assert (status, answer["data"]) == (200, {"running": False})
    assert call(f"{url}/api/queue/monitor/running", token)[1]["data"] == {
        "running": False}
    wait_until_sync(lambda: not daemon.workers(), timeout=30,
                    message="workers drained")
    status, answer = call(f"{url}/api/queue/monitor/start", token, "POST")
    assert (status, answer["data"]) == (200, {"running": True})
    daemon.wait_ready(workers=1)

    # With the daemon up, its endpoints pass every check, 5xx included.
    fuzz = run_schemathesis(url, token, tmp_path,
                            "--checks", FULL_CHECKS + CONFORMANCE,
                            "--include-path-regex", DAEMON_PATHS)
    assert fuzz.returncode == 0, fuzz.stdout[-6000:]

    run_curl_examples(url, token, daemon=True)

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    assert "Traceback" not in daemon.log()
