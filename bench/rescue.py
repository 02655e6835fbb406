"""How long from a worker's death to its job running again.

Usage: python bench/rescue.py [--rounds 20]

Starts ``fuwad run --workers 2`` on a fresh database, then, each round,
pushes a slow job, waits until a worker runs it, SIGKILLs that worker and
times until the job is claimed again (its ``started_at``, set by the claim,
against the wall clock at the kill: both on this host).  Prints the median
and the worst of the rounds, and for scale the heartbeat timeout that a
rescue by heartbeat alone would have waited.

The database is the embedded server in a temporary directory, or a new
database created (and dropped after) on the server named by
FUWAD_BENCH_DSN.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from fuwad import QueueManager
from fuwad.config import load
from fuwad.control.client import ControlClient
from fuwad.errors import FuwadError

sys.path.insert(0, str(Path(__file__).parent))
from throughput import bench_database, fresh_schema  # noqa: E402


def worker_on(client: ControlClient, job_id: int) -> int | None:
    try:
        workers = client.request("workers")
    except FuwadError:
        return None
    for worker in workers:
        if worker["job_id"] == job_id:
            return int(worker["pid"])
    return None


async def one_round(dsn: str, client: ControlClient,
                    manager: QueueManager) -> float:
    job_id = await manager.push("victim", "fuwad.examples.Sleep",
                                {"seconds": 1})
    pid = None
    while pid is None:
        await asyncio.sleep(0.01)
        pid = worker_on(client, job_id)
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    connection = await asyncpg.connect(dsn)
    try:
        while True:
            row = await connection.fetchrow(
                "SELECT extract(epoch FROM started_at) AS started, attempts "
                "FROM queue_jobs WHERE id = $1", job_id)
            if row["attempts"] >= 2:
                break
            await asyncio.sleep(0.005)
        # Let the job finish, so the next round's job is a worker's only one
        # and the control socket names it.
        while await connection.fetchval(
                "SELECT status FROM queue_jobs WHERE id = $1",
                job_id) != "completed":
            await asyncio.sleep(0.05)
        return float(row["started"]) - killed
    finally:
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    async with bench_database() as dsn:
        work = Path(tempfile.mkdtemp(prefix="fuwad-bench-run-"))
        try:
            await measure(dsn, work, args.rounds)
        finally:
            shutil.rmtree(work, ignore_errors=True)


async def measure(dsn: str, work: Path, rounds: int) -> None:
    await fresh_schema(dsn)
    socket_path = work / "fuwad.sock"
    ini = work / "fuwad.ini"
    ini.write_text(f"[database]\ndsn = {dsn}\n[control]\nsocket = "
                   f"{socket_path}\n[http]\nenabled = false\n"
                   "[log]\nlevel = WARNING\n")
    fuwad = Path(sys.executable).with_name("fuwad")
    daemon = subprocess.Popen([str(fuwad), "run", "--workers", "2",
                               "--config", str(ini)])
    client = ControlClient(socket_path, 5.0)
    config = load(ini, env={})
    try:
        while True:
            try:
                ready = [w for w in client.request("workers")
                         if w["state"] == "idle"]
            except FuwadError:
                ready = []
            if len(ready) == 2:
                break
            await asyncio.sleep(0.05)
        async with await QueueManager.connect(dsn, config) as manager:
            waits = [await one_round(dsn, client, manager)
                     for _ in range(rounds)]
        print(f"death to re-claim over {rounds} kills: median "
              f"{statistics.median(waits) * 1000:.0f} ms, worst "
              f"{max(waits) * 1000:.0f} ms (heartbeat timeout: "
              f"{config.queue.worker_cleanup_heartbeat_timeout:g} s)")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)

if __name__ == "__main__":
    asyncio.run(main())
