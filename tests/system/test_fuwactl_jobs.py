"""fuwactl's database commands, run as the real console script.

Each call is a real process against this test's database (``FUWAD_DSN``).
Calls that do not depend on each other run side by side to keep the suite
quick; the database is checked directly for what the commands claim.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from fuwad import JobSpec, QueueManager, embedded
from tests.conftest import embedded_data_dir, with_database

PARALLEL = 8
CALL_TIMEOUT_S = 60


def _fuwactl() -> str:
    beside = Path(sys.executable).parent / "fuwactl"
    found = str(beside) if beside.exists() else shutil.which("fuwactl")
    if not found:
        pytest.fail("the fuwactl console script is not installed; "
                    "run pip install -e . in this venv")
    return found


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


def environment(tmp_path: Path, dsn: str | None) -> dict[str, str]:
    """The caller's environment without any FUWAD_ setting but ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUWAD_")}
    env["FUWAD_DATA_DIR"] = str(tmp_path / "data")
    if dsn is not None:
        env["FUWAD_DSN"] = dsn
    return env


def fuwactl(env: dict[str, str], *args: str) -> Run:
    done = subprocess.run([_fuwactl(), *args], env=env, capture_output=True,
                          text=True, timeout=CALL_TIMEOUT_S, check=False)
    return Run(args, done.returncode, done.stdout, done.stderr)


def fuwactl_all(env: dict[str, str],
                calls: Sequence[Sequence[str]]) -> list[Run]:
    """Run independent calls side by side; return results in order."""
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda args: fuwactl(env, *args), calls))


def ok(run: Run) -> Run:
    assert (run.code, run.err) == (0, ""), run
    return run


@pytest.fixture
def env(tmp_path: Path, dsn: str) -> dict[str, str]:
    return environment(tmp_path, dsn)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Happy paths ----------------------------------------------------------------


async def test_push_prints_the_id_and_stores_every_option(
    env: dict[str, str], manager: QueueManager,
) -> None:
    target = datetime.now(timezone(timedelta(hours=2))) + timedelta(hours=3)
    plain, full, later, at, scripted = fuwactl_all(env, [
        ["push", "welcome", "app.jobs.SendEmail"],
        ["push", "report", "fuwad.examples.ChecksumReport",
         "--data", '{"path": "/srv/uploads", "deep": {"ü": [1, 2.5]}}',
         "--queue", "reports", "--priority", "high", "--delay", "60",
         "--max-attempts", "7"],
        ["push", "later", "app.jobs.A", "--priority", "3",
         "--at", "+90 minutes"],
        ["push", "at", "app.jobs.A", "--priority", "low",
         "--at", target.isoformat(timespec="seconds")],
        ["--json", "push", "scripted", "app.jobs.A"],
    ])

    job = await manager.get_job(int(ok(plain).out))
    assert plain.out == f"{job.id}\n"
    assert (job.job_name, job.job_class, job.job_data, job.queue,
            job.priority, job.max_attempts, job.delay) == (
        "welcome", "app.jobs.SendEmail", {}, "default", 5, None, 0)

    job = await manager.get_job(int(ok(full).out))
    assert (job.job_data, job.queue, job.priority, job.max_attempts,
            job.delay) == ({"path": "/srv/uploads", "deep": {"ü": [1, 2.5]}},
                           "reports", 10, 7, 60)
    assert job.available_at - job.created_at == timedelta(seconds=60)

    job = await manager.get_job(int(ok(later).out))
    assert (job.priority, job.delay) == (3, 5400)

    job = await manager.get_job(int(ok(at).out))
    assert job.priority == 1
    assert abs(job.available_at - target) < timedelta(seconds=5)

    scripted_id = ok(scripted).json()
    assert isinstance(scripted_id, dict)
    assert (await manager.get_job(scripted_id["id"])).job_name == "scripted"


async def test_list_and_stats_print_tables_and_json(
    env: dict[str, str], manager: QueueManager,
) -> None:
    first = await manager.push("resize", "app.jobs.Resize", queue="images")
    second = await manager.push("mail", "app.jobs.Mail", priority="high")
    third = await manager.push("mail", "app.jobs.Mail", max_attempts=4)
    await manager.mark_failed(third, "boom")

    (table, failed, images, by_class, page_two, scripted, after, empty,
     stats, stats_json) = fuwactl_all(env, [
        ["list"],
        ["list", "--status", "failed"],
        ["list", "--queue", "images"],
        ["list", "--class", "app.jobs.Mail"],
        ["list", "--limit", "1", "--page", "2"],
        ["--json", "list", "--limit", "2"],
        ["list", "--status", "pending", "--json"],
        ["list", "--status", "completed"],
        ["stats"],
        ["stats", "--json"],
    ])

    lines = ok(table).out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "NAME", "CLASS", "QUEUE",
                                "PRIORITY", "ATTEMPTS", "CREATED"]
    assert [line.split()[:2] for line in lines[1:4]] == [
        [str(third), "failed"], [str(second), "pending"],
        [str(first), "pending"]]
    assert lines[1].split()[2:7] == ["mail", "app.jobs.Mail", "default",
                                     "normal", "0/4"]
    assert lines[2].split()[5] == "high"
    assert lines[-1] == "page 1 of 1, 3 jobs"
    assert [ln.split()[0] for ln in ok(failed).out.splitlines()[1:-1]] == [
        str(third)]
    assert [ln.split()[0] for ln in ok(images).out.splitlines()[1:-1]] == [
        str(first)]
    assert len(ok(by_class).out.splitlines()) == 4
    assert ok(page_two).out.splitlines()[1].split()[0] == str(second)
    assert page_two.out.splitlines()[-1] == "page 2 of 3, 3 jobs"

    listed = ok(scripted).json()
    assert isinstance(listed, dict)
    assert (listed["total"], listed["page"], listed["limit"]) == (3, 1, 2)
    assert [job["id"] for job in listed["jobs"]] == [third, second]
    assert listed["jobs"][0]["last_error"] == "boom"
    assert listed["jobs"][0]["failed_at"].endswith("+00:00")
    pending = ok(after).json()
    assert isinstance(pending, dict)
    assert [job["id"] for job in pending["jobs"]] == [second, first]
    assert ok(empty).out == "no jobs\n"

    assert ok(stats).out.splitlines() == [
        "STATUS      JOBS", "pending     2", "processing  0", "completed   0",
        "failed      1", "cancelled   0", "total       3"]
    assert ok(stats_json).json() == {
        "pending": 2, "processing": 0, "completed": 0, "failed": 1,
        "cancelled": 0, "total": 3}


async def test_show_prints_every_field_and_escapes_control_characters(
    env: dict[str, str], manager: QueueManager,
) -> None:
    data = {"to": "ana@example.com", "note": "\x1b[31mred\x1b[0m",
            "items": [1, {"b": None}]}
    job_id = await manager.push("evil\x1b]0;owned\x07name", "app.jobs.Mail",
                                data, max_attempts=2)
    error = ("Traceback (most recent call last):\n"
             '  File "app/jobs.py", line 9, in handle\n'
             "\traise ValueError(text)\n"
             "ValueError: bad \x1b[2Jthing\rover\u202etxt.exe")
    await manager.mark_failed(job_id, error)

    shown, scripted = fuwactl_all(env, [["show", str(job_id)],
                                        ["show", "--json", str(job_id)]])

    out = ok(shown).out
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    fields = dict(line.split(None, 1) for line in out.splitlines()[:4])
    assert fields == {"id": str(job_id),
                      "name": "evil\\x1b]0;owned\\x07name",
                      "class": "app.jobs.Mail", "queue": "default"}
    for line in ["status        failed", "priority      5 (normal)",
                 "attempts      0 of 2", "started at    -", "worker        -"]:
        assert line in out.splitlines()
    assert "\n".join(["data:", "  {", '    "to": "ana@example.com",',
                      '    "note": "\\u001b[31mred\\u001b[0m",',
                      '    "items": [']) in out
    assert out.endswith("\n".join([
        "last error:",
        "  Traceback (most recent call last):",
        '    File "app/jobs.py", line 9, in handle',
        "  \traise ValueError(text)",
        "  ValueError: bad \\x1b[2Jthing\\x0dover\\u202etxt.exe",
    ]) + "\n")

    record = ok(scripted).json()
    assert isinstance(record, dict)
    assert (record["id"], record["job_data"], record["last_error"],
            record["status"]) == (job_id, data, error, "failed")
    assert datetime.fromisoformat(record["created_at"]).tzinfo is not None


async def test_retry_cancel_delete_and_cleanup_move_jobs(
    env: dict[str, str], manager: QueueManager, dsn: str,
) -> None:
    failed = await manager.push("a", "app.jobs.A")
    await manager.mark_failed(failed, "boom")
    delayed = await manager.push("b", "app.jobs.A")
    await manager.mark_completed(delayed)
    pending = await manager.push("c", "app.jobs.A")
    doomed = await manager.push("d", "app.jobs.A")
    old = await manager.push("e", "app.jobs.A")
    await manager.mark_completed(old)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE queue_jobs SET completed_at = now() - interval '2 days' "
            "WHERE id = $1", old)
    finally:
        await connection.close()

    retried, later, cancelled, deleted, cleaned = fuwactl_all(env, [
        ["retry", "--id", str(failed)],
        ["--json", "retry", "--id", str(delayed), "--delay", "+5 minutes"],
        ["cancel", "--id", str(pending)],
        ["delete", "--id", str(doomed), "--json"],
        ["cleanup"],
    ])

    assert ok(retried).out.startswith(f"job {failed} is pending again, due ")
    job = await manager.get_job(failed)
    assert (job.status, job.attempts, job.failed_at) == ("pending", 0, None)

    answer = ok(later).json()
    assert isinstance(answer, dict)
    assert (answer["id"], answer["status"]) == (delayed, "pending")
    job = await manager.get_job(delayed)
    assert job.available_at.isoformat() == answer["available_at"]
    assert job.available_at - datetime.now(timezone.utc) > timedelta(
        minutes=4)

    assert ok(cancelled).out == f"job {pending} cancelled\n"
    assert (await manager.get_job(pending)).status == "cancelled"
    assert ok(deleted).json() == {"id": doomed, "deleted": True,
                                  "status": "pending"}
    assert ok(cleaned).out.startswith("deleted 1 finished job ")
    stats = await manager.get_stats()
    assert (stats["total"], stats["pending"], stats["cancelled"]) == (3, 2, 1)

    spare = await manager.push("f", "app.jobs.A")
    again, scripted, stopped = fuwactl_all(env, [
        ["delete", "--id", str(pending)], ["--json", "cleanup"],
        ["--json", "cancel", "--id", str(spare)]])
    assert ok(again).out == f"job {pending} deleted (it was cancelled)\n"
    assert ok(stopped).json() == {"id": spare, "status": "cancelled"}
    assert (await manager.get_job(spare)).status == "cancelled"
    assert ok(scripted).json() == {"deleted": 0, "completed_job_ttl": 86400,
                                   "failed_job_ttl": 604800}


async def test_a_reader_that_stops_early_ends_the_command_quietly(
    env: dict[str, str], manager: QueueManager,
) -> None:
    # Far more output than a pipe buffers, so writing meets the closed end.
    await manager.push_many([JobSpec(f"n{i}", "app.jobs.A", {"x": "y" * 200})
                             for i in range(400)])
    process = subprocess.Popen(
        [_fuwactl(), "--json", "list", "--limit", "500"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == "{\n"
    process.stdout.close()  # as `fuwactl list | head -1` does
    err = process.stderr.read()
    assert process.wait(timeout=CALL_TIMEOUT_S) == 1
    assert err == ""


@pytest.fixture
def empty_dsn(server_dsn: str) -> Iterator[str]:
    """A database with no tables at all, dropped afterwards."""
    name = f"fuwad_ctl_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(server_dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server_dsn, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrate_creates_the_tables_once(
    tmp_path: Path, empty_dsn: str,
) -> None:
    env = environment(tmp_path, empty_dsn)

    before = fuwactl(env, "stats")
    assert (before.code, before.out) == (1, "")
    assert before.err == ("fuwactl: the queue tables do not exist in this "
                          "database; create them with 'fuwactl migrate'\n")

    assert ok(fuwactl(env, "migrate")).out == "applied 0001_initial.sql\n"
    again, scripted, stats = fuwactl_all(env, [
        ["migrate"], ["--json", "migrate"], ["--json", "stats"]])
    assert ok(again).out == "the schema is up to date\n"
    assert ok(scripted).json() == {"applied": []}
    assert ok(stats).json() == {
        "pending": 0, "processing": 0, "completed": 0, "failed": 0,
        "cancelled": 0, "total": 0}


def test_dsn_prints_the_configured_url_from_env_or_config_file(
    tmp_path: Path, dsn: str,
) -> None:
    config = tmp_path / "fuwad.ini"
    config.write_text(f"[database]\ndsn = {dsn}\n")
    no_dsn = environment(tmp_path, None)
    from_env, scripted, from_file = [
        *fuwactl_all(environment(tmp_path, dsn),
                     [["dsn"], ["dsn", "--json"]]),
        fuwactl(no_dsn, "--config", str(config), "dsn"),
    ]
    assert ok(from_env).out == f"{dsn}\n"
    assert ok(scripted).json() == {"dsn": dsn}
    assert ok(from_file).out == f"{dsn}\n"


async def test_without_a_dsn_commands_start_and_share_the_embedded_server(
    tmp_path: Path,
) -> None:
    env = environment(tmp_path, None)
    data_dir = embedded_data_dir()
    env["FUWAD_DATA_DIR"] = str(data_dir)
    try:
        printed = ok(fuwactl(env, "dsn")).out.strip()
        assert printed == embedded.dsn_for(data_dir)
        assert embedded.is_running(data_dir)
        ok(fuwactl(env, "migrate"))
        job_id = int(ok(fuwactl(env, "push", "hello", "app.jobs.A")).out)

        # psql or any other client reaches the same server by that URL.
        connection = await asyncpg.connect(printed)
        try:
            name = await connection.fetchval(
                "SELECT job_name FROM queue_jobs WHERE id = $1", job_id)
        finally:
            await connection.close()
        assert name == "hello"
        assert ok(fuwactl(env, "dsn")).out.strip() == printed
        assert "stopped the embedded PostgreSQL" in ok(
            fuwactl(env, "stop-db")).out
        assert not embedded.is_running(data_dir)
        assert "no embedded PostgreSQL runs" in ok(
            fuwactl(env, "stop-db")).out
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


# Bad input ------------------------------------------------------------------


def assert_refused(run: Run, code: int, message: str) -> None:
    """One clear message on stderr, the exit code, nothing on stdout."""
    assert (run.code, run.out) == (code, ""), run
    assert "Traceback" not in run.err, run
    assert message in run.err, run
    lines = run.err.splitlines()
    if lines[0].startswith("usage: "):
        # argparse: its usage (maybe wrapped), then the error naming the
        # command.
        assert lines[-1].startswith("fuwactl"), run
        assert ": error: " in lines[-1] and message in lines[-1], run
    else:  # our own refusal: exactly one line
        assert len(lines) == 1 and lines[0].startswith("fuwactl: "), run


async def test_bad_input_to_every_command_gives_its_message_and_code(
    env: dict[str, str], manager: QueueManager, tmp_path: Path,
) -> None:
    pending = await manager.push("p", "app.jobs.A")
    completed = await manager.push("c", "app.jobs.A")
    await manager.mark_completed(completed)
    failed = await manager.push("f", "app.jobs.A")
    await manager.mark_failed(failed, "boom")
    bad_ini = tmp_path / "bad.ini"
    bad_ini.write_text("[queue]\nworker_sleep = soon\n")
    a = ["push", "n", "app.jobs.A"]
    not_an_id = "a job id is a positive whole number, not"

    cases: list[tuple[list[str], int, str]] = [
        ([*a, "--data", "{bad"], 2, "--data is not valid JSON"),
        ([*a, "--data", '{"a": "x\\u0000y"}'], 2, "NUL character"),
        ([*a, "--data", "NaN"], 2, "job data must be JSON"),
        ([*a, "--priority", "11"], 2,
         "priority must be 1 (low) to 10 (high), not 11"),
        ([*a, "--priority", "urgent"], 2,
         "priority must be low, normal, high or 1..10"),
        ([*a, "--delay", "5", "--at", "+1 day"], 2,
         "argument --at: not allowed with argument --delay"),
        ([*a, "--delay", "-5"], 2, "a delay must be 0 or more seconds"),
        ([*a, "--delay", "soon"], 2, "cannot read 'soon' as a time"),
        ([*a, "--at", "2030-01-31T09:00:00"], 2, "has no timezone"),
        ([*a, "--at", "next tuesday"], 2, "cannot read --at 'next tuesday'"),
        ([*a, "--max-attempts", "0"], 2, "max_attempts must be 1 to 1000"),
        ([*a, "--queue", "two words"], 2, "queue must be 1 to 64"),
        (["push", "n", "not-a-class"], 2, "is not a dotted class path"),
        (["push", "n"], 2, "the following arguments are required: CLASS"),
        (["list", "--status", "stuck"], 2, "unknown status 'stuck'; use one"),
        (["list", "--page", "0"], 2, "argument --page: expected a whole"),
        (["list", "--limit", "x"], 2, "argument --limit: expected a whole"),
        (["show", "abc"], 2, f"{not_an_id} 'abc'"),
        (["show", "0"], 2, f"{not_an_id} '0'"),
        (["show", "-1"], 2, f"{not_an_id} '-1'"),
        (["show"], 2, "the following arguments are required: ID"),
        (["show", "999999"], 1, "job 999999 does not exist; list jobs"),
        (["show", "99999999999999999999"], 1, "does not exist"),
        (["retry", "--id", str(pending)], 1,
         f"job {pending} is pending and cannot be retried"),
        (["retry", "--id", str(failed), "--delay", "-1"], 2,
         "a delay must be 0 or more seconds"),
        (["retry", "--id", "999999"], 1, "job 999999 does not exist"),
        (["retry"], 2, "the following arguments are required: --id"),
        (["cancel", "--id", str(completed)], 1,
         f"job {completed} is completed and cannot be cancelled"),
        (["cancel", "--id", "abc"], 2, f"{not_an_id} 'abc'"),
        (["cancel", "--id", "-1"], 2, f"{not_an_id} '-1'"),
        (["cancel", "--id", "999999"], 1, "job 999999 does not exist"),
        (["delete", "--id", "0"], 2, f"{not_an_id} '0'"),
        (["delete", "--id", "999999"], 1, "job 999999 does not exist"),
        (["cleanup", "--now"], 2, "unrecognized arguments: --now"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        (["--config", "/nonexistent/fuwad.ini", "stats"], 2,
         "cannot read config file /nonexistent/fuwad.ini: No such file"),
        (["--config", str(bad_ini), "list"], 2,
         "[queue] worker_sleep must be a number, not 'soon'"),
    ]
    runs = fuwactl_all(env, [args for args, _, _ in cases])
    for run, (_, code, message) in zip(runs, cases):
        assert_refused(run, code, message)

    # Nothing was pushed or moved by a refused command.
    stats = await manager.get_stats()
    assert (stats["total"], stats["pending"], stats["failed"]) == (3, 1, 1)


def test_an_unreachable_database_is_one_line_for_every_command(
    tmp_path: Path,
) -> None:
    port = closed_port()
    env = environment(
        tmp_path, f"postgresql://fuwad:hunter2@127.0.0.1:{port}/fuwad")
    calls = [["migrate"], ["stats"], ["list"], ["show", "1"],
             ["push", "n", "app.jobs.A"], ["retry", "--id", "1"],
             ["cancel", "--id", "1"], ["delete", "--id", "1"],
             ["cleanup"], ["--json", "list"],
             ["push", "n", "app.jobs.A", "--priority", "11"]]
    expected = (f"cannot reach PostgreSQL at "
                f"postgresql://fuwad:***@127.0.0.1:{port}/fuwad")
    *runs, typo = fuwactl_all(env, calls)
    for run in runs:
        assert_refused(run, 1, expected)
        assert "hunter2" not in run.err

    # Input is checked before connecting: a typo is named as such.
    assert_refused(typo, 2, "priority must be 1 (low) to 10 (high)")

    odd = environment(tmp_path, "postgresql://u@127.0.0.1:99999/fuwad")
    assert_refused(fuwactl(odd, "stats"), 1, "cannot use the DSN")
