"""The admin page's files over real HTTP, without a browser.

The app is the real one (:func:`fuwad.http.app.make_app`) on a loopback
port.  These tests hold the page to its promises that a browser would not
show by itself: the security headers on every file, caching by ETag, no
file outside the page's own, and sources that never write HTML.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fuwad.config import Config
from fuwad.http import admin
from fuwad.http.app import make_app

STATIC = Path(admin.__file__).with_name("static")


@pytest.fixture
async def client(config: Config, dsn: str) -> AsyncIterator[TestClient]:
    server = TestServer(make_app(config, dsn), host="127.0.0.1")
    async with TestClient(server) as test_client:
        yield test_client


def page_files() -> list[str]:
    return sorted(p.relative_to(STATIC).as_posix()
                  for p in STATIC.rglob("*") if p.is_file())


def assert_secured(headers: object) -> None:
    csp = headers["Content-Security-Policy"]  # type: ignore[index]
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Frame-Options"] == "DENY"  # type: ignore[index]
    assert headers["X-Content-Type-Options"] == "nosniff"  # type: ignore


async def test_page_and_every_file_carry_the_security_headers(
    client: TestClient,
) -> None:
    response = await client.get("/admin/queue")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert_secured(response.headers)
    html = await response.text()
    assert "<title>fuwad · queue</title>" in html

    kinds = {".js": "text/javascript; charset=utf-8",
             ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
             ".html": "text/html; charset=utf-8"}
    for name in page_files():
        response = await client.get(f"/admin/queue/static/{name}")
        assert response.status == 200, name
        assert response.headers["Content-Type"] == kinds[Path(name).suffix]
        assert_secured(response.headers)
        assert await response.read() == (STATIC / name).read_bytes()


async def test_an_unchanged_file_answers_304_by_its_etag(
    client: TestClient,
) -> None:
    first = await client.get("/admin/queue/static/app.js")
    etag = first.headers["ETag"]
    again = await client.get("/admin/queue/static/app.js",
                             headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert_secured(again.headers)
    other = await client.get("/admin/queue/static/app.js",
                             headers={"If-None-Match": '"stale"'})
    assert other.status == 200


@pytest.mark.parametrize("path", [
    "/admin/queue/static/nothing.js",
    "/admin/queue/static/../admin.py",
    "/admin/queue/static/%2e%2e/admin.py",
    "/admin/queue/static/..%2fadmin.py",
    "/admin/queue/static/%2e%2e%2f%2e%2e%2fconfig.py",
    "/admin/queue/static/",
])
async def test_nothing_outside_the_page_files_is_served(
    client: TestClient, path: str,
) -> None:
    response = await client.get(path)
    assert response.status == 404
    body = await response.text()
    assert "import" not in body and "def " not in body


async def test_other_addresses_lead_to_the_page(client: TestClient) -> None:
    for path in ("/admin", "/admin/queue/"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 302, path
        assert response.headers["Location"] == "/admin/queue"
    response = await client.post("/admin/queue")
    assert response.status == 405


def test_the_page_has_no_inline_script_or_style() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert scripts and all(body.strip() == "" for body in scripts)
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="module" src="/admin/queue/static/app.js">']
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    # Everything the page loads is its own, by absolute path: no CDN.
    for ref in re.findall(r'(?:src|href)="([^"#]*)"', html):
        assert ref.startswith("/admin/queue/static/"), ref
        assert (STATIC / ref.removeprefix("/admin/queue/static/")).is_file()


@pytest.mark.parametrize("name", [n for n in page_files()
                                  if n.endswith(".js")])
def test_scripts_write_text_never_html(name: str) -> None:
    source = (STATIC / name).read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML",
                 "document.write", "eval(", "new Function",
                 "createContextualFragment", "DOMParser", ".style."):
        assert sink not in source, f"{name} uses {sink}"
    # Modules import only each other, by relative path.
    for target in re.findall(r'from\s+"([^"]+)"', source):
        assert target.startswith("./") and (STATIC / target).is_file()
