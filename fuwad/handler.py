"""Job handlers: the user's code that runs a job, and how it is found.

A job's ``job_class`` is the dotted path of a :class:`JobHandler` subclass,
such as ``app.jobs.SendEmail``.  Workers import it on first use and keep it.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from fuwad.errors import HandlerError


@dataclass(frozen=True, slots=True)
class Job:
    """One job as its handler sees it: the row's fields as attributes."""

    id: int
    job_name: str
    job_class: str
    job_data: Any
    queue: str
    priority: int
    status: str
    attempts: int
    max_attempts: int | None
    delay: int
    available_at: datetime
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    last_error: str | None
    worker_id: str | None
    leased_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        return cls(**{name: row[name] for name in cls.__slots__})


class JobHandler:
    """Base class of every handler.

    Override :meth:`handle`, as a plain or an ``async`` method.  A plain
    method runs in a thread of the worker; an async one on the worker's
    event loop.  Raising marks the attempt failed; returning marks the job
    completed.  The class attributes below, when set, win over the
    configuration for this handler's jobs.
    """

    max_attempts: ClassVar[int | None] = None
    timeout: ClassVar[float | None] = None  # seconds; else worker_timeout
    retry_delay: ClassVar[float | None] = None  # first backoff, seconds
    retry_delay_max: ClassVar[float | None] = None  # backoff cap, seconds

    def handle(self, data: Any, job: Job) -> Any:
        raise NotImplementedError(
            f"{type(self).__qualname__} must define handle(self, data, job)"
        )


def class_path(handler: type[JobHandler] | str) -> str:
    """Return the dotted path that names ``handler`` in ``job_class``."""
    if isinstance(handler, str):
        return handler
    if isinstance(handler, type):
        return f"{handler.__module__}.{handler.__qualname__}"
    raise HandlerError(
        f"job_class must be a JobHandler subclass or its dotted path, "
        f"not {type(handler).__name__}"
    )


def resolve(path: str) -> type[JobHandler]:
    """Import and return the handler class named by ``path``."""
    module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise HandlerError(
            f"job_class {path!r} is not a dotted path such as app.jobs.SendEmail"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import runs arbitrary user code
        raise HandlerError(
            f"cannot import module {module_name!r} for job_class {path!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    found = getattr(module, attribute, None)
    if found is None:
        raise HandlerError(
            f"module {module_name!r} has no {attribute!r} "
            f"(job_class {path!r})"
        )
    if not (inspect.isclass(found) and issubclass(found, JobHandler)):
        raise HandlerError(
            f"job_class {path!r} is not a subclass of fuwad.JobHandler"
        )
    return found
