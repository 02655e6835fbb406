"""Pure decisions: retry backoff and the supervisor's plan.

Nothing here performs I/O or reads a clock; callers pass ``now`` and a
random number in, so tests call these functions with chosen values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Ten years: the longest delay any caller may ask for, and the cap that
# keeps exponential backoff far from overflowing a timestamp.
MAX_DELAY_S = 10 * 365 * 24 * 3600.0
MAX_ATTEMPTS = 1000


def backoff(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Return seconds to wait before the attempt after ``attempt``.

    The delay doubles with each attempt from ``base``, is capped at ``cap``,
    and ``jitter`` (0 to 1, from the caller's random source) spreads it over
    its upper half so that jobs failing together do not retry together.
    """
    exponent = min(max(attempt - 1, 0), 64)  # 2**64 * base is already capped
    full = min(cap, base * math.pow(2.0, exponent), MAX_DELAY_S)
    return full / 2 + full / 2 * min(max(jitter, 0.0), 1.0)


def should_retry(attempts: int, max_attempts: int) -> bool:
    """Tell whether a job that failed its ``attempts``-th try runs again."""
    return attempts < max_attempts


# The supervisor's plan ------------------------------------------------------

# A worker that dies sooner than this after its start, unasked, counts
# towards a crash loop.
QUICK_DEATH_S = 5.0
CRASH_BACKOFF_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class RunningJob:
    job_id: int
    job_class: str
    timeout: float
    deadline: float  # monotonic


@dataclass(frozen=True, slots=True)
class ChildView:
    """What the plan needs to know of one worker process."""

    pid: int
    generation: int
    started: float
    ready: bool
    jobs: tuple[RunningJob, ...] = ()
    retiring: bool = False
    stop_sent: float | None = None
    kill_sent: float | None = None
    idle_since: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The supervisor's state at one instant, as plain values."""

    workers: tuple[ChildView, ...]
    target: int
    generation: int
    draining: bool
    drain_deadline: float | None
    spawn_not_before: float
    kill_grace: float
    stop_timeout: float  # how long a stopped worker may take to drain
    concurrency: int
    backlog: int = 0
    autoscale: bool = False
    min_workers: int = 1
    max_workers: int = 1
    scale_idle_s: float = 60.0
    last_scaled: float = 0.0


@dataclass(frozen=True, slots=True)
class Spawn:
    reason: str


@dataclass(frozen=True, slots=True)
class Stop:
    """SIGTERM: the worker drains, then exits."""

    pid: int
    reason: str
    timed_out: tuple[RunningJob, ...] = ()


@dataclass(frozen=True, slots=True)
class Kill:
    """SIGKILL: the worker is gone at once; its jobs are rescued."""

    pid: int
    reason: str


@dataclass(frozen=True, slots=True)
class ScaleTo:
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class Finish:
    """Every worker is gone after a drain: the supervisor may exit."""


Action = Spawn | Stop | Kill | ScaleTo | Finish


def plan(s: Snapshot, now: float) -> list[Action]:
    """Decide what the supervisor does next, from ``s`` at ``now``."""
    actions: list[Action] = []
    actions += _escalate(s, now)
    if s.draining:
        for w in s.workers:
            if w.stop_sent is None:
                actions.append(Stop(w.pid, "shutting down"))
            elif (w.kill_sent is None and s.drain_deadline is not None
                    and now >= s.drain_deadline):
                actions.append(Kill(w.pid, "still running after "
                                    "graceful_timeout"))
        if not s.workers:
            actions.append(Finish())
        return _unique(actions)
    actions += _timeouts(s, now)
    actions += _scale(s, now)
    actions += _staff(s, now)
    return _unique(actions)


def _escalate(s: Snapshot, now: float) -> list[Action]:
    """SIGKILL a stopped worker that outlived its time to drain."""
    out: list[Action] = []
    for w in s.workers:
        if w.stop_sent is None or w.kill_sent is not None:
            continue
        limit = s.kill_grace if w.jobs and _overdue(w, now, s) else \
            s.stop_timeout
        if now >= w.stop_sent + limit:
            out.append(Kill(w.pid, f"did not stop within {limit:g}s"))
    return out


def _overdue(w: ChildView, now: float, s: Snapshot) -> bool:
    return any(now >= j.deadline + s.kill_grace for j in w.jobs)


def _timeouts(s: Snapshot, now: float) -> list[Action]:
    """Stop a worker whose job ran past its deadline and a grace period.

    The worker enforces timeouts itself; this is the backstop for a worker
    whose event loop is blocked (a C call holding the GIL), two grace
    periods after the deadline.
    """
    out: list[Action] = []
    for w in s.workers:
        if w.stop_sent is not None:
            continue
        late = tuple(j for j in w.jobs
                     if now >= j.deadline + 2 * s.kill_grace)
        if late:
            first = late[0]
            out.append(Stop(w.pid, f"job {first.job_id} timed out after "
                            f"{first.timeout:g}s", late))
    return out


def _scale(s: Snapshot, now: float) -> list[Action]:
    """Move the target between min and max workers with the backlog."""
    if not s.autoscale or now - s.last_scaled < 1.0:
        return []
    active = [w for w in s.workers if not w.retiring]
    free = sum(max(s.concurrency - len(w.jobs), 0) for w in active
               if w.ready)
    if s.backlog > free and s.target < s.max_workers:
        return [ScaleTo(s.target + 1, f"backlog {s.backlog} over "
                        f"{free} free slots")]
    idle = all(w.idle_since is not None
               and now - w.idle_since >= s.scale_idle_s for w in active)
    if active and idle and s.backlog == 0 and s.target > s.min_workers \
            and now - s.last_scaled >= s.scale_idle_s:
        return [ScaleTo(s.target - 1, f"idle for {s.scale_idle_s:g}s")]
    return []


def _staff(s: Snapshot, now: float) -> list[Action]:
    """Spawn up to the target; roll old generations one at a time."""
    active = [w for w in s.workers if not w.retiring]
    old = [w for w in active if w.generation < s.generation]
    if len(active) < s.target:
        if now < s.spawn_not_before:
            return []
        return [Spawn("below target")] * (s.target - len(active))
    if old:
        # Roll with a surge of one: start the new worker first, retire an
        # old one once every active worker is ready, so that there is
        # never a moment without a worker.
        if not all(w.ready for w in active):
            return []
        if len(active) == s.target and now >= s.spawn_not_before:
            return [Spawn("roll")]
        if len(active) > s.target:
            return [Stop(old[0].pid, "roll")]
        return []
    if len(active) > s.target:
        # Scale down: retire the idlest, newest first.
        pick = sorted(active, key=lambda w: (len(w.jobs), -w.started))[0]
        return [Stop(pick.pid, "scale down")]
    return []


def _unique(actions: list[Action]) -> list[Action]:
    """Drop a second Stop or Kill of the same pid in one plan."""
    seen: set[tuple[type, int]] = set()
    out: list[Action] = []
    for action in actions:
        if isinstance(action, Stop | Kill):
            key = (type(action), action.pid)
            if key in seen:
                continue
            seen.add(key)
        out.append(action)
    return out


def spawn_delay(streak: int) -> float:
    """Return how long to wait before the next spawn after a crash streak."""
    if streak <= 0:
        return 0.0
    return min(CRASH_BACKOFF_MAX_S, 0.5 * math.pow(2.0, streak - 1))
