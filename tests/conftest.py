"""Fixtures shared by every layer of tests.

The database is real: the embedded server in a temporary directory by
default, or the server named by ``FUWAD_TEST_DSN``.  The schema is built
once per session into a template database; each test that asks for
``dsn`` gets a fresh clone of it, so tests never see each other's jobs and
NOTIFY, several connections and real commits all behave as in production.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from fuwad import db, embedded, migrate
from fuwad.config import Config, load
from fuwad.manager import QueueManager

TEMPLATE = f"fuwad_tpl_{os.getpid()}"


def with_database(dsn: str, name: str) -> str:
    """Return ``dsn`` pointing at database ``name`` instead."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A DSN of the test server, on a database we may create others from."""
    external = os.environ.get("FUWAD_TEST_DSN")
    if external:
        yield external
        return
    data_dir = embedded_data_dir()
    dsn = embedded.ensure_running(data_dir)
    try:
        yield dsn
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def embedded_data_dir() -> Path:
    """Return a new directory for an embedded server of a test's own.

    Not under pytest's temporary root: pytest makes that private (0700)
    again whenever another session starts, and the server runs as another
    user when the tests run as root.
    """
    return Path(tempfile.mkdtemp(prefix="fuwad-test-"))


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    async def build() -> None:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
            await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
        finally:
            await admin.close()
        connection = await db.connect(with_database(server_dsn, TEMPLATE))
        try:
            await migrate.migrate(connection)
        finally:
            await connection.close()

    asyncio.run(build())
    yield TEMPLATE
    asyncio.run(_drop(server_dsn, TEMPLATE))


async def _drop(server_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _clone(server_dsn: str, template: str) -> str:
    name = f"fuwad_t_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(
                f'CREATE DATABASE "{name}" TEMPLATE "{template}"'
            )
        finally:
            await admin.close()

    asyncio.run(create())
    return name


@pytest.fixture
def dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = _clone(server_dsn, template_db)
    yield with_database(server_dsn, name)
    asyncio.run(_drop(server_dsn, name))


@pytest.fixture
def config(dsn: str, tmp_path: Path) -> Config:
    """A configuration on this test's database, with quick timings."""
    return load(
        path="",
        env={},
        overrides={
            "database.dsn": dsn,
            "database.data_dir": str(tmp_path / "data"),
            "queue.worker_sleep": 1.0,
            "queue.retry_delay": 0.2,
            "queue.retry_delay_max": 1.0,
            "queue.heartbeat_interval": 0.5,
            "queue.graceful_timeout": 10.0,
            "queue.kill_grace": 1.0,
            "control.socket": str(tmp_path / "fuwad.sock"),
            "http.enabled": False,
        },
    )


@pytest.fixture
async def manager(dsn: str, config: Config) -> AsyncIterator[QueueManager]:
    qm = await QueueManager.connect(dsn, config)
    try:
        yield qm
    finally:
        await qm.close()


async def wait_until(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    """Await ``check`` until it returns a true value, or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


def wait_until_sync(
    check: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    """Call ``check`` until it returns a true value, or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
