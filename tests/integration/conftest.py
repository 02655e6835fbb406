"""Fixtures of the integration tests: the API on a test server (with no
rate limit in the way unless a test asks for one) and an admin token; a
short socket directory and a control server on it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from fuwad import tokens
from fuwad.config import Config
from fuwad.http.app import make_app
from fuwad.tokens import Role
from tests.control_harness import Served


@pytest.fixture
def api_config(config: Config) -> Config:
    return replace(config, auth=replace(config.auth, rate_viewer=0,
                                        rate_operator=0, rate_admin=0,
                                        failed_rate=0))


@pytest.fixture
async def client(api_config: Config, dsn: str) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_app(api_config, dsn))) as c:
        yield c


@pytest.fixture
async def admin(dsn: str) -> dict[str, str]:
    """Headers that carry a fresh admin token."""
    connection = await asyncpg.connect(dsn)
    try:
        token, _ = await tokens.create(connection, "root", Role.ADMIN)
    finally:
        await connection.close()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory for sockets (sun_path holds 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="fuwad-ctl-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def served(sockdir: Path) -> Iterator[Served]:
    """A real ControlServer serving the stand-in target."""
    harness = Served(sockdir / "fuwad.sock").start()
    try:
        yield harness
    finally:
        harness.stop()
