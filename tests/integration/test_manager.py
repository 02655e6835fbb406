"""QueueManager against a real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from fuwad import JobSpec, QueueManager
from fuwad.errors import InvalidJob, InvalidMove, JobNotFound


async def test_push_stores_a_pending_job_with_defaults(
    manager: QueueManager,
) -> None:
    job_id = await manager.push("welcome", "app.jobs.SendEmail", {"to": "a@b"})
    job = await manager.get_job(job_id)
    assert (job.status, job.priority, job.queue, job.attempts) == (
        "pending", 5, "default", 0)
    assert job.job_data == {"to": "a@b"}


async def test_higher_priority_then_older_comes_first(
    manager: QueueManager,
) -> None:
    low = await manager.push_low("a", "app.jobs.A")
    first = await manager.push("b", "app.jobs.A")
    high = await manager.push_high("c", "app.jobs.A")
    second = await manager.push("d", "app.jobs.A")
    order = [j.id for j in await manager.get_pending_jobs()]
    assert order == [high, first, second, low]


async def test_push_many_is_one_statement_and_keeps_order(
    manager: QueueManager,
) -> None:
    specs = [JobSpec(f"n{i}", "app.jobs.A", {"i": i}) for i in range(1000)]
    ids = await manager.push_many(specs)
    assert len(ids) == 1000 and ids == sorted(ids)
    assert (await manager.get_job(ids[7])).job_data == {"i": 7}
    assert (await manager.get_stats())["pending"] == 1000


async def test_push_many_refuses_the_whole_batch_on_one_bad_job(
    manager: QueueManager,
) -> None:
    specs = [JobSpec("ok", "app.jobs.A"), JobSpec("bad", "app.jobs.A",
                                                  priority=11)]
    with pytest.raises(InvalidJob, match="priority"):
        await manager.push_many(specs)
    assert (await manager.get_stats())["total"] == 0


async def test_push_joins_the_callers_transaction(
    manager: QueueManager, dsn: str,
) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await manager.push("x", "app.jobs.A", connection=connection)
        await transaction.rollback()
        async with connection.transaction():
            kept = await manager.push("y", "app.jobs.A", connection=connection)
    finally:
        await connection.close()
    stats = await manager.get_stats()
    assert stats["total"] == 1
    assert (await manager.get_job(kept)).job_name == "y"


@pytest.mark.parametrize(
    ("when", "low", "high"),
    [
        ("+90 minutes", 5390, 5410),
        ("+1 day", 86390, 86410),
        (30, 25, 35),
        (timedelta(hours=2), 7190, 7210),
    ],
)
async def test_schedule_sets_available_at_by_the_database_clock(
    manager: QueueManager, when: object, low: int, high: int,
) -> None:
    job_id = await manager.schedule("later", "app.jobs.A", when)
    job = await manager.get_job(job_id)
    wait = (job.available_at - job.created_at).total_seconds()
    assert low <= wait <= high


async def test_schedule_takes_an_aware_datetime(manager: QueueManager) -> None:
    when = datetime.now(timezone.utc) + timedelta(hours=3)
    job = await manager.get_job(await manager.schedule("t", "app.jobs.A", when))
    assert abs((job.available_at - when).total_seconds()) < 5


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (datetime(2030, 1, 1), "naive datetime"),
        ("next tuesday", "cannot read"),
        (-5, "0 or more"),
        (float("nan"), "0 or more"),
        (float("inf"), "0 or more"),
        (10**12, "10-year"),
    ],
)
async def test_schedule_refuses_unusable_times(
    manager: QueueManager, when: object, message: str,
) -> None:
    with pytest.raises(InvalidJob, match=message):
        await manager.schedule("t", "app.jobs.A", when)  # type: ignore


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": {"s": "a\x00b"}}, "NUL"),
        ({"data": {"x": object()}}, "must be JSON"),
        ({"data": {"x": float("nan")}}, "must be JSON"),
        ({"data": "x" * 2_000_000}, "over the"),
        ({"job_class": "not a path"}, "dotted class path"),
        ({"queue": "bad queue!"}, "queue must be"),
        ({"priority": 0}, "priority"),
        ({"priority": "urgent"}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"job_name": ""}, "job_name"),
    ],
)
async def test_push_refuses_bad_input_with_a_clear_error(
    manager: QueueManager, kwargs: dict[str, object], message: str,
) -> None:
    args: dict[str, object] = {"job_name": "n", "job_class": "app.jobs.A"}
    args.update(kwargs)
    with pytest.raises(InvalidJob, match=message):
        await manager.push(**args)  # type: ignore[arg-type]
    assert (await manager.get_stats())["total"] == 0


async def test_cancel_retry_delete_and_their_refusals(
    manager: QueueManager,
) -> None:
    job_id = await manager.push("x", "app.jobs.A")
    with pytest.raises(InvalidMove, match="is pending and cannot be retried"):
        await manager.retry(job_id)
    await manager.cancel(job_id)
    assert (await manager.get_job(job_id)).status == "cancelled"
    with pytest.raises(InvalidMove, match="cancelled"):
        await manager.cancel(job_id)
    other = await manager.push("y", "app.jobs.A")
    await manager.mark_failed(other, "boom")
    await manager.retry(other, delay=60)
    job = await manager.get_job(other)
    assert job.status == "pending" and job.attempts == 0
    assert (job.available_at - job.created_at).total_seconds() >= 55
    assert await manager.delete(other) == "pending"
    with pytest.raises(JobNotFound, match=f"job {other} does not exist"):
        await manager.get_job(other)
    with pytest.raises(InvalidJob, match="positive integer"):
        await manager.get_job(0)


async def test_stats_count_every_status(manager: QueueManager) -> None:
    a = await manager.push("a", "app.jobs.A")
    b = await manager.push("b", "app.jobs.A")
    await manager.push("c", "app.jobs.A")
    await manager.mark_completed(a)
    await manager.mark_failed(b)
    stats = await manager.get_stats()
    assert stats == {"pending": 1, "processing": 0, "completed": 1,
                     "failed": 1, "cancelled": 0, "total": 3}


async def test_cleanup_removes_only_jobs_past_their_ttl(
    manager: QueueManager, dsn: str,
) -> None:
    old_done = await manager.push("a", "app.jobs.A")
    new_done = await manager.push("b", "app.jobs.A")
    old_failed = await manager.push("c", "app.jobs.A")
    for job_id in (old_done, new_done):
        await manager.mark_completed(job_id)
    await manager.mark_failed(old_failed)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE queue_jobs SET completed_at = now() - interval '2 days',"
            " failed_at = now() - interval '30 days'"
            " WHERE id = ANY($1::bigint[])", [old_done, old_failed])
    finally:
        await connection.close()
    assert await manager.cleanup() == 2
    assert (await manager.get_job(new_done)).status == "completed"


async def test_list_jobs_pages_newest_first_with_filters(
    manager: QueueManager,
) -> None:
    ids = await manager.push_many(
        [JobSpec(f"j{i}", "app.jobs.A" if i % 2 else "app.jobs.B",
                 queue="mail" if i < 5 else "default") for i in range(12)])
    page, total = await manager.list_jobs(page=2, limit=5)
    assert total == 12 and [j.id for j in page] == ids[::-1][5:10]
    page, total = await manager.list_jobs(queue="mail", job_class="app.jobs.A")
    assert total == 2 and {j.id for j in page} == {ids[1], ids[3]}
    with pytest.raises(InvalidJob, match="use one of pending"):
        await manager.list_jobs(status="weird")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": {"s": "\ud800"}}, "not valid Unicode"),
        ({"job_name": "bad \udcff name"}, "valid Unicode"),
    ],
)
async def test_push_refuses_text_that_is_not_unicode(
    manager: QueueManager, kwargs: dict[str, object], message: str,
) -> None:
    args: dict[str, object] = {"job_name": "n", "job_class": "app.jobs.A"}
    args.update(kwargs)
    with pytest.raises(InvalidJob, match=message):
        await manager.push(**args)  # type: ignore[arg-type]


async def test_a_page_past_any_table_is_refused_clearly(
    manager: QueueManager,
) -> None:
    with pytest.raises(InvalidJob, match="page must be at most"):
        await manager.list_jobs(page=10**20)
