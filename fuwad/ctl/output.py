"""What fuwactl prints: tables for people, JSON for scripts, exit codes.

Every failure leaves through :class:`Fail` with one line on stderr and a
documented exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from fuwad.db import jsonable

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and failed (bad id, database away, ...)
EXIT_USAGE = 2  # the command line was wrong
EXIT_NOT_RUNNING = 3  # the daemon does not answer on its socket


class Fail(Exception):
    """End the command with a one-line message and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class UsageParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors name the command and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def fail(message: str, code: int) -> int:
    print(f"fuwactl: {message}", file=sys.stderr)
    return code


def emit_json(value: Any) -> None:
    # ASCII only: no control or direction character reaches a terminal raw.
    print(json.dumps(jsonable(value), indent=2, ensure_ascii=True))


def _cell(value: Any, width: int = 48) -> str:
    if value is None:
        return "-"
    text = str(jsonable(value)) if not isinstance(value, str) else value
    text = text.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return rows as aligned columns under ``headers``."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths))]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return "\n".join(line.rstrip() for line in lines)


def pairs(items: Iterable[tuple[str, Any]]) -> str:
    """Return ``key: value`` lines, aligned, for one record."""
    listed = list(items)
    width = max((len(k) for k, _ in listed), default=0)
    return "\n".join(f"{k.ljust(width)}  {_cell(v, 2000)}" for k, v in listed)
