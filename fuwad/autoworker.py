"""Shared hosting: ``fuwad worker-auto`` and ``fuwad worker-monitor``.

Some hosts give an application cron and a limit on how long a process may
live, but no systemd unit and no Supervisor.  There workers keep themselves
going:

* ``worker-auto`` runs one worker (role ``auto``) for ``--lifetime``
  seconds.  Shortly before the end it starts its successor, a detached copy
  of itself, keeps claiming until the successor claims too, then drains and
  exits.  Each worker starts at most one successor, so a chain never
  multiplies; if that one fails to start, the chain ends with this worker
  and the monitor starts a new one.  After ``--idle-timeout`` seconds
  without a job the chain ends; the idle time so far travels down the
  chain, so short lives still add up to the timeout.  A lifetime or idle
  timeout of 0 means none.
* ``worker-monitor``, started by cron every minute, keeps ``--min-workers``
  auto workers alive.  One monitor runs at a time: it holds a session-level
  advisory lock on a connection of its own for its whole life, and a second
  monitor finds the lock taken and exits at once.  Every ``--interval``
  seconds it rescues the jobs of dead workers, removes their rows and
  starts workers until the minimum lives.

Claims, outcomes and heartbeats are :mod:`fuwad.worker`'s; this module only
decides when a worker hands over and how many workers to start.  The
advisory lock lives in a database session: a pooler in transaction mode
between the monitor and PostgreSQL would let two monitors run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass

import asyncpg
import uvloop

from fuwad import db, queries
from fuwad import log as fuwad_log
from fuwad.config import Config, with_queue
from fuwad.errors import ConfigError, DatabaseError
from fuwad.states import WorkerState
from fuwad.rescue import rescue_dead
from fuwad.worker import Worker, WorkerOptions, worker_id_for

log = logging.getLogger("fuwad.autoworker")

ROLE = "auto"
# Any fixed number other than migrate.MIGRATION_LOCK; it names the
# monitor's lock among advisory locks.
MONITOR_LOCK = 0x66757762
IDLE_ENV = "FUWAD_AUTO_IDLE_S"  # idle seconds a predecessor hands down
MIN_LIFETIME_S = 2.0
HANDOVER_LEAD_S = 2.0  # a successor starts this long before the end
HANDOVER_WAIT_S = 30.0  # the longest a worker outlives its lifetime
BOOT_TIMEOUT_S = 60.0  # a started worker not registered by then is dropped
MONITOR_MIN_WORKERS = 2
MIN_INTERVAL_S = 0.2
POLL_S = 0.1

TRY_MONITOR_LOCK = "SELECT pg_try_advisory_lock($1)"


# Starting processes ---------------------------------------------------------


def fuwad_command() -> list[str]:
    """Return how to start fuwad again: this script, else ``python -m``."""
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "fuwad" and os.access(script, os.X_OK):
        return [os.path.abspath(script)]
    return [sys.executable, "-m", "fuwad.cli"]


def given_flags() -> argparse.Namespace | None:
    """Return the flags this process was started with, if from ``fuwad``."""
    from fuwad.cli import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(sys.argv[1:])
    except SystemExit:  # not our command line (an embedding program's)
        return None
    if args.command not in ("worker-auto", "worker-monitor"):
        return None
    return args


def worker_argv(config_path: str | None,
                given: argparse.Namespace | None) -> list[str]:
    """Return the command line of a new auto worker.

    It gets the same config file and the same flags this process was given
    (not the values they resolved to), so that an edited INI file reaches
    the next worker in a chain.
    """
    argv = [*fuwad_command(), "worker-auto"]
    if config_path:
        argv += ["--config", os.path.abspath(config_path)]
    if given is None:
        return argv
    for flag, name in (("--log-level", "log_level"), ("--queues", "queues"),
                       ("--concurrency", "concurrency"),
                       ("--lifetime", "lifetime"),
                       ("--idle-timeout", "idle_timeout")):
        value = getattr(given, name, None)
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _child_output() -> int:
    """Return where a detached child writes: our log file, else nowhere.

    A pipe (cron's, which mails what it collects) or a terminal would be
    held open by the child long after we exit, so only a regular file is
    shared.
    """
    try:
        mode = os.fstat(sys.stderr.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return subprocess.DEVNULL
    return sys.stderr.fileno() if stat.S_ISREG(mode) else subprocess.DEVNULL


def spawn_detached(argv: list[str],
                   idle: float = 0.0) -> subprocess.Popen[bytes] | None:
    """Start ``argv`` in a session of its own; None if it cannot start.

    The child outlives us: it has its own session (no signal sent to our
    process group or terminal reaches it) and none of our descriptors but
    the log file.
    """
    env = dict(os.environ)
    env.pop(IDLE_ENV, None)
    if idle > 0:
        env[IDLE_ENV] = f"{idle:.3f}"
    output = _child_output()
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
            env=env, start_new_session=True, close_fds=True)
    except OSError as exc:
        # A shared host may cap the number of processes per user.
        log.error("cannot start a worker error=%s", exc)
        return None


# worker-auto -----------------------------------------------------------------


def _inherited_idle() -> float:
    raw = os.environ.pop(IDLE_ENV, "")
    try:
        idle = float(raw) if raw else 0.0
    except ValueError:
        return 0.0
    return idle if 0 < idle < float("inf") else 0.0


def run_auto(config: Config, dsn: str, config_path: str | None) -> int:
    """Run ``fuwad worker-auto`` until it hands over, idles out or stops."""
    q = config.queue
    lifetime = q.autoscaling_worker_lifetime
    if 0 < lifetime < MIN_LIFETIME_S:
        raise ConfigError(
            f"--lifetime (autoscaling_worker_lifetime) must be 0 or at least "
            f"{MIN_LIFETIME_S:g} seconds, not {lifetime:g}")
    idle_timeout = q.autoscaling_worker_idle_timeout
    worker_config = with_queue(
        config, heartbeat_interval=q.autoscaling_worker_heartbeat_interval)
    options = WorkerOptions(role=ROLE, idle_timeout=idle_timeout or None)
    idle = _inherited_idle()
    argv = worker_argv(config_path, given_flags())

    async def main() -> int:
        worker = Worker(worker_config, dsn, options)
        # The chain's idle time goes on where the predecessor left it.
        worker.last_work -= idle
        hand_over = HandOver(worker, argv, lifetime, idle_timeout)
        task = asyncio.create_task(hand_over.run(), name="hand-over")
        try:
            return await worker.run()
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        code = runner.run(main())
    # As for ``fuwad worker``: a handler thread stuck past its timeout
    # would hold up a normal exit.
    fuwad_log.flush()
    sys.stdout.flush()
    os._exit(code)


class HandOver:
    """Start one successor near the end of a worker's life, then drain.

    The worker claims on until its successor has started its loop (or
    failed, or ``HANDOVER_WAIT_S`` passed), so the queue is never without a
    claiming worker; jobs still running when the worker drains finish in it.
    """

    def __init__(self, worker: Worker, argv: list[str], lifetime: float,
                 idle_timeout: float) -> None:
        self.worker = worker
        self.argv = argv
        self.lifetime = lifetime
        self.idle_timeout = idle_timeout
        self.successor: subprocess.Popen[bytes] | None = None

    async def run(self) -> None:
        if self.lifetime <= 0:
            return
        worker = self.worker
        end = worker.started + self.lifetime
        lead = min(HANDOVER_LEAD_S, self.lifetime / 2)
        await _sleep_until(end - lead)

        # 1. Wait until a successor is worth starting.
        while not self._worth_a_successor(end):
            if worker.draining:
                return  # a signal or the idle timeout: the chain ends here
            await asyncio.sleep(POLL_S)

        # 2. Start exactly one successor.  Never again from this worker,
        # whatever happens to it: that is what keeps a chain single.
        idle = 0.0 if worker.running else time.monotonic() - worker.last_work
        self.successor = spawn_detached(self.argv, idle)
        spawned = time.monotonic()
        if self.successor is not None:
            log.info("successor spawned worker_id=%s successor_id=%s",
                     worker.id, worker_id_for(self.successor.pid))

        # 3. Claim on until the lifetime is over and the successor claims.
        state = "none" if self.successor is None else "starting"
        while True:
            if worker.draining:
                self._stop_unready_successor(state)
                return
            if state == "starting":
                state = await self._successor_state()
                if state == "ready":
                    log.info("successor ready worker_id=%s successor_id=%s "
                             "boot=%.2f", worker.id,
                             worker_id_for(self._successor_pid()),
                             time.monotonic() - spawned)
            now = time.monotonic()
            if now >= end and (state != "starting"
                               or now >= end + HANDOVER_WAIT_S):
                break
            await asyncio.sleep(POLL_S)
        if state == "starting":
            log.error("successor not ready in time worker_id=%s "
                      "successor_id=%s; draining anyway", worker.id,
                      worker_id_for(self._successor_pid()))
        worker.drain("lifetime over" if state == "ready"
                     else f"lifetime over, successor {state}")

    def _worth_a_successor(self, end: float) -> bool:
        """Tell whether to start the successor now.

        Not while draining; and not while idle when the idle timeout will
        end this worker before its lifetime does.
        """
        worker = self.worker
        if worker.draining:
            return False
        if not self.idle_timeout or worker.running:
            return True
        return worker.last_work + self.idle_timeout > end

    def _successor_pid(self) -> int:
        return self.successor.pid if self.successor is not None else 0

    async def _successor_state(self) -> str:
        """Return ``starting``, ``ready`` (its loop runs) or ``failed``."""
        successor = self.successor
        if successor is None:
            return "none"
        code = successor.poll()  # also reaps it, if it died
        if code is not None:
            log.error("successor failed to start worker_id=%s "
                      "successor_id=%s exit_code=%d", self.worker.id,
                      worker_id_for(successor.pid), code)
            return "failed"
        wanted = worker_id_for(successor.pid)
        try:
            rows = await self.worker.pool.fetch(queries.LIST_WORKERS)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                DatabaseError):
            return "starting"
        for row in rows:
            # Its first heartbeat moves it past "starting"; that runs
            # once its claim loop waits on its first claim.
            if row["id"] == wanted and row["state"] != WorkerState.STARTING:
                return "ready"
        return "starting"

    def _stop_unready_successor(self, state: str) -> None:
        """Stop a successor still booting when this worker is told to stop.

        Stopping a worker-auto (SIGTERM, or its idle timeout) should end
        the chain; a successor that already claims is a worker in its own
        right and is left alone.
        """
        successor = self.successor
        if state != "starting" or successor is None:
            return
        if successor.poll() is None:
            log.info("successor stopped before it started worker_id=%s "
                     "successor_id=%s reason=%s", self.worker.id,
                     worker_id_for(successor.pid), self.worker.drain_reason)
            successor.terminate()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# worker-monitor --------------------------------------------------------------


def workers_to_start(minimum: int, live: int, starting: int) -> int:
    """Return how many workers to start to reach ``minimum``."""
    return max(0, minimum - live - starting)


@dataclass(slots=True)
class Started:
    """A worker this monitor started, until it registers or goes."""

    process: subprocess.Popen[bytes]
    at: float  # monotonic
    registered: bool = False
    given_up: bool = False

    @property
    def worker_id(self) -> str:
        return worker_id_for(self.process.pid)


def run_monitor(config: Config, dsn: str, config_path: str | None, *,
                min_workers: int | None = None, interval: float | None = None,
                once: bool = False) -> int:
    """Run ``fuwad worker-monitor``; return the exit code."""
    minimum = MONITOR_MIN_WORKERS if min_workers is None else min_workers
    every = config.queue.worker_monitor_interval if interval is None \
        else interval
    if not once and every < MIN_INTERVAL_S:
        raise ConfigError(
            f"--interval (worker_monitor_interval) must be at least "
            f"{MIN_INTERVAL_S:g} seconds, not {every:g}")
    monitor = Monitor(config, dsn, worker_argv(config_path, given_flags()),
                      minimum, every)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(monitor.run(once))


class Monitor:
    """Keep a minimum of auto workers alive, one monitor at a time."""

    def __init__(self, config: Config, dsn: str, argv: list[str],
                 minimum: int, interval: float) -> None:
        self.config = config
        self.dsn = dsn
        self.argv = argv
        self.minimum = minimum
        self.interval = interval
        self.started: list[Started] = []
        self.passes = 0
        self._stop = asyncio.Event()

    async def run(self, once: bool) -> int:
        try:
            connection = await db.connect(self.dsn)
        except DatabaseError as exc:
            log.error("monitor cannot start error=%s", exc)
            return 1
        try:
            # The lock belongs to this connection's session: it is ours
            # until the connection closes, whichever way we exit.
            if not await connection.fetchval(TRY_MONITOR_LOCK, MONITOR_LOCK):
                log.info("another monitor runs; exiting pid=%d", os.getpid())
                return 0
            log.info("monitor started pid=%d min_workers=%d interval=%g",
                     os.getpid(), self.minimum, self.interval)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._stop.set)
            while True:
                await self.check(connection)
                if once or self._stop.is_set():
                    break
                try:
                    await asyncio.wait_for(self._stop.wait(), self.interval)
                except TimeoutError:
                    pass
            # A monitor that follows us counts only registered workers.
            await self._await_started(connection)
            log.info("monitor stopped pid=%d", os.getpid())
            return 0
        except (OSError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:
            # Without its session the lock is gone too; the next cron
            # start takes over.
            log.error("monitor lost its database connection error=%s", exc)
            return 1
        finally:
            connection.terminate()

    async def check(self, connection: asyncpg.Connection) -> int:
        """Make one pass; return how many workers it started."""
        q = self.config.queue
        self.passes += 1

        # 1. Rescue the jobs of dead workers and remove their rows.
        await self._rescue(connection)

        # 2. Count the live auto workers, and ours still booting.
        rows = await connection.fetch(queries.LIST_WORKERS)
        live = [r for r in rows if r["role"] == ROLE
                and r["state"] != WorkerState.DRAINING
                and r["heartbeat_age"] <= q.worker_cleanup_heartbeat_timeout]
        starting = self._starting({r["id"] for r in rows})

        # 3. Start what is missing.
        count = workers_to_start(self.minimum, len(live), starting)
        for _ in range(count):
            process = spawn_detached(self.argv)
            if process is None:
                break
            self.started.append(Started(process, time.monotonic()))
            log.info("worker spawned worker_id=%s reason=%s",
                     worker_id_for(process.pid),
                     f"{len(live)} live, {starting} starting, "
                     f"{self.minimum} wanted")
        log.debug("monitor pass number=%d live=%d starting=%d started=%d",
                  self.passes, len(live), starting, count)
        return count

    def _starting(self, registered: set[str]) -> int:
        """Reap our exited children; return how many still boot."""
        now = time.monotonic()
        starting = 0
        for entry in list(self.started):
            code = entry.process.poll()
            if code is not None:
                if not entry.registered:
                    log.error("worker failed to start worker_id=%s "
                              "exit_code=%d", entry.worker_id, code)
                self.started.remove(entry)
                continue
            if entry.registered or entry.given_up:
                continue
            if entry.worker_id in registered:
                entry.registered = True
            elif now - entry.at > BOOT_TIMEOUT_S:
                log.warning("worker not registered in %gs, stopped "
                            "worker_id=%s", BOOT_TIMEOUT_S, entry.worker_id)
                entry.given_up = True
                entry.process.terminate()
            else:
                starting += 1
        return starting

    async def _await_started(self, connection: asyncpg.Connection) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            rows = await connection.fetch(queries.LIST_WORKERS)
            if not self._starting({r["id"] for r in rows}):
                return
            await asyncio.sleep(POLL_S)

    async def _rescue(self, connection: asyncpg.Connection) -> int:
        """Rescue the jobs of gone workers and remove their rows."""
        return await rescue_dead(connection, self.config.queue)
