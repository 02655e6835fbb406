"""Fixtures that start the real daemon: ``fuwad run`` as a subprocess.

The daemon gets an INI file written from the test's ``config``; handler
modules come from ``tests/`` (on PYTHONPATH), and every handler run is
appended to a run log the test can read.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fuwad.config import SECTIONS, Config
from fuwad.control.client import ControlClient
from fuwad.errors import FuwadError

TESTS_DIR = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent


def command(name: str) -> str:
    """Return the path of an installed console script (fuwad, fuwactl)."""
    beside = BIN_DIR / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; pip install -e '.[test]'")
    return found


def write_ini(config: Config, path: Path, **changes: dict[str, Any]) -> Path:
    """Write ``config`` (with per-section ``changes``) as an INI file."""
    lines = []
    for section in SECTIONS:
        values = dataclasses.asdict(getattr(config, section))
        values.update(changes.get(section, {}))
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            lines.append(f"{key} = {value}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def run_entries(path: Path) -> list[tuple[int, int, int, float, str]]:
    """Return (job id, attempt, pid, time, note) for each logged run."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            note = parts[4] if len(parts) > 4 else ""
            entries.append((int(parts[0]), int(parts[1]), int(parts[2]),
                            float(parts[3]), note))
    return entries


def run_log(path: Path) -> Counter[int]:
    """Count how many times each job id ran, from the run log."""
    if not path.exists():
        return Counter()
    counts: Counter[int] = Counter()
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and (len(parts) < 5 or parts[4] != "end"):
            counts[int(parts[0])] += 1
    return counts


class Daemon:
    """One ``fuwad`` process started by a test, with its log and socket."""

    def __init__(self, config: Config, workdir: Path, name: str = "d",
                 extra_env: dict[str, str] | None = None) -> None:
        self.config = config
        self.extra_env = dict(extra_env or {})
        self.workdir = workdir
        self.name = name
        self.ini = workdir / f"{name}.ini"
        self.log_path = workdir / f"{name}.log"
        self.runlog = workdir / "runs.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the daemon was not started")
        return self.process.pid

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS_DIR)] + [p for p in [env.get("PYTHONPATH")] if p])
        env["FUWAD_TEST_RUNLOG"] = str(self.runlog)
        for key in ("FUWAD_DSN", "FUWAD_CONFIG", "FUWAD_DATA_DIR"):
            env.pop(key, None)
        env.update(self.extra_env)
        return env

    def start(self, *args: str, subcommand: str = "run",
              **changes: dict[str, Any]) -> Daemon:
        write_ini(self.config, self.ini, **changes)
        handle = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [command("fuwad"), subcommand, "--config", str(self.ini), *args],
            stdout=handle, stderr=subprocess.STDOUT, env=self.env(),
            cwd=self.workdir, start_new_session=True,
        )
        handle.close()
        return self

    def client(self, timeout: float = 5.0) -> ControlClient:
        return ControlClient(self.config.socket_path(), timeout)

    def status(self) -> dict[str, Any] | None:
        try:
            answer = self.client().request("status")
        except FuwadError:
            return None
        return answer if isinstance(answer, dict) else None

    def wait_ready(self, workers: int = 1, timeout: float = 30.0) -> None:
        """Wait until ``workers`` workers report ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"daemon exited early:\n{self.tail()}")
            status = self.status()
            if status is not None:
                ready = [w for w in status["workers"]
                         if w["state"] in ("idle", "busy")]
                if len(ready) >= workers:
                    return
            time.sleep(0.05)
        pytest.fail(f"daemon not ready in {timeout}s:\n{self.tail()}")

    def workers(self) -> list[dict[str, Any]]:
        status = self.status()
        return [] if status is None else list(status["workers"])

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = 60.0) -> int:
        if self.process is None:
            raise RuntimeError("the daemon was not started")
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daemon did not exit in {timeout}s:\n{self.tail()}")

    def log(self) -> str:
        """Return everything the daemon logged so far."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def tail(self) -> str:
        """Return the end of the log, for a failing test's message."""
        return self.log()[-6000:]

    def runs(self) -> Counter[int]:
        return run_log(self.runlog)

    def kill_all(self) -> None:
        """Kill the daemon's whole process group (test cleanup only)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)


@pytest.fixture
def daemons(config: Config, tmp_path: Path) -> Iterator[list[Daemon]]:
    """Daemons a test starts; each is stopped for good at teardown."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill_all()


@pytest.fixture
def daemon(config: Config, tmp_path: Path,
           daemons: list[Daemon]) -> Daemon:
    """A daemon not yet started: call ``start()`` with the flags wanted."""
    made = Daemon(config, tmp_path)
    daemons.append(made)
    return made
