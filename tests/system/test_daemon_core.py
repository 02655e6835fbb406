"""The daemon end to end: real PostgreSQL, real processes, real producers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import subprocess
from pathlib import Path

import asyncpg

from fuwad import JobSpec, QueueManager, embedded
from fuwad.config import Config, with_queue
from tests.conftest import embedded_data_dir, wait_until
from tests.system.conftest import Daemon, command, run_entries


async def _statuses(dsn: str, ids: list[int]) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT status, count(*) FROM queue_jobs WHERE id = ANY($1) "
            "GROUP BY status", ids)
    finally:
        await connection.close()
    return {row["status"]: row["count"] for row in rows}


async def test_fresh_data_dir_runs_sql_python_and_fuwactl_jobs_once(
    config: Config, tmp_path: Path, daemons: list[Daemon],
) -> None:
    # No DSN at all: the daemon starts the embedded server in a fresh
    # data directory, and everyone else joins it there.
    data_dir = embedded_data_dir() / "fresh"
    bare = dataclasses.replace(
        config, database=dataclasses.replace(config.database, dsn="",
                                             data_dir=str(data_dir)))
    daemon = Daemon(bare, tmp_path)
    daemons.append(daemon)
    try:
        daemon.start("--workers", "2").wait_ready(2, timeout=60)
        dsn = embedded.dsn_for(data_dir)

        connection = await asyncpg.connect(dsn)
        try:
            await connection.executemany(
                "INSERT INTO queue_jobs (job_name, job_class, job_data) "
                "VALUES ($1, $2, $3)",
                [(f"sql-{i}", "handlers.Record", '{"from": "sql"}')
                 for i in range(500)])
        finally:
            await connection.close()

        async with await QueueManager.connect(dsn, bare) as manager:
            await manager.push_many(
                [JobSpec(f"py-{i}", "handlers.Record", {"i": i})
                 for i in range(500)])

        env = daemon.env() | {"FUWAD_DSN": dsn}
        for i in range(10):
            pushed = subprocess.run(
                [command("fuwactl"), "push", f"cli-{i}", "handlers.Record",
                 "--data", '{"from": "cli"}'],
                env=env, capture_output=True, text=True, timeout=60)
            assert pushed.returncode == 0, pushed.stderr

        async def all_done() -> bool:
            counts = await _count_statuses(dsn)
            return counts.get("completed", 0) == 1010
        await wait_until(all_done, timeout=120, message="1010 jobs done")
        runs = daemon.runs()
        assert len(runs) == 1010
        assert set(runs.values()) == {1}, "a job ran more than once"
        # Ctrl-C reaches the daemon's whole process group: the daemon
        # drains and exits 0, and the shared database keeps running.
        os.killpg(daemon.pid, signal.SIGINT)
        assert daemon.wait_exit() == 0
        assert embedded.is_running(data_dir)
    finally:
        daemon.kill_all()
        embedded.stop(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


async def _count_statuses(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT status, count(*) FROM queue_jobs GROUP BY status")
    finally:
        await connection.close()
    return {row["status"]: row["count"] for row in rows}


async def test_failing_job_backs_off_then_fails_with_its_traceback(
    config: Config, daemon: Daemon, manager: QueueManager,
) -> None:
    daemon.start("--workers", "1").wait_ready()
    job_id = await manager.push("doomed", "handlers.Fail")

    async def failed() -> bool:
        return (await manager.get_job(job_id)).status == "failed"
    await wait_until(failed, timeout=60, message="job failed for good")

    job = await manager.get_job(job_id)
    assert job.attempts == 3  # handlers.Fail.max_attempts
    assert "ValueError: failing on purpose, attempt 3" in (job.last_error or "")
    assert "Traceback (most recent call last)" in (job.last_error or "")
    assert 'tests/handlers.py", line' in (job.last_error or "")
    times = [t for (jid, _a, _p, t, _n) in run_entries(daemon.runlog)
             if jid == job_id]
    assert len(times) == 3
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    # Backoff from 0.3 s doubling, each spread over its upper half.
    assert first_gap >= 0.15 and second_gap >= 0.3
    assert second_gap > first_gap * 0.9


async def test_notify_wakes_a_worker_long_before_its_poll(
    config: Config, tmp_path: Path, daemons: list[Daemon], dsn: str,
) -> None:
    slow_poll = with_queue(config, worker_sleep=60.0)
    daemon = Daemon(slow_poll, tmp_path)
    daemons.append(daemon)
    daemon.start("--workers", "1").wait_ready()
    connection = await asyncpg.connect(dsn)
    try:
        job_id = await connection.fetchval(
            "INSERT INTO queue_jobs (job_name, job_class, job_data) "
            "VALUES ('wake', 'handlers.Record', '{}') RETURNING id")

        async def started() -> float | None:
            return await connection.fetchval(
                "SELECT extract(epoch FROM started_at - created_at) "
                "FROM queue_jobs WHERE id = $1 AND started_at IS NOT NULL",
                job_id)
        waited = await wait_until(started, timeout=30,
                                  message="the job to start")
    finally:
        await connection.close()
    # Polling alone would take up to 60 s; NOTIFY takes milliseconds.  The
    # bound is loose on purpose: the machine is shared and noisy.
    assert float(waited) < 10.0
    print(f"notify-to-start latency: {float(waited) * 1000:.1f} ms")


async def test_sigterm_lets_the_running_job_finish_and_exits_zero(
    config: Config, daemon: Daemon, manager: QueueManager,
) -> None:
    daemon.start("--workers", "1").wait_ready()
    job_id = await manager.push("slow", "handlers.Sleep", {"seconds": 2})

    async def running() -> bool:
        return (await manager.get_job(job_id)).status == "processing"
    await wait_until(running, message="the job to start")
    daemon.signal(signal.SIGTERM)
    code = await asyncio.to_thread(daemon.wait_exit, 60)
    assert code == 0
    assert (await manager.get_job(job_id)).status == "completed"
    assert daemon.runs()[job_id] == 1


async def test_worker_alone_runs_jobs_and_stops_on_sigterm(
    config: Config, daemon: Daemon, manager: QueueManager, dsn: str,
) -> None:
    daemon.start(subcommand="worker")
    ids = await manager.push_many(
        [JobSpec(f"w{i}", "handlers.RecordSync") for i in range(50)])

    async def done() -> bool:
        return (await _statuses(dsn, ids)).get("completed") == 50
    await wait_until(done, timeout=60, message="50 jobs done by one worker")
    daemon.signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.wait_exit, 60) == 0
    assert set(daemon.runs().values()) == {1}


async def test_data_too_deep_to_decode_fails_only_its_own_job(
    config: Config, daemon: Daemon, manager: QueueManager, dsn: str,
) -> None:
    # jsonb takes nesting far deeper than Python can decode; a producer in
    # another language may insert it.
    daemon.start("--workers", "1").wait_ready()
    deep = "[" * 3000 + "]" * 3000
    connection = await asyncpg.connect(dsn)
    try:
        poison = await connection.fetchval(
            "INSERT INTO queue_jobs (job_name, job_class, job_data) "
            "VALUES ('deep', 'handlers.Record', $1::text::jsonb) "
            "RETURNING id", deep)
    finally:
        await connection.close()
    fine = await manager.push("fine", "handlers.Record")

    async def both_ended() -> bool:
        jobs = [await manager.get_job(i) for i in (poison, fine)]
        return jobs[0].status == "failed" and jobs[1].status == "completed"
    await wait_until(both_ended, timeout=60, message="both jobs to end")
    job = await manager.get_job(poison)
    assert "nested too deeply to decode" in (job.last_error or "")
    assert "nested too deeply" in str(job.job_data)
    listed, total = await manager.list_jobs()
    assert total == 2 and {j.id for j in listed} == {poison, fine}
    assert "crash" not in daemon.log()
    assert daemon.runs()[poison] == 0
