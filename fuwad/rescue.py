"""Rescue: handing the jobs of workers that are gone back to the queue.

One place for the rules, used by workers (on every heartbeat, and on the
supervisor's order when a sibling dies), by the supervisor's rescuer
process, and by ``fuwad worker-monitor``.  Each rescue is one transaction;
a job moves once, since a second rescuer finds it no longer leased.
"""

from __future__ import annotations

import logging
import os
import socket

import asyncpg

from fuwad import queries
from fuwad.config import QueueConfig

log = logging.getLogger("fuwad.rescue")


def host_name() -> str:
    """Return this host's name as workers record it.

    ``FUWAD_HOSTNAME`` overrides it, for containers that share a host name
    but not a process table.
    """
    return os.environ.get("FUWAD_HOSTNAME") or socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def rescue_worker(connection: asyncpg.Connection, q: QueueConfig,
                        worker_id: str, reason: str,
                        timed_out: dict[int, str] | None = None) -> int:
    """Rescue every job ``worker_id`` held; return how many moved.

    processing -> pending, due at once (a death is not the job's fault),
    or -> failed when no attempt is left.  A job in ``timed_out`` was the
    cause, so it backs off as a retry would, with its own reason.
    """
    moved = 0
    async with connection.transaction():
        for job_id, why in (timed_out or {}).items():
            rows = await connection.fetch(
                queries.RESCUE_JOBS, [worker_id], why, q.retry_delay,
                q.worker_max_attempts, q.retry_delay_max, [job_id])
            moved += len(rows)
        rows = await connection.fetch(
            queries.RESCUE_JOBS, [worker_id], reason, 0.0,
            q.worker_max_attempts, q.retry_delay_max, None)
        moved += len(rows)
        await connection.execute(queries.REMOVE_WORKER, worker_id)
    if moved:
        log.warning("jobs rescued worker_id=%s jobs=%d reason=%s",
                    worker_id, moved, reason)
    return moved


async def rescue_dead(connection: asyncpg.Connection, q: QueueConfig,
                      exclude: str = "") -> int:
    """Rescue the jobs of every worker that is gone; return how many.

    A worker is gone when its heartbeat is older than
    ``worker_cleanup_heartbeat_timeout`` (any host), or when it ran on this
    host and neither it nor its supervisor lives (a supervisor that lives
    rescues its own children, with the exact reason).
    """
    here = host_name()
    limit = q.worker_cleanup_heartbeat_timeout
    rescued = 0
    async with connection.transaction():
        rows = await connection.fetch(queries.RESCUE_CANDIDATES, limit, here,
                                      exclude)
        for row in rows:
            if row["stale"]:
                reason = (f"worker {row['id']} stopped heartbeating (over "
                          f"{limit:g}s) while running this job")
            elif row["host"] == here and not pid_alive(row["pid"]) \
                    and not (row["supervisor_pid"]
                             and pid_alive(row["supervisor_pid"])):
                reason = (f"worker {row['id']} is gone (pid {row['pid']} "
                          "not running) while running this job")
            else:
                continue
            moved = await rescue_worker(connection, q, row["id"], reason)
            rescued += moved
            log.warning("dead worker rescued worker_id=%s jobs=%d",
                        row["id"], moved)
    return rescued
