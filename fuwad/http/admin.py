"""The admin page at /admin/queue: its routes, files and security headers.

The page is plain HTML, CSS and JavaScript modules under ``static/``,
shipped inside the package, with no build step.  It speaks only to the REST
API (:mod:`fuwad.http.api`) with a bearer token that the browser keeps in
the tab's ``sessionStorage``; this module serves the files and renders
nothing, so no job value ever passes through a server-side template.

Every file is read once when the app is built and served from memory by
name, so a request path never touches the file system.  Each answer carries
a Content Security Policy that allows only this origin's scripts and styles
(no inline ones), ``X-Frame-Options: DENY`` and ``nosniff``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

log = logging.getLogger("fuwad.http.admin")

PAGE_PATH = "/admin/queue"
STATIC_PREFIX = f"{PAGE_PATH}/static/"
STATIC_DIR = Path(__file__).with_name("static")
INDEX = "index.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}

# Scripts and styles from this origin only, never inline; the page calls
# only its own API and embeds nowhere.
CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the page, held in memory."""

    body: bytes
    content_type: str
    etag: str


ASSETS = web.AppKey("fuwad_admin_assets", dict[str, Asset])


def load_assets(root: Path) -> dict[str, Asset]:
    """Read every servable file under ``root``, keyed by relative path."""
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        kind = CONTENT_TYPES.get(path.suffix)
        if not path.is_file() or kind is None:
            continue
        body = path.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:20]
        name = path.relative_to(root).as_posix()
        assets[name] = Asset(body, kind, f'"{digest}"')
    if INDEX not in assets:
        log.error("admin page missing file=%s dir=%s", INDEX, root)
    return assets


def _answer(request: web.Request, asset: Asset) -> web.Response:
    headers = dict(SECURITY_HEADERS)
    # Revalidate every time, so an upgrade shows at once; the ETag keeps
    # the page's two-second refreshes of nothing cheap.
    headers["Cache-Control"] = "no-cache"
    headers["ETag"] = asset.etag
    if asset.etag in request.headers.getall("If-None-Match", []):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


def _not_found(what: str) -> web.Response:
    headers = dict(SECURITY_HEADERS)
    headers["Content-Type"] = "text/plain; charset=utf-8"
    return web.Response(
        status=404, text=f"{what} not found; the admin page is at "
        f"{PAGE_PATH}\n", headers=headers,
    )


async def page(request: web.Request) -> web.Response:
    """Serve the page itself."""
    asset = request.app[ASSETS].get(INDEX)
    if asset is None:
        return _not_found("the admin page's files were")
    return _answer(request, asset)


async def static_file(request: web.Request) -> web.Response:
    """Serve one file of the page by its name under static/."""
    asset = request.app[ASSETS].get(request.match_info["name"])
    if asset is None:
        return _not_found("file")
    return _answer(request, asset)


async def to_page(request: web.Request) -> web.Response:
    """Send /admin and /admin/queue/ to the page's one address."""
    del request
    raise web.HTTPFound(PAGE_PATH, headers=SECURITY_HEADERS)


def setup(app: web.Application) -> None:
    """Add the admin page's routes to ``app``."""
    app[ASSETS] = load_assets(STATIC_DIR)
    app.router.add_get(PAGE_PATH, page)
    app.router.add_get(PAGE_PATH + "/", to_page)
    app.router.add_get("/admin", to_page)
    app.router.add_get(STATIC_PREFIX + "{name:.+}", static_file)
