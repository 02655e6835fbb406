"""Shared by the control-socket tests: a stand-in supervisor, the real
ControlServer serving it on a thread, and a client that connects as
another user.

The stand-in is a test harness for the server and commands, not a mock of
fuwad: the system tests drive the real supervisor.
"""

from __future__ import annotations

import os
import selectors
import threading
from pathlib import Path
from typing import Any

from fuwad.control.client import ControlClient
from fuwad.control.server import ControlServer
from fuwad.errors import ControlError

TIMEOUT = 10.0


class Target:
    """An in-test CommandTarget: plain state, every call recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.running = True
        self.count = 2
        self.level = "INFO"
        self.broken = False

    def control_status(self) -> dict[str, Any]:
        if self.broken:
            raise RuntimeError("status exploded")
        return {"pid": os.getpid(), "uptime_s": 3.5, "version": "0.1.0",
                "config_file": "", "database": "postgresql://x:***@h/db",
                "monitor_running": self.running,
                "workers": self.control_workers(), "jobs_in_flight": 1,
                "totals": {"completed": 5, "failed": 1}}

    def control_workers(self) -> list[dict[str, Any]]:
        return [{"index": i, "pid": 1000 + i, "state": "busy" if i else "idle",
                 "job_id": 42 if i else None,
                 "job_class": "app.Mail" if i else None, "jobs_done": 3,
                 "started_s_ago": 75.0} for i in range(self.count)]

    def control_scale(self, count: int) -> dict[str, Any]:
        if count > 8:
            raise ControlError(
                f"cannot scale to {count}: [queue] max_workers is 8"
            )
        self.calls.append(("scale", count))
        self.count = count
        return {"workers": count}

    def control_monitor_start(self) -> None:
        self.calls.append(("monitor.start", None))
        self.running = True

    def control_monitor_stop(self) -> None:
        self.calls.append(("monitor.stop", None))
        self.running = False

    def control_monitor_running(self) -> bool:
        return self.running

    def control_reload(self) -> None:
        self.calls.append(("reload", None))

    def control_shutdown(self, graceful_timeout: float | None) -> None:
        self.calls.append(("shutdown", graceful_timeout))

    def control_cancel(self, job_id: int) -> bool:
        self.calls.append(("cancel", job_id))
        return job_id == 42

    def control_log_level(self, level: str) -> str:
        self.calls.append(("log-level", level))
        self.level = level
        return level


class Served:
    """A ControlServer in a selectors loop on a thread of its own."""

    def __init__(self, path: Path, *, group: str = "",
                 idle_timeout: float = 30.0, max_line: int = 65536) -> None:
        self.path = path
        self.target = Target()
        self.selector = selectors.DefaultSelector()
        self.server = ControlServer(
            path, group=group, target=self.target, selector=self.selector,
            idle_timeout=idle_timeout, max_line=max_line,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> Served:
        self.server.open()
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                for key, mask in self.selector.select(0.05):
                    key.data(key.fileobj, mask)
                self.server.tick()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self.server.close()
        self.selector.close()
        if self.error is not None:
            raise self.error

    def client(self, timeout: float = TIMEOUT) -> ControlClient:
        return ControlClient(self.path, timeout)


def ping_as(path: Path, uid: int, gid: int,
            extra_groups: tuple[int, ...] = ()) -> str:
    """Fork, become ``uid``/``gid``, send ping; return what happened:
    "admitted", or the error's type and message."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no logging, no threads, leave by os._exit
        os.close(read_end)
        try:
            os.setgroups(list(extra_groups))
            os.setgid(gid)
            os.setuid(uid)
            ControlClient(path, TIMEOUT).request("ping")
            result = "admitted"
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read().decode()
    os.waitpid(pid, 0)
    return result
