"""Handlers the system tests push: each does one thing a real one might.

Every run appends ``<job id> <attempt> <pid> <unix time> [note]`` to the
file named by
``FUWAD_TEST_RUNLOG`` (one small O_APPEND write, atomic across processes),
so tests can count exactly how often each job ran.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import sys
import time
from typing import Any

from fuwad import Job, JobHandler


def record(job: Job, note: str = "") -> None:
    path = os.environ.get("FUWAD_TEST_RUNLOG")
    if path:
        line = (f"{job.id} {job.attempts} {os.getpid()} {time.time():.6f} "
                f"{note}").rstrip()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


class Record(JobHandler):
    async def handle(self, data: Any, job: Job) -> None:
        record(job)


class RecordSync(JobHandler):
    def handle(self, data: Any, job: Job) -> None:
        record(job)


class Fail(JobHandler):
    max_attempts = 3
    retry_delay = 0.3
    retry_delay_max = 5.0

    def handle(self, data: Any, job: Job) -> None:
        record(job)
        raise ValueError(f"failing on purpose, attempt {job.attempts}")


class Sleep(JobHandler):
    async def handle(self, data: Any, job: Job) -> None:
        record(job, "start")
        await asyncio.sleep(float(data.get("seconds", 1)))
        record(job, "end")


class SleepSync(JobHandler):
    def handle(self, data: Any, job: Job) -> None:
        record(job, "start")
        time.sleep(float(data.get("seconds", 1)))
        record(job, "end")


class BusyLoop(JobHandler):
    timeout = 2
    max_attempts = 1

    def handle(self, data: Any, job: Job) -> None:
        record(job, "start")
        while True:
            pass


class Exit(JobHandler):
    def handle(self, data: Any, job: Job) -> None:
        record(job)
        os._exit(int(data.get("code", 9)))


class Segfault(JobHandler):
    max_attempts = 1

    def handle(self, data: Any, job: Job) -> None:
        record(job)
        ctypes.string_at(0)


class SysExit(JobHandler):
    max_attempts = 1

    def handle(self, data: Any, job: Job) -> None:
        record(job)
        sys.exit(3)


class NotAHandler:
    def handle(self, data: Any, job: Job) -> None:
        record(job)


class RegexHang(JobHandler):
    """Holds the GIL in C for ages: the worker's event loop cannot run."""

    timeout = 1
    max_attempts = 1

    def handle(self, data: Any, job: Job) -> None:
        record(job, "start")
        re.match(r"(a+)+$", "a" * 64 + "b")


class Allocate(JobHandler):
    """Keeps memory after it returns, as a leaky handler would."""

    kept: list[bytes] = []

    def handle(self, data: Any, job: Job) -> None:
        Allocate.kept.append(b"x" * int(data.get("bytes", 0)))
        record(job)


class HangAsync(JobHandler):
    timeout = 1

    async def handle(self, data: Any, job: Job) -> None:
        record(job, "start")
        await asyncio.Event().wait()


class BadOutput(JobHandler):
    """Raises with text PostgreSQL would refuse: NUL and broken UTF-8."""

    def handle(self, data: Any, job: Job) -> None:
        record(job)
        raise RuntimeError("bad \x00 bytes " + b"\xff\xfe".decode("latin-1")
                           + "\udcff" + "x" * 100_000)


class ExitOnce(JobHandler):
    """Kills its worker; its class allows one attempt only."""

    max_attempts = 1

    def handle(self, data: Any, job: Job) -> None:
        record(job)
        os._exit(3)
