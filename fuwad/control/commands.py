"""The control commands: names, arguments, and what each asks of the daemon.

Each handler checks its arguments, calls one method of the
:class:`CommandTarget` (the supervisor) and returns plain data for the answer.
A wrong argument raises :class:`~fuwad.errors.ControlError` with a message
for the person who typed it; the server (:mod:`fuwad.control.server`) turns
that, or any other failure, into an error answer.  Handlers never block on
I/O of their own: they run inside the supervisor's loop.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fuwad.control.protocol import PROTOCOL_VERSION
from fuwad.errors import ControlError

MAX_SCALE = 10000  # more workers than this is a typo, not a plan
MAX_JOB_ID = 2**63 - 1  # queue_jobs.id is a bigint
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class CommandTarget(Protocol):
    """What the control commands steer; the supervisor implements it."""

    def control_status(self) -> dict[str, Any]: ...

    def control_workers(self) -> list[dict[str, Any]]: ...

    def control_scale(self, count: int) -> dict[str, Any]: ...

    def control_monitor_start(self) -> None: ...

    def control_monitor_stop(self) -> None: ...

    def control_monitor_running(self) -> bool: ...

    def control_reload(self) -> None: ...

    def control_shutdown(self, graceful_timeout: float | None) -> None: ...

    def control_cancel(self, job_id: int) -> bool: ...

    def control_log_level(self, level: str) -> str: ...


Args = Mapping[str, Any]
Handler = Callable[[CommandTarget, Args], Any]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    params: tuple[str, ...]
    handler: Handler
    summary: str


def _integer(args: Args, cmd: str, name: str, low: int, high: int) -> int:
    value = args.get(name)
    if value is None:
        raise ControlError(f"{cmd} needs {name}, a whole number")
    if type(value) is not int:
        raise ControlError(
            f"{cmd}: {name} must be a whole number, not {value!r}"
        )
    if not low <= value <= high:
        raise ControlError(
            f"{cmd}: {name} must be {low} to {high}, not {value}"
        )
    return int(value)


def _seconds(args: Args, cmd: str, name: str) -> float | None:
    value = args.get(name)
    if value is None:
        return None
    if type(value) not in (int, float):
        raise ControlError(f"{cmd}: {name} must be a number of seconds")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ControlError(
            f"{cmd}: {name} must be a finite number of seconds, at least 0"
        )
    return seconds


def _ping(target: CommandTarget, args: Args) -> dict[str, Any]:
    # Imported late: the package's __init__ may come to import this module.
    from fuwad import __version__

    return {"pong": True, "pid": os.getpid(), "version": __version__,
            "protocol": PROTOCOL_VERSION}


def _status(target: CommandTarget, args: Args) -> dict[str, Any]:
    return target.control_status()


def _workers(target: CommandTarget, args: Args) -> list[dict[str, Any]]:
    return target.control_workers()


def _scale(target: CommandTarget, args: Args) -> dict[str, Any]:
    count = _integer(args, "scale", "count", 0, MAX_SCALE)
    return target.control_scale(count)


def _monitor_start(target: CommandTarget, args: Args) -> dict[str, Any]:
    target.control_monitor_start()
    return {"running": bool(target.control_monitor_running())}


def _monitor_stop(target: CommandTarget, args: Args) -> dict[str, Any]:
    target.control_monitor_stop()
    return {"running": bool(target.control_monitor_running())}


def _monitor_running(target: CommandTarget, args: Args) -> dict[str, Any]:
    return {"running": bool(target.control_monitor_running())}


def _reload(target: CommandTarget, args: Args) -> dict[str, Any]:
    target.control_reload()
    return {"reloading": True}


def _shutdown(target: CommandTarget, args: Args) -> dict[str, Any]:
    timeout = _seconds(args, "shutdown", "graceful_timeout")
    target.control_shutdown(timeout)
    return {"stopping": True, "graceful_timeout": timeout}


def _cancel(target: CommandTarget, args: Args) -> dict[str, Any]:
    job_id = _integer(args, "cancel", "job_id", 1, MAX_JOB_ID)
    return {"job_id": job_id, "stopping": bool(target.control_cancel(job_id))}


def _log_level(target: CommandTarget, args: Args) -> dict[str, Any]:
    level = args.get("level")
    if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
        raise ControlError(
            f"log-level: level must be one of {', '.join(LOG_LEVELS)}, "
            f"not {level!r}"
        )
    return {"level": target.control_log_level(level.upper())}


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("ping", (), _ping, "check that the daemon answers"),
        Command("status", (), _status, "the daemon's state and totals"),
        Command("workers", (), _workers, "one row per worker process"),
        Command("scale", ("count",), _scale, "set the number of workers"),
        Command("monitor.start", (), _monitor_start,
                "bring the worker pool back"),
        Command("monitor.stop", (), _monitor_stop,
                "drain every worker; the daemon stays up"),
        Command("monitor.running", (), _monitor_running,
                "whether the worker pool runs"),
        Command("reload", (), _reload, "re-read config and roll workers"),
        Command("shutdown", ("graceful_timeout",), _shutdown,
                "drain and stop the daemon"),
        Command("cancel", ("job_id",), _cancel,
                "stop a job running on this daemon"),
        Command("log-level", ("level",), _log_level,
                "change the daemon's log level"),
    )
}


def run(target: CommandTarget, cmd: str, args: Args) -> Any:
    """Run one command and return its answer's data.

    Raises ControlError for an unknown command or a wrong argument; whatever
    the target raises passes through for the server to report.
    """
    command = COMMANDS.get(cmd)
    if command is None:
        known = ", ".join(COMMANDS)
        raise ControlError(f"unknown command {cmd!r}; known: {known}")
    unknown = sorted(set(args) - set(command.params))
    if unknown:
        takes = ", ".join(command.params) or "no arguments"
        raise ControlError(
            f"{cmd}: unknown argument {unknown[0]!r}; it takes {takes}"
        )
    return command.handler(target, args)
