"""How many no-op jobs a second one fuwad worker runs, against a ceiling.

Usage: python bench/throughput.py [--jobs N] [--concurrency 10,100]

For each concurrency it pushes N no-op jobs in one bulk call, starts one
``fuwad worker`` process (then two, at the highest concurrency), and times
from the start of the workers until the last job is completed (their own
start-up included).  The ceiling is
PostgreSQL alone doing the same moves with the same statements, batches of
100, from one connection and no handler at all.  Every figure comes from one
run on one database, so ratios between them hold on a noisy machine where
absolute numbers do not.

The database is the embedded server in a temporary directory, or a new
database created (and dropped after) on the server named by
FUWAD_BENCH_DSN, whose own tables are never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from fuwad import JobSpec, QueueManager, db, embedded, migrate, queries
from fuwad.config import load

NOOP = "fuwad.examples.Noop"


@contextlib.asynccontextmanager
async def bench_database() -> AsyncIterator[str]:
    """Yield the DSN of a database of the benchmark's own."""
    server = os.environ.get("FUWAD_BENCH_DSN")
    if not server:
        data_dir = Path(tempfile.mkdtemp(prefix="fuwad-bench-"))
        try:
            yield embedded.ensure_running(data_dir)
        finally:
            embedded.stop(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)
        return
    name = f"fuwad_bench_{os.getpid()}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def fresh_schema(dsn: str) -> None:
    connection = await db.connect(dsn)
    try:
        # The benchmark's own database: start each run from nothing.
        await connection.execute("DROP SCHEMA public CASCADE; "
                                 "CREATE SCHEMA public")
        await migrate.migrate(connection)
    finally:
        await connection.close()


async def push(dsn: str, count: int) -> None:
    config = load(path="", env={})
    async with await QueueManager.connect(dsn, config) as manager:
        await manager.push_many(JobSpec("noop", NOOP) for _ in range(count))


async def completed(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(
            "SELECT count(*) FROM queue_jobs WHERE status = 'completed'"))
    finally:
        await connection.close()


async def ceiling(dsn: str, count: int, batch: int = 100) -> float:
    """Jobs a second PostgreSQL claims and completes with no worker."""
    await fresh_schema(dsn)
    await push(dsn, count)
    connection = await asyncpg.connect(dsn)
    try:
        began = time.perf_counter()
        while True:
            rows = await connection.fetch(queries.CLAIM_JOBS, "bench", None,
                                          batch)
            if not rows:
                break
            await connection.fetch(
                queries.COMPLETE_JOBS, "bench", [r["id"] for r in rows],
                [r["attempts"] for r in rows])
        return count / (time.perf_counter() - began)
    finally:
        await connection.close()


async def workers(dsn: str, count: int, concurrency: int,
                  processes: int = 1) -> float:
    """Jobs a second ``processes`` worker processes run, start-up included."""
    await fresh_schema(dsn)
    await push(dsn, count)
    fuwad = Path(sys.executable).with_name("fuwad")
    env = dict(os.environ, FUWAD_DSN=dsn, FUWAD_LOG_LEVEL="WARNING",
               FUWAD_QUEUE_CONCURRENCY=str(concurrency))
    began = time.perf_counter()
    started = [subprocess.Popen([str(fuwad), "worker"], env=env)
               for _ in range(processes)]
    try:
        while await completed(dsn) < count:
            await asyncio.sleep(0.02)
        return count / (time.perf_counter() - began)
    finally:
        for worker in started:
            worker.terminate()
        for worker in started:
            worker.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--concurrency", default="10,100")
    args = parser.parse_args()
    async with bench_database() as dsn:
        top = await ceiling(dsn, args.jobs)
        print(f"PostgreSQL alone, batches of 100: {top:,.0f} jobs/s")
        for level in (int(c) for c in args.concurrency.split(",")):
            rate = await workers(dsn, args.jobs, level)
            print(f"one worker, concurrency {level}: {rate:,.0f} jobs/s "
                  f"({rate / top:.0%} of the ceiling)")
        level = max(int(c) for c in args.concurrency.split(","))
        rate = await workers(dsn, args.jobs, level, processes=2)
        print(f"two workers, concurrency {level}: {rate:,.0f} jobs/s "
              f"({rate / top:.0%} of the ceiling)")

if __name__ == "__main__":
    asyncio.run(main())
