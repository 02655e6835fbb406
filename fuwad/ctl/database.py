"""Running a fuwactl command that works on the database.

The queue and token commands share one way to start (load the
configuration, run the command on an event loop) and one way to fail:
every error becomes a :class:`~fuwad.ctl.output.Fail` with one line and an
exit code, and a reader that goes away (``| head``) ends the command
quietly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from fuwad.config import Config, load
from fuwad.ctl.output import EXIT_FAILED, EXIT_USAGE, Fail
from fuwad.errors import ConfigError, FuwadError, InvalidJob

Command = Callable[[argparse.Namespace, Config], Coroutine[Any, Any, int]]


def run_on_database(args: argparse.Namespace, command: Command) -> int:
    """Run ``command``; turn every failure into one Fail."""
    try:
        config = load(args.config)
        code = asyncio.run(command(args, config))
        # Inside the try: a reader gone early shows up at this flush.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader (head, a closed pager) went away: stop quietly, and
        # keep the interpreter's last flush from complaining.  Before the
        # connection branch below, as a broken pipe is an OSError too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except (InvalidJob, ConfigError) as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    except FuwadError as exc:
        raise Fail(str(exc), EXIT_FAILED) from None
    except asyncpg.UndefinedTableError:
        raise Fail(
            "the queue tables do not exist in this database; create them "
            "with 'fuwactl migrate'"
        ) from None
    except asyncpg.PostgresError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "no reason"
        raise Fail(
            f"PostgreSQL refused the command: {reason}; check the database "
            "user's rights and the server log"
        ) from None
    except (OSError, asyncpg.InterfaceError) as exc:
        raise Fail(
            f"lost the connection to PostgreSQL: {exc}; check that the "
            "server runs and try again"
        ) from None
