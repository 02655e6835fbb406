"""fuwactl's process commands and the control socket against ``fuwad run``.

The daemon is the real one (``tests/system/conftest.py``); fuwactl runs as
the installed console script with the daemon's INI file.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from fuwad.config import Config
from fuwad.control.client import ControlClient
from fuwad.control.protocol import decode_answer
from fuwad.db import redact
from fuwad.errors import ControlError
from tests.conftest import wait_until_sync
from tests.control_harness import ping_as
from tests.system.conftest import Daemon, command

pytestmark = pytest.mark.slow

CALL_TIMEOUT_S = 60


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def fuwactl(daemon: Daemon, *args: str) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUWAD_")}
    done = subprocess.run(
        [command("fuwactl"), "--config", str(daemon.ini), *args],
        capture_output=True, text=True, env=env, timeout=CALL_TIMEOUT_S,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


def ready_pids(daemon: Daemon) -> list[int]:
    return [w["pid"] for w in daemon.workers()
            if w["state"] in ("idle", "busy")]


def test_fuwactl_steers_the_daemon_through_each_command(
    daemon: Daemon,
) -> None:
    daemon.start("--workers", "2")
    daemon.wait_ready(workers=2)

    status = fuwactl(daemon, "status")
    assert status.code == 0, status.err
    assert str(daemon.pid) in status.out
    assert "monitor" in status.out and "running" in status.out
    data = fuwactl(daemon, "--json", "status").json()
    assert data["pid"] == daemon.pid
    assert data["config_file"] == str(daemon.ini)
    assert data["database"] == redact(daemon.config.database.dsn)

    workers = fuwactl(daemon, "--json", "workers").json()
    assert len(workers) == 2
    table = fuwactl(daemon, "workers").out.splitlines()
    assert table[0].split()[:3] == ["INDEX", "PID", "STATE"]
    assert len(table) == 3

    assert fuwactl(daemon, "scale", "3").code == 0
    wait_until_sync(lambda: len(ready_pids(daemon)) == 3,
                    message="a third worker")
    refused = fuwactl(daemon, "scale", "300")
    assert refused.code == 1
    assert refused.err.startswith("fuwactl: cannot scale to 300")
    assert fuwactl(daemon, "scale", "-1").code == 2

    assert fuwactl(daemon, "monitor", "stop").code == 0
    wait_until_sync(lambda: daemon.workers() == [],
                    message="every worker drained")
    assert fuwactl(daemon, "monitor", "running").out == "stopped\n"
    assert fuwactl(daemon, "ping").code == 0  # still up for commands
    assert fuwactl(daemon, "monitor", "start").code == 0
    wait_until_sync(lambda: len(ready_pids(daemon)) == 3,
                    message="the pool back after monitor start")
    assert fuwactl(daemon, "--json", "monitor", "running").json() == {
        "running": True}

    level = fuwactl(daemon, "log-level", "debug")
    assert (level.code, level.out) == (0, "log level is now DEBUG\n")

    before = set(ready_pids(daemon))
    assert fuwactl(daemon, "reload").code == 0
    wait_until_sync(
        lambda: len(ready_pids(daemon)) == 3
        and not before & set(ready_pids(daemon)),
        message="every worker rolled after reload")

    done = fuwactl(daemon, "shutdown", "--graceful-timeout", "5", "--wait")
    assert (done.code, done.out) == (0, "the daemon has stopped\n")
    assert daemon.wait_exit() == 0
    assert not daemon.config.socket_path().exists()
    gone = fuwactl(daemon, "status")
    assert gone.code == 3
    assert str(daemon.config.socket_path()) in gone.err
    assert "fuwad run" in gone.err


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory anyone may enter, so only the daemon's checks decide."""
    path = Path(tempfile.mkdtemp(prefix="fuwad-sys-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _daemon_at(config: Config, socket_path: Path, workdir: Path,
               daemons: list[Daemon], name: str = "d") -> Daemon:
    moved = replace(config,
                    control=replace(config.control, socket=str(socket_path)))
    made = Daemon(moved, workdir, name)
    daemons.append(made)
    return made


def test_daemon_socket_withstands_crowds_garbage_and_strangers(
    config: Config, tmp_path: Path, open_dir: Path, daemons: list[Daemon]
) -> None:
    path = open_dir / "fuwad.sock"
    daemon = _daemon_at(config, path, tmp_path, daemons)
    daemon.start("--workers", "1")
    daemon.wait_ready(workers=1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660

    # 100 clients at once, every one answered.
    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(
            lambda _: ControlClient(path, 30).request("status"), range(100)))
    assert all(a["pid"] == daemon.pid for a in answers)

    # 10 MB of garbage on one line: refused, and the daemon serves on.
    garbage = os.urandom(10 * 1024 * 1024).replace(b"\n", b"x")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        try:
            sock.sendall(garbage)
        except (BrokenPipeError, ConnectionResetError):
            pass
        line = b""
        while not line.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, "closed without an answer"
            line += chunk
        answer = decode_answer(line[:-1])
        assert not answer.ok and "longer than" in answer.error
    assert daemon.client().request("ping")["pid"] == daemon.pid

    # A stranger: first the file's mode keeps it out, then (with the file
    # opened to all) the peer check does, and the daemon logs it.
    if os.geteuid() != 0:
        pytest.skip("the stranger part needs root to become nobody")
    nobody = pwd.getpwnam("nobody")
    result = ping_as(path, nobody.pw_uid, nobody.pw_gid)
    assert result.startswith("ControlError: permission denied"), result
    os.chmod(path, 0o666)
    result = ping_as(path, nobody.pw_uid, nobody.pw_gid)
    assert result.startswith("ControlError: nobody may not use"), result
    wait_until_sync(lambda: f"refused uid={nobody.pw_uid}" in daemon.log(),
                    message="the refusal in the daemon's log")
    assert fuwactl(daemon, "--json", "ping").json()["pid"] == daemon.pid


def test_crashed_daemons_socket_is_recovered_and_a_live_one_kept(
    config: Config, tmp_path: Path, daemons: list[Daemon]
) -> None:
    first = _daemon_at(config, tmp_path / "fuwad.sock", tmp_path, daemons,
                       "first")
    first.start("--workers", "1")
    first.wait_ready(workers=1)

    # A second daemon on the live socket refuses to start.
    second = _daemon_at(config, tmp_path / "fuwad.sock", tmp_path, daemons,
                        "second")
    second.start("--workers", "1")
    assert second.wait_exit() == 1
    assert f"(pid {first.pid}) already listens" in second.log()
    assert first.client().request("ping")["pid"] == first.pid

    # The first dies without cleaning up: its socket file stays behind.
    first.kill_all()
    assert (tmp_path / "fuwad.sock").exists()
    assert fuwactl(first, "status").code == 3

    third = _daemon_at(config, tmp_path / "fuwad.sock", tmp_path, daemons,
                       "third")
    third.start("--workers", "1")
    third.wait_ready(workers=1)
    assert third.client().request("ping")["pid"] == third.pid
    assert "stale, replaced" in third.log()
    with pytest.raises(ControlError, match="unknown command"):
        third.client().request("explode")
    third.signal(signal.SIGTERM)
    assert third.wait_exit() == 0
