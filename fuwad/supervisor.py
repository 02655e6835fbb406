"""The supervisor: forks workers, watches them, replaces the dead.

One process per host or service unit, single-threaded and synchronous: a
selectors loop that waits for a signal, a worker's report or a control
client, then reaps, takes a snapshot, asks :func:`fuwad.policy.plan` what
to do and does it.  It never touches the database after start-up and runs
no threads, so forking is always safe: the database work a death calls for
(rescuing the dead worker's jobs) is handed to a living worker over its
link, or to the replacement, which gets the order as soon as it boots.

Signals only record; the loop turns SIGTERM and SIGINT into a drain, SIGQUIT
into a stop now, SIGHUP into reload and roll, SIGTTIN and SIGTTOU into one
worker more or less, and SIGCHLD into a reap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import uvloop

from fuwad import __version__, db, policy, proc
from fuwad import log as fuwad_log
from fuwad.config import Config, load
from fuwad.control.server import ControlServer
from fuwad.errors import ConfigError, FuwadError
from fuwad.policy import ChildView, RunningJob, Snapshot
from fuwad.rescue import rescue_worker
from fuwad.worker import (EXIT_BOOT_FAILED, EXIT_RECYCLE, Worker,
                          WorkerOptions, worker_id_for)

log = logging.getLogger("fuwad.supervisor")

TICK_S = 0.5
LINK_LINE_MAX = 65536


@dataclass(slots=True)
class Rescue:
    """Jobs of a dead worker that a living one must hand back."""

    worker_id: str
    reason: str
    timed_out: dict[int, str] = field(default_factory=dict)
    sent_to: int | None = None


@dataclass(slots=True)
class Child:
    """One worker process, as the supervisor tracks it."""

    pid: int
    index: int
    generation: int
    link: socket.socket
    started: float
    ready: bool = False
    jobs: dict[int, RunningJob] = field(default_factory=dict)
    retiring: str = ""
    stop_sent: float | None = None
    kill_sent: float | None = None
    timed_out: dict[int, str] = field(default_factory=dict)
    idle_since: float | None = None
    jobs_done: int = 0
    inbox: bytearray = field(default_factory=bytearray)

    @property
    def worker_id(self) -> str:
        return worker_id_for(self.pid)

    def view(self) -> ChildView:
        return ChildView(
            pid=self.pid, generation=self.generation, started=self.started,
            ready=self.ready, jobs=tuple(self.jobs.values()),
            retiring=bool(self.retiring), stop_sent=self.stop_sent,
            kill_sent=self.kill_sent, idle_since=self.idle_since,
        )


class Supervisor:
    """The daemon's main process.  Make it, then call :meth:`run`."""

    def __init__(self, config: Config, dsn: str, *,
                 overrides: Mapping[str, Any] | None = None,
                 workers: int | None = None) -> None:
        self.config = config
        self.dsn = dsn
        self.overrides = dict(overrides or {})
        q = config.queue
        self.fixed = workers is not None
        self.target = workers if workers is not None else q.workers
        self.initial_target = self.target
        self.autoscale = not self.fixed and q.min_workers < q.max_workers
        self.generation = 0
        self.children: dict[int, Child] = {}
        self.http_pid: int | None = None
        self.rescuer_pid: int | None = None
        self.rescuer_not_before = 0.0
        self.http_not_before = 0.0
        self.rescues: list[Rescue] = []
        self.started = time.monotonic()
        self.draining = False
        self.drain_deadline: float | None = None
        self.monitor_running = True
        self.spawn_not_before = 0.0
        self.crash_streak = 0
        self.last_scaled = 0.0
        self.backlog = 0
        self.totals = {"spawned": 0, "died": 0, "jobs_done": 0,
                       "rescued": 0}
        self.selector = selectors.DefaultSelector()
        self._signals: list[int] = []
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._next_watchdog = 0.0
        self._last_status = ""
        self._control: ControlServer | None = None

    # The loop ----------------------------------------------------------------

    def run(self) -> int:
        """Supervise until drained; return the exit code."""
        self._install_signals()
        proc.set_title(f"fuwad: supervisor {self._status_line()}")
        try:
            self._open_control()
        except FuwadError as exc:
            log.critical("cannot start: %s", exc)
            return 1
        log.info("supervisor started pid=%d workers=%d version=%s",
                 os.getpid(), self.target, __version__)
        self._start_http()
        notified_ready = False
        while True:
            self._wait()
            self._handle_signals()
            self._reap()
            now = time.monotonic()
            actions = policy.plan(self._snapshot(now), now)
            if any(isinstance(a, policy.Finish) for a in actions):
                break
            self._apply(actions, now)
            self._deliver_rescues(now)
            self._keep_http(now)
            if self._control is not None:
                self._control.tick()
            if not notified_ready and any(c.ready for c in
                                          self.children.values()):
                notified_ready = True
                proc.sd_notify("READY=1")
            self._tell_systemd(now)
        return self._finish()

    def _wait(self) -> None:
        for key, mask in self.selector.select(TICK_S):
            callback: Callable[[Any, int], None] = key.data
            callback(key.fileobj, mask)

    def _finish(self) -> int:
        proc.sd_notify("STOPPING=1")
        self._stop_http()
        if self._control is not None:
            self._control.close()
        left = [r for r in self.rescues]
        if left:
            # No more forks from here on, so an event loop (and any thread
            # it starts) is safe now.
            asyncio.run(self._rescue_directly(left))
        log.info("supervisor stopped pid=%d", os.getpid())
        return 0

    # Signals -------------------------------------------------------------

    def _install_signals(self) -> None:
        self._wakeup_w.setblocking(False)
        self._wakeup_r.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                       signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
                       signal.SIGCHLD):
            signal.signal(signum, self._record_signal)
        self.selector.register(self._wakeup_r, selectors.EVENT_READ,
                               self._drain_wakeups)

    def _record_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    def _drain_wakeups(self, sock: socket.socket, _mask: int) -> None:
        try:
            while sock.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self) -> None:
        pending, self._signals = self._signals, []
        for signum in pending:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.begin_drain(signal.Signals(signum).name)
            elif signum == signal.SIGQUIT:
                self.stop_now()
            elif signum == signal.SIGHUP:
                try:
                    self.reload()
                except ConfigError:
                    pass  # logged where it was refused
            elif signum == signal.SIGTTIN:
                self._nudge(+1, "SIGTTIN")
            elif signum == signal.SIGTTOU:
                self._nudge(-1, "SIGTTOU")

    def _nudge(self, step: int, reason: str) -> None:
        count = self.target + step
        if 1 <= count <= self.scale_limit():
            self.scale(count, reason)
        else:
            log.warning("%s ignored: workers=%d is the limit", reason,
                        self.target)

    # Steering, from signals and the control socket ---------------------------

    def begin_drain(self, reason: str,
                    graceful_timeout: float | None = None) -> None:
        """Stop claiming everywhere; give running jobs time, then stop."""
        if self.draining:
            return
        grace = (self.config.queue.graceful_timeout
                 if graceful_timeout is None else graceful_timeout)
        self.draining = True
        self.drain_deadline = time.monotonic() + grace + \
            self.config.queue.kill_grace
        log.info("supervisor draining reason=%s graceful_timeout=%g",
                 reason, grace)
        proc.sd_notify(f"STOPPING=1\nSTATUS=draining ({reason})")
        self._stop_http()

    def stop_now(self) -> None:
        """SIGQUIT: every worker hands its jobs back and exits at once."""
        log.warning("supervisor stopping now")
        self.begin_drain("SIGQUIT", graceful_timeout=0.0)
        for child in self.children.values():
            proc.send(child.pid, signal.SIGQUIT)
            child.stop_sent = child.stop_sent or time.monotonic()
            child.retiring = "stop now"

    def reload(self) -> None:
        """Re-read the configuration and roll every worker, one by one.

        A configuration that does not load is refused with ConfigError,
        and the old one stays in force.
        """
        try:
            fresh = load(self.config.source or None, overrides=self.overrides)
        except ConfigError as exc:
            log.error("reload refused, keeping the old configuration: %s", exc)
            raise ConfigError(
                f"reload refused, the old configuration stays: {exc}"
            ) from None
        self.config = fresh
        fuwad_log.set_level(fresh.log.level)
        if not self.fixed:
            q = fresh.queue
            self.autoscale = q.min_workers < q.max_workers
            self.target = min(max(self.target, q.min_workers), q.max_workers)
        self.generation += 1
        # A new configuration may be the fix for a crash loop: try at once.
        self.crash_streak = 0
        self.spawn_not_before = 0.0
        log.info("supervisor reloading generation=%d workers=%d",
                 self.generation, self.target)

    def scale_limit(self) -> int:
        """Return the most workers this daemon may run."""
        return max(self.config.queue.max_workers, self.initial_target)

    def scale(self, count: int, reason: str) -> None:
        """Keep ``count`` workers from now on."""
        limit = self.scale_limit()
        if count < 0 or count > limit:
            raise ConfigError(
                f"cannot scale to {count} workers; this daemon runs 0 to "
                f"{limit} ([queue] max_workers): raise max_workers and "
                "reload to go higher")
        if count != self.target:
            log.info("supervisor scaling workers=%d previous=%d reason=%s",
                     count, self.target, reason)
        self.target = count
        self.last_scaled = time.monotonic()

    def cancel(self, job_id: int) -> bool:
        """Stop job ``job_id`` where it runs here; True if it ran here."""
        for child in self.children.values():
            if job_id in child.jobs:
                self._order(child, {"cmd": "cancel", "job": job_id})
                return True
        return False

    # Reaping and rescue --------------------------------------------------

    def _reap(self) -> None:
        now = time.monotonic()
        for ended in proc.reap():
            if ended.pid == self.http_pid:
                self._http_ended(ended, now)
                continue
            if ended.pid == self.rescuer_pid:
                self._rescuer_ended(ended, now)
                continue
            child = self.children.pop(ended.pid, None)
            if child is not None:
                # Its last reports ("ready", "start") may still wait in the
                # link: read them before judging the death.
                self._read_link(child)
            if child is None:
                log.warning("stranger reaped pid=%d %s", ended.pid,
                            ended.describe())
                continue
            self._forget(child)
            self.totals["died"] += 1
            self._judge_death(child, ended, now)
            # A SIGKILL of our own is no sign of memory trouble.
            told = ended.describe(oom_hint=child.kill_sent is None)
            reason = f"worker {child.worker_id} {told}"
            timed_out = dict(child.timed_out)
            self.rescues.append(Rescue(child.worker_id,
                                       f"{reason} while running this job",
                                       timed_out))
            for rescue in self.rescues:
                if rescue.sent_to == child.pid:
                    rescue.sent_to = None  # it died first: send it again

    def _judge_death(self, child: Child, ended: proc.Exit,
                     now: float) -> None:
        """Log the death at its level and feed the crash-loop backoff."""
        what = ended.describe(oom_hint=child.kill_sent is None)
        asked = child.stop_sent is not None
        if ended.code == EXIT_RECYCLE or (asked and ended.code == 0):
            log.info("worker exited pid=%d %s reason=%s", child.pid, what,
                     child.retiring or "recycled")
            self.crash_streak = 0
            return
        if asked and child.kill_sent is not None:
            log.error("worker killed pid=%d reason=%s", child.pid,
                      child.retiring)
            return
        # Only a worker that dies before it is ready feeds the backoff: one
        # killed mid-job after a good start is replaced at once.
        quick = now - child.started < policy.QUICK_DEATH_S and not child.ready
        if quick or ended.code == EXIT_BOOT_FAILED:
            self.crash_streak += 1
            delay = policy.spawn_delay(self.crash_streak)
            self.spawn_not_before = now + delay
            log.error("worker crash loop pid=%d %s streak=%d "
                      "next_spawn_in=%.1fs; check the worker's log above",
                      child.pid, what, self.crash_streak, delay)
        else:
            self.crash_streak = 0
            log.error("worker died pid=%d %s", child.pid, what)

    def _deliver_rescues(self, now: float) -> None:
        """Hand each waiting rescue to a worker, or to a rescuer process."""
        waiting = [r for r in self.rescues if r.sent_to is None]
        if not waiting:
            return
        couriers = [c for c in self.children.values()
                    if c.ready and c.stop_sent is None]
        for rescue in waiting:
            if not couriers:
                break
            courier = couriers[len(rescue.worker_id) % len(couriers)]
            order = {"cmd": "rescue", "worker_id": rescue.worker_id,
                     "reason": rescue.reason,
                     "timed_out": {str(k): v
                                   for k, v in rescue.timed_out.items()}}
            if self._order(courier, order):
                rescue.sent_to = courier.pid
        left = [r for r in self.rescues if r.sent_to is None]
        if left and self.rescuer_pid is None and not self.draining \
                and now >= self.rescuer_not_before:
            self._spawn_rescuer(left)

    def _spawn_rescuer(self, rescues: list[Rescue]) -> None:
        """Fork a short-lived process that rescues at once.

        For when no worker is ready to carry the rescue (the only one died,
        or the rest wait out a crash-loop backoff): the jobs must not wait
        for a respawn.
        """
        def run() -> int:
            proc.set_title("fuwad: rescuer")
            return asyncio.run(self._rescue_directly(rescues))

        self.rescuer_pid = proc.fork(run, keep={1, 2})
        for rescue in rescues:
            rescue.sent_to = self.rescuer_pid
        log.debug("rescuer spawned pid=%d rescues=%d", self.rescuer_pid,
                  len(rescues))

    def _rescuer_ended(self, ended: proc.Exit, now: float) -> None:
        pid, self.rescuer_pid = ended.pid, None
        done = ended.code == 0
        if not done:
            log.error("rescuer failed pid=%d %s; trying again in 1s", pid,
                      ended.describe())
            self.rescuer_not_before = now + 1.0
        kept = []
        for rescue in self.rescues:
            if rescue.sent_to == pid:
                if done:
                    continue
                rescue.sent_to = None
            kept.append(rescue)
        self.rescues = kept

    async def _rescue_directly(self, rescues: list[Rescue]) -> int:
        """Rescue from this process; return 0 on success, 1 on failure."""
        try:
            connection = await db.connect(self.dsn)
        except FuwadError as exc:
            log.error("rescue failed error=%s", exc)
            return 1
        try:
            for r in rescues:
                await rescue_worker(connection, self.config.queue,
                                    r.worker_id, r.reason, r.timed_out)
        except (OSError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:
            log.error("rescue failed error=%s", exc)
            return 1
        finally:
            await connection.close()
        return 0

    # Planning and acting ---------------------------------------------------

    def _snapshot(self, now: float) -> Snapshot:
        q = self.config.queue
        target = self.target if self.monitor_running else 0
        return Snapshot(
            workers=tuple(c.view() for c in self.children.values()),
            target=target, generation=self.generation,
            draining=self.draining, drain_deadline=self.drain_deadline,
            spawn_not_before=self.spawn_not_before, kill_grace=q.kill_grace,
            stop_timeout=q.graceful_timeout + q.kill_grace,
            concurrency=q.concurrency, backlog=self.backlog,
            autoscale=self.autoscale and self.monitor_running,
            min_workers=q.min_workers, max_workers=q.max_workers,
            scale_idle_s=q.scale_idle_seconds, last_scaled=self.last_scaled,
        )

    def _apply(self, actions: list[policy.Action], now: float) -> None:
        for action in actions:
            if isinstance(action, policy.Spawn):
                self._spawn(action.reason)
            elif isinstance(action, policy.Stop):
                self._stop(action, now)
            elif isinstance(action, policy.Kill):
                child = self.children.get(action.pid)
                if child is not None and child.kill_sent is None:
                    log.error("worker kill pid=%d reason=%s", action.pid,
                              action.reason)
                    child.kill_sent = now
                    child.retiring = child.retiring or action.reason
                    proc.send(action.pid, signal.SIGKILL)
            elif isinstance(action, policy.ScaleTo):
                self.scale(action.count, action.reason)

    def _stop(self, action: policy.Stop, now: float) -> None:
        child = self.children.get(action.pid)
        if child is None or child.stop_sent is not None:
            return
        for job in action.timed_out:
            child.timed_out[job.job_id] = (
                f"JobTimeout: job timed out after {job.timeout:g} seconds "
                f"(worker {child.worker_id} stopped)")
        level = logging.WARNING if action.timed_out else logging.INFO
        log.log(level, "worker stop pid=%d reason=%s", child.pid,
                action.reason)
        child.retiring = action.reason
        child.stop_sent = now
        proc.send(child.pid, signal.SIGTERM)

    def _spawn(self, reason: str) -> None:
        index = self._free_index()
        parent_end, child_end = socket.socketpair()
        config, dsn = self.config, self.dsn
        options = WorkerOptions(
            index=index, supervisor_pid=os.getpid(),
            max_jobs=config.queue.max_jobs_per_worker,
            max_memory_mb=config.queue.max_worker_memory_mb,
        )

        def run() -> int:
            parent_end.detach()  # proc.fork closed it; forget it quietly
            worker = Worker(config, dsn, options, link=child_end)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(worker.run())

        pid = proc.fork(run, keep={child_end.fileno(), 2, 1})
        child_end.close()
        parent_end.setblocking(False)
        child = Child(pid=pid, index=index, generation=self.generation,
                      link=parent_end, started=time.monotonic(),
                      idle_since=time.monotonic())
        self.children[pid] = child
        self.selector.register(parent_end, selectors.EVENT_READ,
                               self._reader(child))
        self.totals["spawned"] += 1
        log.info("worker spawned pid=%d index=%d reason=%s", pid, index,
                 reason)

    def _free_index(self) -> int:
        used = {c.index for c in self.children.values()}
        index = 1
        while index in used:
            index += 1
        return index

    def _forget(self, child: Child) -> None:
        try:
            self.selector.unregister(child.link)
        except (KeyError, ValueError):
            pass
        child.link.close()

    # The links ---------------------------------------------------------------

    def _reader(self, child: Child) -> Callable[[socket.socket, int], None]:
        def on_readable(_sock: socket.socket, _mask: int) -> None:
            self._read_link(child, once=True)
        return on_readable

    def _read_link(self, child: Child, once: bool = False) -> None:
        """Read and act on what ``child`` reported, without blocking."""
        while True:
            try:
                data = child.link.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._forget_link(child)
                return
            child.inbox += data
            while b"\n" in child.inbox:
                line, _, rest = bytes(child.inbox).partition(b"\n")
                child.inbox = bytearray(rest)
                self._on_report(child, line)
            if len(child.inbox) > LINK_LINE_MAX:
                log.error("worker link flooded pid=%d", child.pid)
                child.inbox.clear()
            if once:
                return

    def _forget_link(self, child: Child) -> None:
        try:
            self.selector.unregister(child.link)
        except (KeyError, ValueError):
            pass

    def _on_report(self, child: Child, line: bytes) -> None:
        try:
            event = json.loads(line)
            kind = event["e"]
        except (ValueError, KeyError, TypeError):
            log.error("bad report from worker pid=%d", child.pid)
            return
        now = time.monotonic()
        if kind == "ready":
            child.ready = True
            log.debug("worker ready pid=%d", child.pid)
        elif kind == "start":
            timeout = float(event["timeout"])
            child.jobs[int(event["job"])] = RunningJob(
                int(event["job"]), str(event["class"]), timeout,
                now + timeout)
            child.idle_since = None
        elif kind == "end":
            if child.jobs.pop(int(event["job"]), None) is not None:
                child.jobs_done += 1
                self.totals["jobs_done"] += 1
            if not child.jobs:
                child.idle_since = now
        elif kind == "rescued":
            done = str(event["worker_id"])
            self.rescues = [r for r in self.rescues if r.worker_id != done]
            self.totals["rescued"] += int(event.get("jobs", 0))
        elif kind == "backlog":
            self.backlog = int(event["ready"])

    def _order(self, child: Child, order: dict[str, Any]) -> bool:
        """Send ``order`` to ``child``; False if its link is gone."""
        try:
            child.link.sendall(json.dumps(order).encode() + b"\n")
        except (BlockingIOError, OSError) as exc:
            log.warning("order not delivered pid=%d error=%s", child.pid, exc)
            return False
        return True

    # The HTTP child ----------------------------------------------------------

    def _start_http(self) -> None:
        if not self.config.http.enabled or self.draining:
            return
        config, dsn = self.config, self.dsn

        def run() -> int:
            from fuwad.http.app import serve
            proc.set_title(f"fuwad: http {config.http.host}:"
                           f"{config.http.port}")
            return serve(config, dsn)

        self.http_pid = proc.fork(run, keep={1, 2})
        log.info("http spawned pid=%d address=%s:%d", self.http_pid,
                 config.http.host, config.http.port)

    def _http_ended(self, ended: proc.Exit, now: float) -> None:
        self.http_pid = None
        if self.draining:
            return
        log.error("http server died %s; restarting in 5s", ended.describe())
        self.http_not_before = now + 5.0

    def _keep_http(self, now: float) -> None:
        if self.http_pid is None and self.config.http.enabled \
                and not self.draining and now >= self.http_not_before > 0:
            self.http_not_before = 0.0
            self._start_http()

    def _stop_http(self) -> None:
        if self.http_pid is not None:
            proc.send(self.http_pid, signal.SIGTERM)

    # Control socket ----------------------------------------------------------

    def _open_control(self) -> None:
        self._control = ControlServer(
            self.config.socket_path(), group=self.config.control.group,
            target=self, selector=self.selector)
        self._control.open()

    def control_status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "version": __version__,
            "config_file": self.config.source or None,
            "database": db.redact(self.dsn),
            "monitor_running": self.monitor_running,
            "draining": self.draining,
            "target_workers": self.target,
            "workers": self.control_workers(),
            "jobs_in_flight": sum(len(c.jobs) for c in
                                  self.children.values()),
            "totals": dict(self.totals),
        }

    def control_workers(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        rows = []
        for c in sorted(self.children.values(), key=lambda c: c.index):
            state = ("stopping" if c.stop_sent is not None
                     else "starting" if not c.ready
                     else "busy" if c.jobs else "idle")
            first = next(iter(c.jobs.values()), None)
            rows.append({
                "index": c.index, "pid": c.pid, "worker_id": c.worker_id,
                "state": state,
                "job_id": first.job_id if first else None,
                "job_class": first.job_class if first else None,
                "jobs_running": len(c.jobs), "jobs_done": c.jobs_done,
                "started_s_ago": round(now - c.started, 3),
            })
        return rows

    def control_scale(self, count: int) -> dict[str, Any]:
        self.scale(count, "control")
        if self.autoscale:
            # An operator's count holds: autoscaling waits for a reload.
            self.autoscale = False
            log.info("autoscaling paused until reload workers=%d", count)
        return {"workers": self.target}

    def control_monitor_start(self) -> None:
        if not self.monitor_running:
            log.info("monitor starting")
        self.monitor_running = True

    def control_monitor_stop(self) -> None:
        if self.monitor_running:
            log.info("monitor stopping; workers drain")
        self.monitor_running = False
        for child in list(self.children.values()):
            self._stop(policy.Stop(child.pid, "monitor stopped"),
                       time.monotonic())

    def control_monitor_running(self) -> bool:
        return self.monitor_running

    def control_reload(self) -> None:
        self.reload()

    def control_shutdown(self, graceful_timeout: float | None) -> None:
        self.begin_drain("control", graceful_timeout)

    def control_cancel(self, job_id: int) -> bool:
        return self.cancel(job_id)

    def control_log_level(self, level: str) -> str:
        try:
            return fuwad_log.set_level(level)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    # systemd and titles --------------------------------------------------

    def _tell_systemd(self, now: float) -> None:
        """Show what the pool does in the title and to systemd."""
        status = self._status_line()
        if status != self._last_status:
            self._last_status = status
            proc.set_title(f"fuwad: supervisor {status}")
            proc.sd_notify(f"STATUS={status}")
        interval = proc.watchdog_interval()
        if interval is not None and now >= self._next_watchdog:
            self._next_watchdog = now + interval
            proc.sd_notify("WATCHDOG=1")

    def _status_line(self) -> str:
        busy = sum(1 for c in self.children.values() if c.jobs)
        state = ("draining" if self.draining
                 else "running" if self.monitor_running else "monitor stopped")
        return (f"{state} workers={len(self.children)}/{self.target} "
                f"busy={busy} jobs_done={self.totals['jobs_done']}")
