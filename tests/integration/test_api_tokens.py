"""fuwactl token create, list and revoke, run as real processes against a
real database, and the tokens they make used on the API."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from fuwad import tokens
from fuwad.config import Config
from fuwad.http.app import make_app


def _script() -> str:
    beside = Path(sys.executable).parent / "fuwactl"
    found = str(beside) if beside.exists() else shutil.which("fuwactl")
    if found is None:
        pytest.fail("the fuwactl console script is not installed; "
                    "pip install -e . first")
    return found


def fuwactl(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real console script on ``dsn``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FUWAD_")}
    env["FUWAD_DSN"] = dsn
    return subprocess.run(
        [_script(), *args], env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_create_prints_the_token_once_and_stores_only_its_hash(
    dsn: str,
) -> None:
    made = fuwactl(dsn, "token", "create", "--name", "ops", "--role",
                   "operator", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("fwd_") and "\n" not in token
    assert "only time it is shown" in made.stderr

    listed = fuwactl(dsn, "token", "list")
    assert listed.returncode == 0
    assert "ops" in listed.stdout and "operator" in listed.stdout
    assert "active" in listed.stdout
    assert token not in listed.stdout
    assert tokens.hash_token(token) not in listed.stdout

    as_json = fuwactl(dsn, "--json", "token", "list")
    rows = json.loads(as_json.stdout)
    assert [(r["name"], r["role"], r["state"]) for r in rows] == [
        ("ops", "operator", "active")]
    assert rows[0]["expires_at"] is not None
    assert "token" not in rows[0] and "token_hash" not in rows[0]


def test_create_with_json_gives_an_object_with_the_token(dsn: str) -> None:
    made = fuwactl(dsn, "token", "create", "--name", "ci", "--role",
                   "viewer", "--json")
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)
    assert answer["token"].startswith("fwd_")
    assert (answer["name"], answer["role"], answer["expires_at"]) == (
        "ci", "viewer", None)


def test_an_active_name_cannot_be_reused_until_revoked(dsn: str) -> None:
    assert fuwactl(dsn, "token", "create", "--name", "a", "--role",
                   "admin").returncode == 0
    again = fuwactl(dsn, "token", "create", "--name", "a", "--role",
                    "viewer")
    assert again.returncode == 1
    assert again.stderr.startswith("fuwactl: a token named 'a' already "
                                   "exists and is active")
    revoked = fuwactl(dsn, "token", "revoke", "a")
    assert (revoked.returncode, revoked.stdout) == (0, "token a revoked\n")
    listed = json.loads(fuwactl(dsn, "--json", "token", "list").stdout)
    assert listed[0]["state"] == "revoked"
    assert fuwactl(dsn, "token", "create", "--name", "a", "--role",
                   "viewer").returncode == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "x", "--role", "root"], "unknown role 'root'"),
    (["--name", "x y", "--role", "admin"], "token name 'x y'"),
    (["--name", "x", "--role", "admin", "--expires", "soon"],
     "cannot read expiry 'soon'"),
    (["--name", "x", "--role", "admin", "--expires", "0d"], "above 0"),
    (["--role", "admin"], "--name"),
])
def test_bad_create_arguments_exit_2_with_one_line(
    dsn: str, args: list[str], message: str,
) -> None:
    result = fuwactl(dsn, "token", "create", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_revoking_an_unknown_token_exits_1(dsn: str) -> None:
    result = fuwactl(dsn, "token", "revoke", "ghost")
    assert result.returncode == 1
    assert result.stderr == ("fuwactl: no token is named 'ghost'; list them "
                             "with 'fuwactl token list'\n")


def test_an_unreachable_database_is_one_line_and_exit_1(
    tmp_path: object,
) -> None:
    result = fuwactl("postgresql://nobody@127.0.0.1:1/none", "token", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("fuwactl: cannot reach PostgreSQL")
    assert "Traceback" not in result.stderr


async def test_a_token_from_fuwactl_works_until_revoked(
    config: Config, dsn: str,
) -> None:
    token = fuwactl(dsn, "token", "create", "--name", "web", "--role",
                    "viewer").stdout.strip()
    quiet = replace(config, auth=replace(config.auth, failed_rate=0))
    async with TestClient(TestServer(make_app(quiet, dsn))) as client:
        headers = {"Authorization": f"Bearer {token}"}
        response = await client.get("/api/queue/whoami", headers=headers)
        assert (await response.json())["data"] == {"name": "web",
                                                   "role": "viewer"}
        connection = await asyncpg.connect(dsn)
        try:
            used = await connection.fetchval(
                "SELECT last_used_at FROM queue_api_tokens")
            assert used is not None
        finally:
            await connection.close()
        assert fuwactl(dsn, "token", "revoke", "web").returncode == 0
        response = await client.get("/api/queue/whoami", headers=headers)
        assert response.status == 401


async def _make_tokens(dsn: str, count: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for n in range(count):
            await tokens.create(connection, f"t{n}", tokens.Role.VIEWER)
    finally:
        await connection.close()


@pytest.mark.parametrize("count", [1, 300])
def test_a_reader_that_stops_early_ends_token_list_quietly(
    dsn: str, count: int,
) -> None:
    # One token's JSON waits in the buffer until exit; three hundred
    # tokens' overflow it while listing.  Either way the reader is gone
    # before the first byte, as with `fuwactl --json token list | head -1`
    # once head has its line.
    asyncio.run(_make_tokens(dsn, count))
    reader, writer = os.pipe()
    os.close(reader)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FUWAD_")}
    env["FUWAD_DSN"] = dsn
    try:
        done = subprocess.run(
            [_script(), "--json", "token", "list"], env=env, stdout=writer,
            stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(writer)
    assert done.stderr == ""
    assert done.returncode == 1  # as fuwactl list does: the output is cut
