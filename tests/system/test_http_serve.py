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


SECRET = "fwd_do-not-echo-this-token"
MALFORMED = [
    # A control character in the Authorization header: the parser quotes
    # the whole line, token included, in its own answer.
    (f"GET /api/queue/stats HTTP/1.1\r\nHost: x\r\n"
     f"Authorization: Bearer {SECRET}\x01\r\n\r\n"),
    (f"GET /api/queue/stats HTTP/1.1\r\nHost: x\r\n"
     f"Authorization: Bearer {SECRET}\rx\r\n\r\n"),
    (f"GET /api/queue/stats HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n"
     f"Authorization: Bearer {SECRET}\r\n\r\n"),
    (f"GET /api/queue/stats HTTP/1.1\r\nAuthorization: Bearer {SECRET}\r\n"
     "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
    f"G@T /api/queue/{SECRET} HTTP/1.1\r\nHost: x\r\n\r\n",
    f"GET /api/queue/{SECRET}\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    ("GET /api/queue/stats HTTP/1.1\r\nHost: x\r\nX-Pad: "
     + SECRET * 400 + "\r\n\r\n"),
]


def raw_request(port: int, data: str) -> bytes:
    """Send ``data`` as it is and return the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data.encode("latin-1"))
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_a_request_the_parser_refuses_is_answered_in_the_envelope(
    dsn: str, tmp_path: Path, servers: list[Server],
) -> None:
    server = Server(dsn, tmp_path)
    servers.append(server)
    server.wait_ready()
    request_ids = []
    for data in MALFORMED:
        answer = raw_request(server.port, data)
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].split(" ")[1] == "400", answer[:200]
        headers = {k.lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        assert headers["content-type"].startswith("application/json")
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
        request_id = headers["x-request-id"]
        envelope = json.loads(body)
        assert envelope["success"] is False
        assert envelope["error"].startswith("malformed HTTP request refused")
        assert envelope["error"].endswith(f"request id {request_id}")
        # Nothing the caller sent comes back.
        assert SECRET.encode() not in answer and b"Bearer" not in answer
        request_ids.append(request_id)
    assert server.stop() == 0
    output = server.output()
    assert SECRET not in output and "Traceback" not in output
    # One line in the log for each, under its request id.
    for request_id in request_ids:
        logged = [line for line in output.splitlines() if request_id in line]
        assert len(logged) == 1, output
        assert "http bad request refused" in logged[0]
