"""The admin page at /admin/queue (built by its own issue)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Add the admin page's routes to ``app``."""
    del app
