"""Shared hosting: ``fuwad worker-auto`` chains and ``fuwad worker-monitor``.

Every process here is real: auto workers start their successors detached
(each in a session of its own), so the tests find them by what they all
share, the log file on their stderr, and stop them by pid at teardown.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fuwad.config import Config
from fuwad.manager import QueueManager
from tests.conftest import wait_until, wait_until_sync
from tests.system.conftest import (
    TESTS_DIR,
    Daemon,
    command,
    run_entries,
    write_ini,
)

ROOT = TESTS_DIR.parent
CRON_FILE = ROOT / "etc" / "cron.example"

SUCCESSOR = re.compile(
    r"successor spawned worker_id=\S+:(\d+) successor_id=\S+:(\d+)")
SUCCESSOR_READY = re.compile(r"successor ready .* boot=([\d.]+)")
MONITOR_STARTED = re.compile(r"worker spawned worker_id=\S+:(\d+) reason=")
MONITOR_PASS = re.compile(r"monitor pass number=(\d+)")


@dataclass
class Group:
    """The processes of one test: all that write to ``log``."""

    log: Path

    def pids(self) -> list[int]:
        """Return the live processes whose stderr is this test's log."""
        wanted = str(self.log)
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                target = os.readlink(f"/proc/{entry.name}/fd/2")
                state = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            # A zombie has no descriptors left, but be sure.
            if target == wanted and ") Z " not in state:
                found.append(int(entry.name))
        return sorted(found)

    def workers(self) -> list[int]:
        """Return our auto workers, booting (by argv) or running (title)."""
        found = []
        for pid in self.pids():
            line = _cmdline(pid)
            if line.startswith("fuwad: auto worker") or " worker-auto " in line:
                found.append(pid)
        return found

    def monitors(self) -> list[int]:
        """Return our monitors (not the shell cron started them with)."""
        return [pid for pid in self.pids()
                if " worker-monitor " in _cmdline(pid)
                and not _cmdline(pid).startswith("/bin/sh")]

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() \
            else ""

    def stop(self) -> None:
        """Kill every process of ours, until none is left."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    made = Group(tmp_path / "d.log")
    yield made
    made.stop()


async def _rows(dsn: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(
            "SELECT id, pid, role, state FROM queue_workers ORDER BY pid")
    finally:
        await connection.close()


async def _live_auto(dsn: str) -> list[int]:
    return [r["pid"] for r in await _rows(dsn)
            if r["role"] == "auto" and r["state"] in ("idle", "busy")]


async def _completed(dsn: str, ids: list[int]) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(
            "SELECT count(*) FROM queue_jobs WHERE id = ANY($1) "
            "AND status = 'completed'", ids))
    finally:
        await connection.close()


def _successors(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in SUCCESSOR.findall(text)]


def _assert_single_chain(text: str) -> None:
    """Each worker started at most one successor, and none twice over."""
    pairs = _successors(text)
    parents = Counter(parent for parent, _ in pairs)
    children = Counter(child for _, child in pairs)
    assert max(parents.values(), default=1) == 1, pairs
    assert max(children.values(), default=1) == 1, pairs


# worker-auto ---------------------------------------------------------------


@pytest.mark.slow
async def test_worker_auto_hands_over_a_60s_stream_with_no_gap(
    config: Config, daemon: Daemon, group: Group, manager: QueueManager,
    dsn: str,
) -> None:
    interval = 0.1
    seconds = 60.0
    daemon.start("--lifetime", "5", "--idle-timeout", "120",
                 subcommand="worker-auto",
                 queue={"autoscaling_worker_heartbeat_interval": 1.0})
    await wait_until(lambda: _live_auto(dsn), timeout=30,
                     message="the first auto worker")

    # Push one job every 0.1 s for 60 s, watching how many of our
    # processes run at once.
    ids: list[int] = []
    pushed: list[float] = []
    most_processes = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        ids.append(await manager.push(f"s-{len(ids)}", "handlers.Record"))
        pushed.append(time.time())
        most_processes = max(most_processes, len(group.workers()))
        await asyncio.sleep(interval)

    async def all_done() -> bool:
        return await _completed(dsn, ids) == len(ids)
    await wait_until(all_done, timeout=60, message="every job completed")

    # No job lost, none run twice.
    entries = run_entries(daemon.runlog)
    runs = Counter(job for job, *_ in entries)
    assert set(runs) == set(ids)
    assert set(runs.values()) == {1}, "a job ran more than once"

    # The largest gap between two consecutive job starts.
    starts = sorted((at, pid) for _, _, pid, at, _ in entries)
    gaps = [(b[0] - a[0], a[1], b[1]) for a, b in zip(starts, starts[1:])]
    gap, before, after = max(gaps)
    push_gap = max(b - a for a, b in zip(pushed, pushed[1:]))
    text = group.text()
    handovers = _successors(text)
    boots = [float(b) for b in SUCCESSOR_READY.findall(text)]
    pids = {pid for _, pid in starts}
    # Per hand-over: the first job of the new worker after the last of the
    # old one (negative: they overlapped).
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for at, pid in starts:
        first.setdefault(pid, at)
        last[pid] = at
    switch = max((first[child] - last[parent]
                  for parent, child in handovers
                  if parent in last and child in first), default=0.0)
    print(f"\nworker-auto 5 s lifetime, {len(ids)} jobs over {seconds:g} s: "
          f"largest gap between job starts {gap:.3f} s "
          f"(pids {before}->{after}); largest gap between pushes "
          f"{push_gap:.3f} s; {len(handovers)} hand-overs; {len(pids)} "
          f"workers ran jobs; successor boot {min(boots):.2f}.."
          f"{max(boots):.2f} s; at most {most_processes} workers at once; "
          f"largest old-last to new-first job gap {switch:.3f} s")
    assert gap < 1.0 + push_gap, (
        f"a gap of {gap:.3f}s between jobs (pids {before}->{after})")

    # Hand-overs really happened, each worker started one successor at
    # most, and only the chain's workers ran jobs.
    assert len(handovers) >= 8, text[-3000:]
    _assert_single_chain(text)
    chain = {daemon.pid} | {child for _, child in handovers}
    assert pids <= chain
    assert len(pids) >= 8

    # When the dust settles, one worker is left.
    await wait_until(lambda: _one_live(dsn, group), timeout=30,
                     message="exactly one auto worker")


async def _one_live(dsn: str, group: Group) -> bool:
    return len(await _live_auto(dsn)) == 1 and len(group.workers()) == 1


async def test_worker_auto_chain_ends_after_the_idle_timeout(
    config: Config, daemon: Daemon, group: Group, manager: QueueManager,
    dsn: str,
) -> None:
    # A 3 s life and a 5 s idle timeout: the idle time travels down the
    # chain, so it ends although no single worker is idle for 5 s.
    daemon.start("--lifetime", "3", "--idle-timeout", "5",
                 subcommand="worker-auto",
                 queue={"autoscaling_worker_heartbeat_interval": 0.5})
    job = await manager.push("one", "handlers.Record")
    await wait_until(lambda: _completed(dsn, [job]), timeout=30,
                     message="the job")
    assert daemon.wait_exit(30) == 0
    wait_until_sync(lambda: not group.pids(), timeout=30,
                    message="every auto worker gone")
    text = group.text()
    assert text.count("reason=idle timeout") == 1, text
    assert 1 <= len(_successors(text)) <= 4, text
    _assert_single_chain(text)
    assert await _rows(dsn) == []
    assert daemon.runs() == Counter({job: 1})


async def test_worker_auto_sigterm_finishes_its_job_and_starts_no_successor(
    config: Config, daemon: Daemon, group: Group, manager: QueueManager,
    dsn: str,
) -> None:
    daemon.start("--lifetime", "60", subcommand="worker-auto")
    await wait_until(lambda: _live_auto(dsn), timeout=30,
                     message="the auto worker")
    job = await manager.push("slow", "handlers.Sleep", {"seconds": 1})
    wait_until_sync(lambda: daemon.runs()[job], message="the job started")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    assert await _completed(dsn, [job]) == 1
    assert "successor spawned" not in group.text()
    assert not group.pids()
    assert await _rows(dsn) == []


async def test_worker_auto_whose_successor_fails_ends_the_chain_alone(
    config: Config, daemon: Daemon, group: Group, dsn: str,
) -> None:
    daemon.start("--lifetime", "3", subcommand="worker-auto")
    await wait_until(lambda: _live_auto(dsn), timeout=30,
                     message="the auto worker")
    # Each successor reads the INI afresh: a broken one cannot start.
    with open(daemon.ini, "a") as ini:
        ini.write("not_a_key = 1\n")
    assert daemon.wait_exit(60) == 0
    wait_until_sync(lambda: not group.pids(), message="no worker left")
    text = group.text()
    assert "successor failed to start" in text, text
    assert "reason=lifetime over, successor failed" in text, text
    assert len(_successors(text)) == 1, text
    assert await _rows(dsn) == []


def test_worker_auto_refuses_a_lifetime_too_short_to_hand_over(
    config: Config, tmp_path: Path,
) -> None:
    ini = write_ini(config, tmp_path / "a.ini")
    done = subprocess.run(
        [command("fuwad"), "worker-auto", "--config", str(ini),
         "--lifetime", "1"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--lifetime" in lines[0] and "at least 2" in lines[0]
    assert "Traceback" not in done.stderr


# worker-monitor, from the cron line ---------------------------------------


def cron_command() -> str:
    """Return the command of etc/cron.example's one line, for ``sh -c``."""
    lines = [line for line in CRON_FILE.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) == 1, lines
    fields = lines[0].split(None, 5)
    assert fields[:5] == ["*"] * 5, "the monitor should start every minute"
    return fields[5]


@dataclass
class CronHome:
    """A home directory laid out as etc/cron.example expects."""

    home: Path
    env: dict[str, str]

    @property
    def log(self) -> Path:
        return self.home / "fuwad" / "monitor.log"

    def start(self) -> subprocess.Popen[bytes]:
        # Cron runs the line with /bin/sh and a bare environment.
        return subprocess.Popen(["/bin/sh", "-c", cron_command()],
                                env=self.env, start_new_session=True,
                                stdin=subprocess.DEVNULL)


def cron_home(config: Config, tmp_path: Path, daemon: Daemon,
              **changes: dict[str, Any]) -> CronHome:
    """Lay out ~/fuwad/venv/bin/fuwad and ~/fuwad/fuwad.ini for the line.

    Only the two paths the line names are ours (the binary is the venv's
    fuwad, the INI this test's); the line itself runs unchanged.
    """
    home = tmp_path / "home"
    (home / "fuwad" / "venv" / "bin").mkdir(parents=True)
    (home / "fuwad" / "venv" / "bin" / "fuwad").symlink_to(command("fuwad"))
    write_ini(config, home / "fuwad" / "fuwad.ini", **changes)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh",
           "LOGNAME": "fuwad", "LANG": "C.UTF-8",
           # The tests' handlers and their run log.
           "PYTHONPATH": daemon.env()["PYTHONPATH"],
           "FUWAD_TEST_RUNLOG": str(daemon.runlog)}
    return CronHome(home, env)


def _passes(text: str) -> int:
    found = MONITOR_PASS.findall(text)
    return int(found[-1]) if found else 0


@pytest.mark.slow
async def test_two_cron_monitors_keep_exactly_the_minimum(
    config: Config, tmp_path: Path, daemon: Daemon, manager: QueueManager,
    dsn: str,
) -> None:
    cron = cron_home(config, tmp_path, daemon,
                     queue={"worker_monitor_interval": 0.5,
                            "autoscaling_worker_heartbeat_interval": 0.5,
                            "autoscaling_worker_lifetime": 600.0},
                     log={"level": "DEBUG"})
    group = Group(cron.log)
    try:
        await _two_monitors(cron, group, manager, dsn, daemon)
    finally:
        group.stop()


async def _two_monitors(cron: CronHome, group: Group,
                        manager: QueueManager, dsn: str,
                        daemon: Daemon) -> None:
    # Two cron starts at the same moment: one takes the lock, the other
    # says so and exits 0 at once.
    first, second = cron.start(), cron.start()
    refused = wait_until_sync(
        lambda: [p for p in (first, second) if p.poll() is not None],
        timeout=30, message="one monitor refused")
    assert len(refused) == 1 and refused[0].returncode == 0
    assert group.text().count("another monitor runs") == 1
    running = second if refused[0] is first else first

    async def exactly(count: int) -> bool:
        return (len(await _live_auto(dsn)) == count
                and len(group.workers()) == count)

    async def stays(count: int, passes: int = 4) -> None:
        """Exactly ``count`` workers, through several monitor passes."""
        await wait_until(lambda: exactly(count), timeout=30,
                         message=f"exactly {count} auto workers")
        until = _passes(group.text()) + passes
        while _passes(group.text()) < until:
            assert await exactly(count), group.text()[-3000:]
            assert running.poll() is None, group.text()[-3000:]
            await asyncio.sleep(0.1)

    await stays(2)
    assert len(MONITOR_STARTED.findall(group.text())) == 2

    # The workers run jobs.
    ids = [await manager.push(f"c-{i}", "handlers.Record")
           for i in range(20)]
    await wait_until(lambda: _all(dsn, ids), timeout=30,
                     message="the jobs")
    assert set(daemon.runs()) == set(ids)

    # A third start while the monitor runs is refused too.
    third = cron.start()
    assert third.wait(30) == 0
    assert group.text().count("another monitor runs") == 2

    # SIGKILL one worker: the next pass rescues it and starts one more,
    # never two.
    victim = (await _live_auto(dsn))[0]
    os.kill(victim, signal.SIGKILL)
    await wait_until(lambda: _replaced(dsn, victim), timeout=30,
                     message="the killed worker replaced")
    await stays(2)
    text = group.text()
    assert len(MONITOR_STARTED.findall(text)) == 3, text[-3000:]
    assert f"dead worker rescued worker_id={_host_of(text)}:{victim}" in text
    assert victim not in [r["pid"] for r in await _rows(dsn)]

    # SIGTERM stops the monitor; the workers go on without it.
    [monitor] = group.monitors()
    os.kill(monitor, signal.SIGTERM)
    assert running.wait(30) == 0
    assert "monitor stopped" in group.text()
    assert len(group.workers()) == 2


def _host_of(text: str) -> str:
    found = re.search(r"worker started worker_id=(\S+):\d+", text)
    return found.group(1) if found else "?"


async def _all(dsn: str, ids: list[int]) -> bool:
    return await _completed(dsn, ids) == len(ids)


async def _replaced(dsn: str, victim: int) -> bool:
    live = await _live_auto(dsn)
    return victim not in live and len(live) == 2


async def test_monitor_once_starts_the_minimum_and_the_next_starts_none(
    config: Config, tmp_path: Path, daemon: Daemon, dsn: str,
) -> None:
    ini = write_ini(config, tmp_path / "m.ini",
                    queue={"autoscaling_worker_lifetime": 600.0},
                    log={"level": "DEBUG"})
    log_path = tmp_path / "once.log"
    group = Group(log_path)
    argv = [command("fuwad"), "worker-monitor", "--config", str(ini),
            "--min-workers", "1", "--once"]
    try:
        for _ in range(2):
            with open(log_path, "ab") as handle:
                done = subprocess.run(argv, stdout=handle, stderr=handle,
                                      env=daemon.env(), timeout=90,
                                      start_new_session=True)
            assert done.returncode == 0, group.text()
            # --once waits until what it started has registered.
            assert len(await _live_auto(dsn)) == 1, group.text()
        text = group.text()
        assert len(MONITOR_STARTED.findall(text)) == 1, text
        assert "live=1 starting=0 started=0" in text
        assert len(group.workers()) == 1
    finally:
        group.stop()


def test_cron_line_is_one_every_minute_monitor_with_its_log() -> None:
    argv = shlex.split(cron_command())
    assert argv[0] == "$HOME/fuwad/venv/bin/fuwad"
    assert argv[1] == "worker-monitor"
    assert argv[argv.index("--config") + 1] == "$HOME/fuwad/fuwad.ini"
    assert argv[argv.index("--min-workers") + 1] == "2"
    assert argv[-3:] == [">>", "$HOME/fuwad/monitor.log", "2>&1"]
