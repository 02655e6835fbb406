"""fuwactl: the operator's command line.

Queue commands (:mod:`fuwad.ctl.jobs`) work on the database, so they work
while the daemon is down; process commands (:mod:`fuwad.ctl.process`) speak
to the running daemon over its control socket; token commands
(:mod:`fuwad.ctl.tokens`) manage the HTTP API's bearer tokens.  Each module
adds its subcommands with ``register``; this one parses and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fuwad.ctl import jobs, process, tokens
from fuwad.ctl.output import EXIT_USAGE, Fail, UsageParser, fail


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="fuwactl",
        description="Steer fuwad: its jobs, its daemon and its API tokens.",
    )
    parser.add_argument("--config", metavar="FILE",
                        help="INI file (default: $FUWAD_CONFIG)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON for scripts instead of tables")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=UsageParser)
    commands.required = True
    for module in (jobs, process, tokens):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        code = args.run(args)
    except Fail as exc:
        return fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_USAGE)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
