"""fuwad: a background job queue for Python, kept in PostgreSQL.

Producers push jobs with :class:`QueueManager` (or its synchronous twin,
:class:`SyncQueueManager`); worker processes run them through the
:class:`JobHandler` subclass named by each job's ``job_class``.
"""

from fuwad.errors import FuwadError
from fuwad.handler import Job, JobHandler
from fuwad.manager import JobSpec, QueueManager
from fuwad.sync import SyncQueueManager

__version__ = "0.1.0"

__all__ = [
    "FuwadError",
    "Job",
    "JobHandler",
    "JobSpec",
    "QueueManager",
    "SyncQueueManager",
    "__version__",
]
