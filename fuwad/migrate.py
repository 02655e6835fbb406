"""Numbered schema migrations, applied in order under an advisory lock.

Migrations are the files ``fuwad/migrations/NNNN_name.sql``; each runs in its
own transaction with its number recorded in ``fuwad_migrations``.  Many
processes may start at once: the advisory lock lets one apply while the
others wait, then find nothing left to do.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import asyncpg

log = logging.getLogger("fuwad.migrate")

# Any fixed number; it names fuwad's migration lock among advisory locks.
MIGRATION_LOCK = 0x66757761

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def available() -> list[tuple[int, str, str]]:
    """Return (number, name, sql) for every migration shipped, in order."""
    found = []
    for entry in resources.files("fuwad.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


async def migrate(connection: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet applied; return the names applied."""
    applied_now = []
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS fuwad_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            row["version"]
            for row in await connection.fetch(
                "SELECT version FROM fuwad_migrations"
            )
        }
        for version, name, sql in available():
            if version in done:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO fuwad_migrations (version, name) "
                    "VALUES ($1, $2)",
                    version, name,
                )
            log.info("migration applied name=%s", name)
            applied_now.append(name)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)",
                                 MIGRATION_LOCK)
    return applied_now
