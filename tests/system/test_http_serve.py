"""serve() as a real process: it binds, tells how to make the first token,
answers, and stops cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until_sync

# serve() as the daemon's `fuwad http` calls it, with logging on stderr.
SERVE = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
from fuwad.config import load
from fuwad.http.app import serve
config = load()
sys.exit(serve(config, config.database.dsn))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """One serve() process on 127.0.0.1."""

    def __init__(self, dsn: str, tmp: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"http-{self.port}.log"
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith("FUWAD_")}
        environ.update({
            "FUWAD_DSN": dsn,
            "FUWAD_HTTP_PORT": str(self.port),
            "FUWAD_CONTROL_SOCKET": str(tmp / "no-daemon.sock"),
            **env,
        })
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", SERVE], env=environ,
                stdout=out, stderr=subprocess.STDOUT,
            )

    def answers(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the server exited: {self.output()}")
        try:
            urllib.request.urlopen(f"{self.url}/healthz", timeout=2)
        except urllib.error.HTTPError:
            return True  # 503 without a daemon: it answers
        except OSError:
            return False
        return True

    def wait_ready(self) -> Server:
        wait_until_sync(self.answers, timeout=30, message="server answers")
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail("the server did not stop within 30s")


@pytest.fixture
def servers(dsn: str, tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop(signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_then_stops_cleanly_on_a_signal(
    dsn: str, tmp_path: Path, servers: list[Server], signum: int,
) -> None:
    server = Server(dsn, tmp_path)
    servers.append(server)
    server.wait_ready()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.url}/api/queue/stats", timeout=5)
    assert refused.value.code == 401
    assert json.loads(refused.value.read())["success"] is False
    assert server.stop(signum) == 0
    output = server.output()
    assert "Traceback" not in output
    assert f"http listening host=127.0.0.1 port={server.port}" in output
    assert "http stopping" in output


def test_first_start_tells_how_to_make_an_admin_token(
    dsn: str, tmp_path: Path, servers: list[Server],
) -> None:
    server = Server(dsn, tmp_path)
    servers.append(server)
    server.wait_ready()
    assert ("no API token exists yet; make one with: fuwactl token create "
            "--name admin --role admin") in server.output()


def test_a_taken_port_exits_1_with_a_clear_message(
    dsn: str, tmp_path: Path, servers: list[Server],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Server(dsn, tmp_path, FUWAD_HTTP_PORT=str(port))
        servers.append(server)
        assert server.process.wait(timeout=60) == 1
    output = server.output()
    assert f"http cannot start: cannot listen on 127.0.0.1:{port}" in output
    assert "Traceback" not in output


def test_an_unreachable_database_exits_1_with_a_clear_message(
    tmp_path: Path, servers: list[Server],
) -> None:
    server = Server("postgresql://nobody@127.0.0.1:1/none", tmp_path)
    servers.append(server)
    assert server.process.wait(timeout=60) == 1
    output = server.output()
    assert "http cannot start: cannot reach PostgreSQL" in output
    assert "Traceback" not in output
