"""Logging set-up: one readable line per event, or JSON lines.

Modules log through ``logging.getLogger("fuwad.<part>")`` with lazy ``%``
arguments and a short lower-case event phrase followed by ``key=value``
fields; this module only decides where lines go and how they look.
"""

from __future__ import annotations

import json
import logging
import sys
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "event": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str = "INFO", style: str = "text") -> None:
    """Send fuwad's logs to stderr at ``level`` in ``style``."""
    handler = logging.StreamHandler(sys.stderr)
    if style == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("fuwad").setLevel(level.upper())


def set_level(level: str) -> str:
    """Change fuwad's log level at run time; return the level now set."""
    name = level.upper()
    if name not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError(
            f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR"
        )
    logging.getLogger("fuwad").setLevel(name)
    return name


def flush() -> None:
    """Flush every handler; a child calls this before os._exit."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except (OSError, ValueError):
            pass
