"""Job and worker states, and the only moves a job may make between them.

This module imports nothing of fuwad, so that every layer can use it.
"""

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkerState(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"


# status -> statuses it may move to.  Every query that changes a job's
# status checks its WHERE clause against this table's spirit; the tests
# check the table itself.
JOB_MOVES: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED}),
    JobStatus.PROCESSING: frozenset(
        {
            JobStatus.COMPLETED,
            JobStatus.PENDING,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        }
    ),
    JobStatus.COMPLETED: frozenset({JobStatus.PENDING}),
    JobStatus.FAILED: frozenset({JobStatus.PENDING}),
    JobStatus.CANCELLED: frozenset(),
}

RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.COMPLETED})
CANCELLABLE = frozenset({JobStatus.PENDING, JobStatus.PROCESSING})


def can_move(source: JobStatus, target: JobStatus) -> bool:
    """Tell whether a job may move from ``source`` to ``target``."""
    return target in JOB_MOVES[source]
