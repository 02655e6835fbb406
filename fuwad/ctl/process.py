"""fuwactl process commands: steer the running daemon over its control socket.

``status``, ``workers``, ``scale``, ``monitor``, ``reload``, ``shutdown``,
``log-level`` and ``ping`` each send one command through
:class:`~fuwad.control.client.ControlClient` and print the answer, as a
table for people or as JSON with ``--json``.  Exit codes: 0 done, 1 the
command failed, 2 usage error, 3 the daemon is not running.  Queue commands
that work on the database belong to :mod:`fuwad.ctl.jobs`; among them
``fuwactl cancel``, which also stops a job that is running, on any host.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from fuwad.config import Config, load
from fuwad.control.client import ControlClient
from fuwad.control.commands import LOG_LEVELS, MAX_SCALE
from fuwad.ctl.output import (EXIT_NOT_RUNNING, EXIT_USAGE, Fail, emit_json,
                              pairs, table)
from fuwad.errors import ConfigError, DaemonNotRunning, FuwadError

SHUTDOWN_WAIT_SLACK_S = 15.0  # beyond graceful timeout and kill grace
SHUTDOWN_POLL_S = 0.2


def register(commands: Any) -> None:
    """Add this module's subcommands to commands."""
    def add(name: str, summary: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=summary,
            description=summary[:1].upper() + summary[1:] + ".")
        # --json is also accepted after the command; SUPPRESS keeps this
        # one, when absent, from undoing a --json given before it.
        parser.add_argument("--json", action="store_true",
                            default=argparse.SUPPRESS,
                            help="print JSON for scripts instead of tables")
        return parser

    p = add("status", "show the daemon's state, workers and totals")
    p.set_defaults(run=_status)

    p = add("workers", "list the daemon's worker processes")
    p.set_defaults(run=_workers)

    p = add("scale", "set how many workers the daemon keeps")
    p.add_argument("count", type=_count, metavar="N",
                   help=f"number of workers, 0 to {MAX_SCALE}")
    p.set_defaults(run=_scale)

    p = add("monitor", "start or stop the worker pool, or ask if it runs")
    p.add_argument("action", choices=("start", "stop", "running"),
                   help="stop drains every worker and keeps the daemon up")
    p.set_defaults(run=_monitor)

    p = add("reload", "re-read the configuration and roll the workers")
    p.set_defaults(run=_reload)

    p = add("shutdown", "drain the workers and stop the daemon")
    p.add_argument("--graceful-timeout", type=_seconds, metavar="S",
                   help="seconds jobs may take to finish before they are "
                        "killed (default: [queue] graceful_timeout)")
    p.add_argument("--wait", action="store_true",
                   help="return only once the daemon has stopped")
    p.set_defaults(run=_shutdown)

    p = add("log-level", "change the daemon's log level")
    p.add_argument("level", type=str.upper, choices=LOG_LEVELS,
                   metavar="LEVEL", help=", ".join(LOG_LEVELS))
    p.set_defaults(run=_log_level)

    p = add("ping", "check that the daemon answers (exit 3 if not)")
    p.set_defaults(run=_ping)


# -- argument types ----------------------------------------------------------


def _whole(text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number"
        ) from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be {low} to {high}, not {text}")
    return value


def _count(text: str) -> int:
    return _whole(text, 0, MAX_SCALE)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds"
        ) from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds, at least 0, not {text}"
        )
    return value


# -- talking to the daemon ---------------------------------------------------


def _config(args: argparse.Namespace) -> Config:
    try:
        return load(args.config)
    except ConfigError as exc:
        # A bad configuration is a usage error, as for every fuwactl command.
        raise Fail(str(exc), EXIT_USAGE) from None


def _client(config: Config) -> ControlClient:
    return ControlClient.from_config(config)


def _ask(client: ControlClient, cmd: str, **arguments: Any) -> Any:
    """Send one command; turn each error into fuwactl's exit code."""
    try:
        return client.request(cmd, **arguments)
    except DaemonNotRunning as exc:
        raise Fail(str(exc), EXIT_NOT_RUNNING) from None
    except FuwadError as exc:  # ControlError, ControlTimeout, ProtocolError
        raise Fail(str(exc)) from None
    except OSError as exc:
        raise Fail(f"control socket {client.path}: {exc}") from None


def _run(args: argparse.Namespace, cmd: str, **arguments: Any) -> Any:
    return _ask(_client(_config(args)), cmd, **arguments)


# -- rendering -----------------------------------------------------------------


def duration(seconds: Any) -> str:
    """Return ``seconds`` as ``1d 2h``, ``3h 4m``, ``5m 6s`` or ``7.8s``."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


WORKER_COLUMNS = ("index", "pid", "state", "job", "class", "jobs done", "age")


def _worker_rows(workers: Any) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for w in workers if isinstance(workers, list) else []:
        if not isinstance(w, dict):
            continue
        rows.append([w.get("index"), w.get("pid"), w.get("state"),
                     w.get("job_id"), w.get("job_class"), w.get("jobs_done"),
                     duration(w.get("started_s_ago"))])
    return rows


def _status_text(status: dict[str, Any]) -> str:
    shown = {"pid", "uptime_s", "version", "config_file", "database",
             "monitor_running", "jobs_in_flight", "totals", "workers"}
    items: list[tuple[str, Any]] = [
        ("pid", status.get("pid")),
        ("uptime", duration(status.get("uptime_s"))),
        ("version", status.get("version")),
        ("config file", status.get("config_file") or "(none)"),
        ("database", status.get("database")),
        ("monitor", "running" if status.get("monitor_running")
         else "stopped"),
        ("jobs in flight", status.get("jobs_in_flight")),
    ]
    totals = status.get("totals")
    if isinstance(totals, dict):
        items += [(f"total {key}", value) for key, value in totals.items()]
    items += [(key.replace("_", " "), value)
              for key, value in status.items() if key not in shown]
    text = pairs(items)
    rows = _worker_rows(status.get("workers"))
    if rows:
        text += "\n\n" + table(WORKER_COLUMNS, rows)
    else:
        text += "\n\nno workers"
    return text


def _print(args: argparse.Namespace, data: Any, text: str) -> int:
    if args.json:
        emit_json(data)
    else:
        print(text)
    return 0


# -- commands ------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    status = _run(args, "status")
    if not isinstance(status, dict):
        raise Fail("the daemon's status answer is not a record; check that "
                   "fuwactl and fuwad come from the same release")
    return _print(args, status, _status_text(status))


def _workers(args: argparse.Namespace) -> int:
    workers = _run(args, "workers")
    rows = _worker_rows(workers)
    text = table(WORKER_COLUMNS, rows) if rows else "no workers"
    return _print(args, workers, text)


def _scale(args: argparse.Namespace) -> int:
    result = _run(args, "scale", count=args.count)
    if isinstance(result, dict) and result:
        text = pairs((key.replace("_", " "), value)
                     for key, value in result.items())
    else:
        text = f"scaling to {args.count} workers"
    return _print(args, result, text)


def _monitor(args: argparse.Namespace) -> int:
    cmd = f"monitor.{args.action}"
    result = _run(args, cmd)
    running = bool(isinstance(result, dict) and result.get("running"))
    if args.action == "start":
        text = "monitor started: the worker pool is coming up"
    elif args.action == "stop":
        text = ("monitor stopped: workers drain; the daemon stays up for "
                "commands")
    else:
        text = "running" if running else "stopped"
    return _print(args, result, text)


def _reload(args: argparse.Namespace) -> int:
    result = _run(args, "reload")
    return _print(args, result, "reload requested: the daemon re-reads its "
                                "configuration and rolls its workers")


def _shutdown(args: argparse.Namespace) -> int:
    config = _config(args)
    client = _client(config)
    result = _ask(client, "shutdown", graceful_timeout=args.graceful_timeout)
    if not args.wait:
        return _print(args, result, "shutdown requested: the daemon drains "
                                    "its workers and stops")
    grace = args.graceful_timeout
    if grace is None:
        grace = config.queue.graceful_timeout
    limit = grace + config.queue.kill_grace + SHUTDOWN_WAIT_SLACK_S
    if not _wait_stopped(client, limit):
        raise Fail(f"the daemon still answers {limit:g}s after shutdown "
                   f"was asked; check its log")
    return _print(args, result, "the daemon has stopped")


def _wait_stopped(client: ControlClient, limit: float) -> bool:
    """Poll until nothing answers on the socket; False after ``limit``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            client.request("ping")
        except DaemonNotRunning:
            return True
        except FuwadError:
            pass  # going down: it may close connections without answers
        time.sleep(SHUTDOWN_POLL_S)
    return False


def _log_level(args: argparse.Namespace) -> int:
    result = _run(args, "log-level", level=args.level)
    level = result.get("level") if isinstance(result, dict) else args.level
    return _print(args, result, f"log level is now {level}")


def _ping(args: argparse.Namespace) -> int:
    result = _run(args, "ping")
    if not isinstance(result, dict):
        result = {}
    text = (f"fuwad {result.get('version', '?')} answers, pid "
            f"{result.get('pid', '?')}")
    return _print(args, result, text)
