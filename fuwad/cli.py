"""The ``fuwad`` command: the daemon and its single-process modes.

``fuwad run`` (or bare ``fuwad``) starts the supervisor, its workers and the
HTTP server; ``fuwad worker`` runs one worker in the foreground for process
managers that keep their own pools (Supervisor's ``numprocs``);
``fuwad http`` serves the API and admin page alone; ``fuwad worker-auto``
and ``fuwad worker-monitor`` serve shared hosting driven from cron.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import uvloop

from fuwad import __version__, db, migrate
from fuwad import log as fuwad_log
from fuwad.config import Config, load
from fuwad.errors import FuwadError

log = logging.getLogger("fuwad.cli")

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fuwad", description=(
        "fuwad: a PostgreSQL job queue daemon. With no command, 'run'."))
    parser.add_argument("--version", action="version",
                        version=f"fuwad {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="INI file (default: $FUWAD_CONFIG)")
    common.add_argument("--log-level", metavar="LEVEL",
                        help="DEBUG, INFO, WARNING or ERROR")
    common.add_argument("--queues", metavar="A,B",
                        help="serve only these queues (default: all)")
    common.add_argument("--concurrency", type=_positive_int, metavar="N",
                        help="jobs each worker runs at once")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=_Parser)

    run = commands.add_parser("run", parents=[common],
                              help="supervisor, workers and HTTP server")
    run.add_argument("--workers", type=_positive_int, metavar="N",
                     help="keep exactly N workers (default: autoscale "
                          "between min_workers and max_workers)")
    run.add_argument("--no-http", action="store_true",
                     help="do not serve the API and admin page")

    worker = commands.add_parser("worker", parents=[common],
                                 help="one worker in the foreground")
    worker.add_argument("--max-jobs", type=_positive_int, metavar="N",
                        help="exit after N jobs (0: never)")

    http = commands.add_parser("http", parents=[common],
                               help="the API and admin page alone")
    http.add_argument("--host", help="address to bind (default 127.0.0.1)")
    http.add_argument("--port", type=_positive_int, help="port to bind")

    auto = commands.add_parser(
        "worker-auto", parents=[common],
        help="shared hosting: a worker that hands over to its successor")
    auto.add_argument("--lifetime", type=_seconds, metavar="S",
                      help="seconds before handing over (default 60)")
    auto.add_argument("--idle-timeout", type=_seconds, metavar="S",
                      help="exit after S seconds without work "
                           "(default 1800)")

    monitor = commands.add_parser(
        "worker-monitor", parents=[common],
        help="shared hosting, from cron: keep a minimum of workers alive")
    monitor.add_argument("--min-workers", type=_positive_int, metavar="N",
                         help="workers to keep alive (default 2)")
    monitor.add_argument("--interval", type=_seconds, metavar="S",
                         help="seconds between checks (default 30)")
    monitor.add_argument("--once", action="store_true",
                         help="check once and exit")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {
        "log.level": args.log_level,
        "queue.queues": args.queues,
        "queue.concurrency": args.concurrency,
    }
    if getattr(args, "no_http", False):
        found["http.enabled"] = False
    if getattr(args, "host", None):
        found["http.host"] = args.host
    if getattr(args, "port", None):
        found["http.port"] = args.port
    if getattr(args, "lifetime", None) is not None:
        found["queue.autoscaling_worker_lifetime"] = args.lifetime
    if getattr(args, "idle_timeout", None) is not None:
        found["queue.autoscaling_worker_idle_timeout"] = args.idle_timeout
    return found


def prepare(config: Config) -> str:
    """Resolve the database and apply migrations; return the DSN.

    Runs on a plain asyncio loop that is closed (with its threads joined)
    before anything forks.
    """
    dsn = db.resolve_dsn(config)

    async def apply() -> list[str]:
        connection = await db.connect(dsn)
        try:
            return await migrate.migrate(connection)
        finally:
            await connection.close()

    asyncio.run(apply())
    return dsn


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0].startswith("-") and arguments[0] not in (
            "-h", "--help", "--version"):
        arguments.insert(0, "run")
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:
        return int(exc.code or 0)
    overrides = _overrides(args)
    try:
        config = load(args.config, overrides=overrides)
    except FuwadError as exc:
        print(f"fuwad: {exc}", file=sys.stderr)
        return EXIT_USAGE
    fuwad_log.setup(config.log.level, config.log.format)
    try:
        dsn = prepare(config)
        return _dispatch(args, config, dsn, overrides)
    except FuwadError as exc:
        log.critical("fuwad cannot go on: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, config: Config, dsn: str,
              overrides: dict[str, Any]) -> int:
    if args.command == "run":
        from fuwad.supervisor import Supervisor
        supervisor = Supervisor(config, dsn, overrides=overrides,
                                workers=args.workers)
        return supervisor.run()
    if args.command == "worker":
        return _run_worker(config, dsn, max_jobs=args.max_jobs)
    if args.command == "http":
        from fuwad.http.app import serve
        return serve(config, dsn)
    if args.command == "worker-auto":
        from fuwad.autoworker import run_auto
        return run_auto(config, dsn, args.config)
    if args.command == "worker-monitor":
        from fuwad.autoworker import run_monitor
        return run_monitor(config, dsn, args.config,
                           min_workers=args.min_workers,
                           interval=args.interval, once=args.once)
    raise FuwadError(f"unknown command {args.command!r}")


def _run_worker(config: Config, dsn: str, max_jobs: int | None) -> int:
    from fuwad.worker import Worker, WorkerOptions
    options = WorkerOptions(
        max_jobs=(config.queue.max_jobs_per_worker if max_jobs is None
                  else max_jobs),
        max_memory_mb=config.queue.max_worker_memory_mb,
    )
    worker = Worker(config, dsn, options)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        code = runner.run(worker.run())
    # A handler thread stuck past its timeout would hold up a normal exit.
    fuwad_log.flush()
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
