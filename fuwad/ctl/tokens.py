"""fuwactl token: make, list and revoke the HTTP API's bearer tokens.

``token create`` prints the new token once; only its hash is stored, so a
lost token cannot be shown again: revoke it and make another.  These
commands work on the database, so they work while the daemon is down.

Exit codes: 0 done; 1 the command failed (a name taken by an active token,
no such token, the database unreachable) or its reader closed the output
early, which is not reported; 2 the command line or the configuration is
wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from fuwad import db, tokens
from fuwad.config import Config
from fuwad.ctl.database import run_on_database
from fuwad.ctl.output import emit_json, table
from fuwad.tokens import TokenError, TokenInfo

Command = Callable[[argparse.Namespace, Config, asyncpg.Connection],
                   Awaitable[int]]


def _record(info: TokenInfo) -> dict[str, Any]:
    return {"name": info.name, "role": info.role.value, "state": info.state,
            "created_at": info.created_at, "expires_at": info.expires_at,
            "revoked_at": info.revoked_at, "last_used_at": info.last_used_at}


def _time(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S %Z")


async def cmd_create(args: argparse.Namespace, config: Config,
                     connection: asyncpg.Connection) -> int:
    token, info = await tokens.create(
        connection, args.name, args.role, args.expires
    )
    if args.json:
        emit_json({"token": token, **_record(info)})
        return 0
    expiry = _time(info.expires_at) or "never"
    print(token)
    print(f"token {info.name} ({info.role.value}, expires {expiry}) made; "
          "this is the only time it is shown", file=sys.stderr)
    return 0


async def cmd_list(args: argparse.Namespace, config: Config,
                   connection: asyncpg.Connection) -> int:
    found = await tokens.list_tokens(connection)
    if args.json:
        emit_json([_record(info) for info in found])
        return 0
    if not found:
        print("no tokens; make one with 'fuwactl token create --name admin "
              "--role admin'")
        return 0
    print(table(
        ["name", "role", "state", "created", "expires", "last used"],
        [[i.name, i.role.value, i.state, _time(i.created_at),
          _time(i.expires_at), _time(i.last_used_at)] for i in found],
    ))
    return 0


async def cmd_revoke(args: argparse.Namespace, config: Config,
                     connection: asyncpg.Connection) -> int:
    info = await tokens.revoke(connection, args.name)
    if args.json:
        emit_json(_record(info))
        return 0
    print(f"token {info.name} revoked")
    return 0


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap ``command``: load config, connect, and turn failures into one
    Fail each."""

    async def run_async(args: argparse.Namespace, config: Config) -> int:
        connection = await db.connect(db.resolve_dsn(config))
        try:
            return await command(args, config, connection)
        finally:
            await connection.close()

    def run(args: argparse.Namespace) -> int:
        return run_on_database(args, run_async)

    return run


def _role(text: str) -> tokens.Role:
    try:
        return tokens.parse_role(text)
    except TokenError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _expires(text: str) -> int:
    try:
        return tokens.parse_expiry(text)
    except TokenError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _name(text: str) -> str:
    try:
        return tokens.check_name(text)
    except TokenError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add(verbs: Any, name: str, command: Command,
         help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = verbs.add_parser(
        name, help=help_text,
        description=help_text[:1].upper() + help_text[1:] + ".",
    )
    parser.add_argument("--json", action="store_true",
                        default=argparse.SUPPRESS,
                        help="print JSON for scripts instead of text")
    parser.set_defaults(run=_runner(command))
    return parser


def register(commands: Any) -> None:
    """Add ``fuwactl token create|list|revoke``."""
    token = commands.add_parser(
        "token", help="make, list and revoke HTTP API tokens",
        description="Make, list and revoke the HTTP API's bearer tokens.",
    )
    verbs = token.add_subparsers(dest="verb", metavar="VERB",
                                 parser_class=type(token))
    verbs.required = True

    create = _add(verbs, "create", cmd_create,
                  "make a token and print it once")
    create.add_argument("--name", required=True, type=_name, metavar="N",
                        help="a unique name, for logs and revocation")
    create.add_argument("--role", required=True, type=_role,
                        metavar="ROLE",
                        help="viewer (reads), operator (also retries and "
                             "cancels) or admin (everything)")
    create.add_argument("--expires", type=_expires, metavar="DURATION",
                        help="lifetime such as 30d, 12h or 90m "
                             "(default: never)")

    _add(verbs, "list", cmd_list, "list tokens, never their values")

    revoke = _add(verbs, "revoke", cmd_revoke,
                  "revoke a token at once")
    revoke.add_argument("name", metavar="NAME", help="the token's name")
