"""Every way a handler can misbehave has a defined outcome.

Each case pushes one job with a single attempt, waits for its end, checks
its status and last_error, and then shows the daemon still runs the next
job.
"""

from __future__ import annotations

import pytest

from fuwad import QueueManager
from fuwad.config import Config
from tests.conftest import wait_until
from tests.system.conftest import Daemon

CASES = [
    ("handlers.Fail", {}, "failed", "ValueError: failing on purpose"),
    ("handlers.HangAsync", {}, "failed", "JobTimeout: job timed out after 1"),
    ("handlers.SysExit", {}, "failed", "SystemExit: 3"),
    ("handlers.Exit", {"code": 9}, "failed", "exited with code 9"),
    ("handlers.Segfault", {}, "failed", "killed by signal 11 (SIGSEGV)"),
    ("handlers.NotAHandler", {}, "failed", "is not a subclass of"),
    ("nosuch.module.Job", {}, "failed", "cannot import module 'nosuch.module'"),
    ("handlers.Missing", {}, "failed", "module 'handlers' has no 'Missing'"),
    ("handlers.BadOutput", {}, "failed", "RuntimeError: bad \\x00 bytes"),
    ("handlers.Record", {}, "completed", None),
]


@pytest.fixture
def running(config: Config, daemon: Daemon) -> Daemon:
    daemon.start("--workers", "1").wait_ready()
    return daemon


@pytest.mark.parametrize(("job_class", "data", "status", "error"), CASES,
                         ids=[case[0] for case in CASES])
async def test_each_misbehaving_handler_has_a_defined_outcome(
    running: Daemon, manager: QueueManager, job_class: str,
    data: dict[str, object], status: str, error: str | None,
) -> None:
    job_id = await manager.push("case", job_class, data, max_attempts=1)

    async def ended() -> bool:
        return (await manager.get_job(job_id)).status in (
            "completed", "failed")
    await wait_until(ended, timeout=60, message=f"{job_class} to end")
    job = await manager.get_job(job_id)
    assert job.status == status
    if error is None:
        assert job.last_error is None
    else:
        assert error in (job.last_error or "")
        assert len(job.last_error or "") <= 17000  # bounded
    follower = await manager.push("next", "handlers.Record")

    async def next_done() -> bool:
        return (await manager.get_job(follower)).status == "completed"
    await wait_until(next_done, timeout=60, message="the next job")


async def test_a_handlers_own_max_attempts_holds_when_it_kills_its_worker(
    running: Daemon, manager: QueueManager,
) -> None:
    job_id = await manager.push("once", "handlers.ExitOnce")

    async def failed() -> bool:
        return (await manager.get_job(job_id)).status == "failed"
    await wait_until(failed, timeout=60, message="the job to fail")
    job = await manager.get_job(job_id)
    assert job.max_attempts == 1 and job.attempts == 1
    assert "exited with code 3" in (job.last_error or "")
    assert running.runs()[job_id] == 1
