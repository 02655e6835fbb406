"""The deployment files run as they are written.

Each test reads the command line from the file (systemd's ExecStart,
Supervisor's command=), replaces only the binary (with this venv's fuwad)
and the config path (with the test's INI), runs it against the test
database and shows it running jobs.  The systemd unit also has its
notifications checked on a real AF_UNIX datagram socket, as systemd would
receive them.  The cron line is run in tests/system/test_shared_hosting.py.
"""

from __future__ import annotations

import asyncio
import grp
import configparser
import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from fuwad.config import SECTIONS, Config, load
from fuwad.control.client import ControlClient
from fuwad.manager import QueueManager
from tests.conftest import wait_until
from tests.system.conftest import TESTS_DIR, Daemon, command, write_ini

ROOT = TESTS_DIR.parent
UNIT = ROOT / "systemd" / "fuwafuwa-queue.service"
PROGRAM = ROOT / "supervisor" / "fuwafuwa-queue.conf"
INI = ROOT / "etc" / "fuwad.ini"
PROGRAM_SECTION = "program:fuwafuwa-queue"


def unit_settings() -> dict[str, list[str]]:
    """Return the unit's ``[Service]`` settings: key -> values, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key, [])
    assert len(values) == 1, f"{key}= should be set once, is {values}"
    return values[0]


def defaults() -> Config:
    return load(INI, env={})


def substituted(line: str, ini: Path) -> list[str]:
    """Return ``line`` as argv with this venv's fuwad and ``ini``."""
    argv = shlex.split(line)
    name = Path(argv[0]).name
    assert name in ("fuwad", "fuwactl"), argv
    at = argv.index("--config")
    return [command(name), *argv[1:at + 1], str(ini), *argv[at + 2:]]


def _ensure_group(name: str) -> None:
    """Create the unit's control group if this machine lacks it, as the
    unit's install notes tell an operator to."""
    if not name:
        return
    try:
        grp.getgrnam(name)
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True)


async def _completed(dsn: str, ids: list[int]) -> bool:
    connection = await asyncpg.connect(dsn)
    try:
        done = await connection.fetchval(
            "SELECT count(*) FROM queue_jobs WHERE id = ANY($1) "
            "AND status = 'completed'", ids)
    finally:
        await connection.close()
    return int(done) == len(ids)


# etc/fuwad.ini -------------------------------------------------------------


def test_ini_lists_every_key_of_config_with_its_default() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(INI)
    assert parser.sections() == list(SECTIONS)
    for name, kind in SECTIONS.items():
        written = list(parser[name])
        known = [f.name for f in dataclasses.fields(kind)]
        assert written == known, f"[{name}] keys differ from config.py"
    assert dataclasses.replace(defaults(), source="") == Config()


def test_ini_says_in_a_comment_what_each_key_does() -> None:
    lines = INI.read_text().splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.startswith(";"):
            assert lines[number - 1].startswith("; "), line
        assert len(line) <= 79, line


# systemd -------------------------------------------------------------------


def test_unit_sets_notify_restart_stop_timeout_socket_and_hardening() -> None:
    s = unit_settings()
    q = defaults().queue
    assert one(s, "Type") == "notify"
    assert one(s, "NotifyAccess") == "main"
    assert one(s, "Restart") == "always"
    assert one(s, "KillSignal") == "SIGTERM"
    assert one(s, "KillMode") == "mixed"
    assert float(one(s, "TimeoutStopSec")) > q.graceful_timeout + q.kill_grace
    assert float(one(s, "WatchdogSec")) > 0
    assert one(s, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(s, "RuntimeDirectory") == "fuwad"
    assert one(s, "User") == one(s, "Group") == "fuwad"
    environment = dict(e.split("=", 1) for e in s["Environment"])
    data_dir = environment["FUWAD_DATA_DIR"]
    assert one(s, "ReadWritePaths") == data_dir
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("PrivateDevices", "yes"),
                       ("RestrictSUIDSGID", "yes")):
        assert one(s, key) == value, key
    argv = shlex.split(one(s, "ExecStart"))
    assert argv[1:] == ["run", "--config", "/etc/fuwad/fuwad.ini"]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing; apt-get install systemd")
    # verify checks that the binaries exist: point them at ours.
    text = UNIT.read_text()
    start = one(unit_settings(), "ExecStart")
    copy = tmp_path / UNIT.name
    ours = text.replace(start.split()[0], command("fuwad"))
    post = one(unit_settings(), "ExecStopPost").split()[0]
    copy.write_text(ours.replace(post, command("fuwactl")))
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == "", done.stdout + done.stderr


@dataclasses.dataclass
class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET.

    Read at once as messages arrive, as systemd does: a datagram socket's
    queue is short, and a sender blocks on a full one.
    """

    sock: socket.socket
    seen: list[str]

    def read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            self.seen.extend(data.decode().splitlines())

    async def told(self, message: str) -> bool:
        return message in self.seen


@pytest.fixture
async def notify(tmp_path: Path) -> AsyncIterator[NotifySocket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    made = NotifySocket(sock, [])
    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), made.read)
    yield made
    loop.remove_reader(sock.fileno())
    sock.close()


@pytest.mark.slow
async def test_unit_exec_start_runs_jobs_notifies_reloads_and_stops(
    config: Config, tmp_path: Path, daemon: Daemon, manager: QueueManager,
    dsn: str, notify: NotifySocket,
) -> None:
    s = unit_settings()
    # The socket goes where systemd's RuntimeDirectory= says.
    ini = write_ini(config, tmp_path / "fuwad.ini", control={"socket": ""})
    runtime = tmp_path / "run" / one(s, "RuntimeDirectory")
    runtime.mkdir(parents=True, mode=0o750)
    env = daemon.env() | {
        "NOTIFY_SOCKET": notify.sock.getsockname(),
        "WATCHDOG_USEC": "1000000",
        "RUNTIME_DIRECTORY": str(runtime),
    }
    env.update(e.split("=", 1) for e in s["Environment"]
               if not e.startswith("FUWAD_DATA_DIR="))
    _ensure_group(env.get("FUWAD_CONTROL_GROUP", ""))
    with open(daemon.log_path, "ab") as log:
        daemon.process = subprocess.Popen(
            substituted(one(s, "ExecStart"), ini), stdout=log,
            stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            start_new_session=True)
    await wait_until(lambda: notify.told("READY=1"), timeout=60,
                     message="READY=1")
    await wait_until(lambda: notify.told("WATCHDOG=1"), timeout=30,
                     message="WATCHDOG=1")
    assert any(m.startswith("STATUS=") for m in notify.seen)
    status = ControlClient(runtime / "fuwad.sock", 5.0).request(
        "status")
    assert isinstance(status, dict) and status["workers"]

    ids = [await manager.push(f"u-{i}", "handlers.Record")
           for i in range(50)]
    await wait_until(lambda: _completed(dsn, ids), message="the jobs")

    # ExecReload, with $MAINPID as systemd fills it in.
    reload = [part.replace("$MAINPID", str(daemon.pid))
              for part in shlex.split(one(s, "ExecReload"))]
    assert subprocess.run(reload, timeout=30).returncode == 0
    await wait_until(lambda: _logged(daemon, "supervisor reloading"),
                     message="the reload")
    more = [await manager.push(f"r-{i}", "handlers.Record")
            for i in range(50)]
    await wait_until(lambda: _completed(dsn, more), message="more jobs")
    assert set(daemon.runs().values()) == {1}

    # Stop as systemd does: KillSignal, then wait up to TimeoutStopSec.
    daemon.signal(signal.Signals[one(s, "KillSignal")])
    code = await asyncio.to_thread(daemon.wait_exit,
                                   float(one(s, "TimeoutStopSec")))
    assert code == 0, daemon.log()
    await wait_until(lambda: notify.told("STOPPING=1"), message="STOPPING")
    # ExecStopPost, as systemd runs it after the daemon is gone: with a
    # DSN configured there is no embedded server, and that is no failure.
    after = subprocess.run(substituted(one(s, "ExecStopPost"), ini),
                           env=env, capture_output=True, text=True,
                           timeout=60)
    assert after.returncode == 0, after.stderr
    assert "nothing to stop" in after.stdout


async def _logged(daemon: Daemon, text: str) -> bool:
    return text in daemon.log()


# Supervisor ----------------------------------------------------------------


def program() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(PROGRAM)
    return parser[PROGRAM_SECTION]


def test_program_is_a_numbered_pool_that_stops_gracefully() -> None:
    p = program()
    q = defaults().queue
    assert shlex.split(p["command"])[1:] == [
        "worker", "--config", "/etc/fuwad/fuwad.ini"]
    assert int(p["numprocs"]) >= 2
    assert p["stopsignal"] == "TERM"
    assert int(p["stopwaitsecs"]) > q.graceful_timeout + q.kill_grace
    start = int(p.get("numprocs_start", "0"))
    names = {p["process_name"] % {"program_name": "fuwafuwa-queue",
                                  "process_num": n}
             for n in range(start, start + int(p["numprocs"]))}
    assert len(names) == int(p["numprocs"])
    assert p["autorestart"] == "true"


@pytest.mark.slow
async def test_program_command_runs_a_pool_that_drains_on_stopsignal(
    config: Config, tmp_path: Path, manager: QueueManager, dsn: str,
    daemon: Daemon,
) -> None:
    p = program()
    ini = write_ini(config, tmp_path / "fuwad.ini")
    argv = substituted(p["command"], ini)
    count = int(p["numprocs"])
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for number in range(count):
            with open(tmp_path / f"w{number}.log", "ab") as log:
                processes.append(subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT,
                    env=daemon.env(), cwd=tmp_path, start_new_session=True))

        async def registered() -> bool:
            connection = await asyncpg.connect(dsn)
            try:
                return int(await connection.fetchval(
                    "SELECT count(*) FROM queue_workers WHERE role = "
                    "'worker' AND state IN ('idle', 'busy')")) == count
            finally:
                await connection.close()
        await wait_until(registered, timeout=60, message="the pool")

        ids = [await manager.push(f"p-{i}", "handlers.Record")
               for i in range(100)]
        slow = [await manager.push(f"slow-{i}", "handlers.SleepSync",
                                   {"seconds": 2}) for i in range(count)]
        await wait_until(lambda: _started(daemon, slow),
                         message="the slow jobs started")

        # supervisorctl stop: stopsignal to each, stopwaitsecs to go.
        stopsignal = signal.Signals["SIG" + p["stopsignal"]]
        for process in processes:
            process.send_signal(stopsignal)
        for process in processes:
            code = await asyncio.to_thread(process.wait,
                                           int(p["stopwaitsecs"]))
            assert code == 0
        # The running jobs were finished, not handed back.
        assert await _completed(dsn, ids + slow)
        runs = daemon.runs()
        assert set(runs) == set(ids + slow)
        assert set(runs.values()) == {1}
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


async def _started(daemon: Daemon, ids: list[int]) -> bool:
    runs = daemon.runs()
    return all(runs[i] for i in ids)


# README --------------------------------------------------------------------


def test_readme_quotes_the_files_exactly() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("<!-- section: supervisor -->")[1]
    section = section.split("<!-- end: supervisor -->")[0]
    files = "\n".join(path.read_text() for path in
                      (UNIT, PROGRAM, ROOT / "etc" / "cron.example"))
    blocks = section.split("```")[1::2]
    assert len(blocks) == 3
    for block in blocks:
        for line in block.splitlines()[1:]:
            assert line in files.splitlines(), line
