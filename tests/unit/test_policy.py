"""The supervisor's decisions and the retry backoff, without a process."""

from __future__ import annotations

import dataclasses

import pytest

from fuwad import policy
from fuwad.policy import (ChildView, Finish, Kill, RunningJob, ScaleTo,
                          Snapshot, Spawn, Stop, backoff, plan)


def snap(workers: tuple[ChildView, ...] = (), **changes: object) -> Snapshot:
    base = Snapshot(workers=workers, target=2, generation=0, draining=False,
                    drain_deadline=None, spawn_not_before=0.0, kill_grace=5.0,
                    stop_timeout=35.0, concurrency=10)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def worker(pid: int, **changes: object) -> ChildView:
    base = ChildView(pid=pid, generation=0, started=0.0, ready=True)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_spawns_up_to_the_target() -> None:
    assert plan(snap((worker(1),)), now=10) == [Spawn("below target")]
    assert plan(snap((worker(1), worker(2))), now=10) == []


def test_waits_out_a_crash_loop_backoff_before_spawning() -> None:
    assert plan(snap(spawn_not_before=12.0), now=10) == []
    assert len(plan(snap(spawn_not_before=12.0), now=12)) == 2


def test_crash_backoff_grows_and_is_capped() -> None:
    delays = [policy.spawn_delay(n) for n in range(0, 10)]
    assert delays[:5] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert max(delays) == policy.CRASH_BACKOFF_MAX_S


def test_a_job_past_its_deadline_and_two_graces_stops_its_worker() -> None:
    job = RunningJob(7, "app.Slow", timeout=2.0, deadline=100.0)
    busy = worker(1, jobs=(job,))
    assert plan(snap((busy, worker(2))), now=109.9) == []
    assert plan(snap((busy, worker(2))), now=110.0) == [
        Stop(1, "job 7 timed out after 2s", (job,))]


def test_a_stopped_worker_with_an_overdue_job_is_killed_after_a_grace() -> None:
    job = RunningJob(7, "app.Slow", timeout=2.0, deadline=100.0)
    stopped = worker(1, jobs=(job,), stop_sent=110.0, retiring=True)
    actions = plan(snap((stopped, worker(2))), now=115.0)
    assert Kill(1, "did not stop within 5s") in actions


def test_a_retiring_worker_gets_its_graceful_time_before_a_kill() -> None:
    stopping = worker(1, stop_sent=100.0, retiring=True)
    assert not any(isinstance(a, Kill)
                   for a in plan(snap((stopping, worker(2))), now=134.0))
    assert Kill(1, "did not stop within 35s") in plan(
        snap((stopping, worker(2))), now=135.0)


def test_drain_stops_everyone_then_kills_the_late_then_finishes() -> None:
    both = (worker(1), worker(2))
    assert plan(snap(both, draining=True, drain_deadline=50.0), now=10) == [
        Stop(1, "shutting down"), Stop(2, "shutting down")]
    late = (worker(1, stop_sent=40.0),)
    assert plan(snap(late, draining=True, drain_deadline=50.0), now=50) == [
        Kill(1, "still running after graceful_timeout")]
    assert plan(snap((), draining=True, drain_deadline=50.0), now=60) == [
        Finish()]


def test_roll_starts_a_new_worker_before_retiring_an_old_one() -> None:
    old = (worker(1), worker(2))
    assert plan(snap(old, generation=1), now=10) == [Spawn("roll")]
    fresh = worker(3, generation=1, ready=False)
    assert plan(snap(old + (fresh,), generation=1), now=11) == []
    ready = dataclasses.replace(fresh, ready=True)
    assert plan(snap(old + (ready,), generation=1), now=12) == [
        Stop(1, "roll")]


def test_scale_down_retires_the_idlest_newest_worker() -> None:
    job = RunningJob(1, "a.B", 10.0, 100.0)
    workers = (worker(1, started=1.0, jobs=(job,)), worker(2, started=2.0),
               worker(3, started=3.0))
    assert plan(snap(workers), now=10) == [Stop(3, "scale down")]


def test_backlog_over_free_slots_adds_a_worker_up_to_max() -> None:
    busy = tuple(worker(i, jobs=tuple(RunningJob(j, "a.B", 9, 99)
                                      for j in range(10))) for i in (1, 2))
    s = snap(busy, autoscale=True, min_workers=1, max_workers=3, backlog=5)
    assert ScaleTo(3, "backlog 5 over 0 free slots") in plan(s, now=10)
    assert not any(isinstance(a, ScaleTo)
                   for a in plan(dataclasses.replace(s, target=3), now=10))


def test_idle_workers_scale_down_after_the_idle_period() -> None:
    idle = (worker(1, idle_since=0.0), worker(2, idle_since=0.0))
    s = snap(idle, autoscale=True, min_workers=1, max_workers=3,
             scale_idle_s=60.0)
    assert not any(isinstance(a, ScaleTo) for a in plan(s, now=59))
    assert ScaleTo(1, "idle for 60s") in plan(s, now=60)


@pytest.mark.parametrize("attempt", [1, 2, 5, 60, 10**6])
def test_backoff_doubles_within_jitter_and_never_passes_the_cap(
    attempt: int,
) -> None:
    low = backoff(attempt, base=10, cap=3600, jitter=0.0)
    high = backoff(attempt, base=10, cap=3600, jitter=1.0)
    full = min(3600, 10 * 2 ** min(attempt - 1, 64))
    assert (low, high) == (full / 2, full)


def test_backoff_clamps_odd_jitter() -> None:
    assert backoff(1, 10, 100, jitter=-3) == 5
    assert backoff(1, 10, 100, jitter=7) == 10
