"""SyncQueueManager: the QueueManager for code without an event loop.

Flask, Django views and scripts call plain methods; the twin runs an event
loop of its own in one daemon thread and hands each call to it, so callers
never touch asyncio and may call from many threads at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from fuwad.config import Config
from fuwad.handler import Job, JobHandler
from fuwad.manager import JobSpec, QueueManager
from fuwad.when import When

T = TypeVar("T")


class SyncQueueManager:
    """The same methods as :class:`QueueManager`, without ``await``."""

    def __init__(self, dsn: str | None = None,
                 config: Config | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fuwad-sync", daemon=True
        )
        self._thread.start()
        try:
            self._manager = self._call(QueueManager.connect(dsn, config))
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        """Close the pool and stop the background loop."""
        if self._loop.is_closed():
            return
        self._call(self._manager.close())
        self._stop_loop()

    def __enter__(self) -> SyncQueueManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def push(self, job_name: str, job_class: str | type[JobHandler],
             data: Any = None, **options: Any) -> int:
        return self._call(self._manager.push(job_name, job_class, data,
                                             **options))

    def push_high(self, job_name: str, job_class: str | type[JobHandler],
                  data: Any = None, **options: Any) -> int:
        return self._call(self._manager.push_high(job_name, job_class, data,
                                                  **options))

    def push_low(self, job_name: str, job_class: str | type[JobHandler],
                 data: Any = None, **options: Any) -> int:
        return self._call(self._manager.push_low(job_name, job_class, data,
                                                 **options))

    def schedule(self, job_name: str, job_class: str | type[JobHandler],
                 when: When, data: Any = None, **options: Any) -> int:
        return self._call(self._manager.schedule(job_name, job_class, when,
                                                 data, **options))

    def push_many(self, jobs: Iterable[JobSpec]) -> list[int]:
        return self._call(self._manager.push_many(list(jobs)))

    def get_job(self, job_id: int) -> Job:
        return self._call(self._manager.get_job(job_id))

    def get_pending_jobs(self, limit: int = 100,
                         queue: str | None = None) -> list[Job]:
        return self._call(self._manager.get_pending_jobs(limit, queue))

    def list_jobs(self, **filters: Any) -> tuple[list[Job], int]:
        return self._call(self._manager.list_jobs(**filters))

    def get_stats(self) -> dict[str, int]:
        return self._call(self._manager.get_stats())

    def retry(self, job_id: int, delay: When = 0) -> None:
        self._call(self._manager.retry(job_id, delay))

    def cancel(self, job_id: int) -> None:
        self._call(self._manager.cancel(job_id))

    def mark_completed(self, job_id: int) -> None:
        self._call(self._manager.mark_completed(job_id))

    def mark_failed(self, job_id: int, error: str = "") -> None:
        self._call(self._manager.mark_failed(job_id, error))

    def delete(self, job_id: int) -> str:
        return self._call(self._manager.delete(job_id))

    def cleanup(self, completed_ttl: int | None = None,
                failed_ttl: int | None = None) -> int:
        return self._call(self._manager.cleanup(completed_ttl, failed_ttl))
