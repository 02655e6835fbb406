"""The HTTP server: the app, its one route table, its envelope, serving.

:func:`make_app` builds the aiohttp application (the REST API of
:mod:`fuwad.http.api`, /metrics, the OpenAPI document and the admin page of
:mod:`fuwad.http.admin`); its database pool opens and closes in
``cleanup_ctx``.  :func:`serve` runs it until SIGTERM or SIGINT, for
``fuwad http`` and the daemon's HTTP child.  Outside /admin every answer,
refusals and failures included, is the JSON envelope; a failure nobody
expected answers 500 with a request id, and only the log holds the details.

A request aiohttp cannot parse never reaches the app or its middleware:
aiohttp answers it itself, in plain text that quotes the offending line (an
Authorization header, token and all).  aiohttp offers no hook for that
answer (aio-libs/aiohttp#3287), so :func:`serve` listens through
:class:`EnvelopeSite`, whose connections make it in the envelope and echo
nothing of the request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import uvloop
from aiohttp import web

from fuwad import db, migrate, tokens
from fuwad.config import Config
from fuwad.errors import DatabaseError, FuwadError
from fuwad.http import admin, api, metrics, openapi
from fuwad.http.api import PREFIX, Endpoint
from fuwad.http.auth import AUTHENTICATOR, Authenticator, guard
from fuwad.http.common import CONFIG, MANAGER, REQUEST_ID, ApiError, refuse
from fuwad.manager import QueueManager

log = logging.getLogger("fuwad.http")

ADMIN_PREFIX = "/admin"

# The one route table: the API, then the routes that are not the API's.
ROUTES: tuple[Endpoint, ...] = (
    *api.ENDPOINTS,
    Endpoint("GET", "/metrics", metrics.metrics, None),
    Endpoint("GET", f"{PREFIX}/openapi.json", openapi.document, None),
)

_LOST_DATABASE = (OSError, asyncpg.InterfaceError,
                  asyncpg.PostgresConnectionError)


class HttpError(FuwadError):
    """The HTTP server cannot start as configured."""


def new_request_id() -> str:
    """Return an id that finds one request's lines in the log."""
    return uuid.uuid4().hex[:16]


def _http_message(exc: web.HTTPException, request: web.Request) -> str:
    path = request.path[:100]
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"{request.method[:10]} is not allowed on {path}; use {allowed}"
    if isinstance(exc, web.HTTPNotFound):
        return (f"no endpoint at {path}; the API is described at "
                f"{PREFIX}/openapi.json")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return "the body is over the limit ([http] max_body_bytes)"
    return exc.reason or "refused"


@web.middleware
async def envelope_middleware(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Turn every refusal and failure into the envelope."""
    request_id = new_request_id()
    request[REQUEST_ID] = request_id
    try:
        return await handler(request)
    except ApiError as exc:
        return refuse(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith(ADMIN_PREFIX):
            raise
        headers = {}
        if "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
        return refuse(exc.status, _http_message(exc, request), headers)
    except (DatabaseError, *_LOST_DATABASE) as exc:
        log.error("database unavailable request_id=%s error=%s",
                  request_id, str(exc).splitlines()[0] if str(exc) else
                  type(exc).__name__)
        return refuse(503, "the database is unavailable; the server log "
                      f"has the details under request id {request_id}")
    except Exception:  # the boundary: log once, answer without details
        log.exception("request failed request_id=%s method=%s path=%s",
                      request_id, request.method, request.path[:200])
        return refuse(500, "internal error; the server log has the details "
                      f"under request id {request_id}")


async def _security_headers(request: web.Request,
                            response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    request_id = request.get(REQUEST_ID)
    if isinstance(request_id, str):
        response.headers["X-Request-Id"] = request_id
    if not request.path.startswith(ADMIN_PREFIX):
        response.headers.setdefault("Cache-Control", "no-store")


def _database(config: Config, dsn: str) -> Callable[
        [web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        pool = await db.create_pool(dsn, config.database.pool_size)
        try:
            async with pool.acquire() as connection:
                await migrate.migrate(connection)
                if config.auth.users_query:
                    await tokens.check_users_query(
                        connection, config.auth.users_query)
                elif await tokens.count_active(connection) == 0:
                    log.warning(
                        "no API token exists yet; make one with: fuwactl "
                        "token create --name admin --role admin"
                    )
            app[MANAGER] = QueueManager(pool, config)
            app[AUTHENTICATOR] = Authenticator(pool, config.auth)
            yield
        finally:
            await pool.close()

    return context


def make_app(config: Config, dsn: str) -> web.Application:
    """Build the application: API, metrics, OpenAPI and the admin page."""
    app = web.Application(
        middlewares=[envelope_middleware],
        client_max_size=max(1024, config.http.max_body_bytes),
    )
    app[CONFIG] = config
    app[metrics.ALLOW] = metrics.parse_allow(config.http.metrics_allow)
    app[openapi.DOCUMENT] = openapi.build()
    app.cleanup_ctx.append(_database(config, dsn))
    for route in ROUTES:
        handler = guard(route.handler, route.role, route.action)
        app.router.add_route(route.method, route.path, handler)
        if route.method == "GET":
            # HEAD wherever GET: the same answer, which aiohttp sends
            # without its body.
            app.router.add_route("HEAD", route.path, handler)
    admin.setup(app)
    app.on_response_prepare.append(_security_headers)
    return app


async def _serve(config: Config, dsn: str) -> None:
    runner = web.AppRunner(make_app(config, dsn), handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    try:
        host, port = config.http.host, config.http.port
        site = EnvelopeSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise HttpError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                "free the port or set [http] host and port"
            ) from None
        log.info("http listening host=%s port=%d", host, port)
        await stop.wait()
        log.info("http stopping host=%s port=%d", host, port)
    finally:
        await runner.cleanup()


# Where a parser's message starts quoting the request: a colon, a line
# break, or a quote after a space.  The log keeps only the words before.
_QUOTE_STARTS = re.compile(r"[:\n]|\s[bB]?['\"]")


def _parse_reason(exc: BaseException | None) -> str:
    if exc is None:
        return "-"
    text = str(getattr(exc, "message", "") or "")
    words = _QUOTE_STARTS.split(text.strip(), maxsplit=1)[0].strip()[:80]
    return f"{type(exc).__name__}: {words}" if words else type(exc).__name__


class EnvelopeHandler(web.RequestHandler):
    """aiohttp's connection handler, answering its own refusals (a request
    it cannot parse, a handler that failed outside the middleware) in the
    envelope, with nothing of the request in them."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        del message  # aiohttp's text, which quotes the request
        if request.writer.output_size > 0:
            # Part of an answer is out: another cannot follow.
            raise ConnectionError("the answer had begun; closing")
        request_id = new_request_id()
        if status == 400:
            # Anyone can send one; it is worth a line, not a traceback.
            log.info("http bad request refused request_id=%s error=%s",
                     request_id, _parse_reason(exc))
            text = ("malformed HTTP request refused (a bad request line, "
                    "header or length); nothing in it was used; request id "
                    f"{request_id}")
        else:
            log.error("request failed request_id=%s status=%d",
                      request_id, status, exc_info=exc)
            text = ("internal error; the server log has the details under "
                    f"request id {request_id}")
        response = refuse(status, text, {
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "X-Request-Id": request_id,
        })
        response.force_close()
        return response


class EnvelopeSite(web.BaseSite):
    """A TCP site whose connections are :class:`EnvelopeHandler`s."""

    __slots__ = ("_host", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        if server is None:  # BaseSite refuses a runner that is not set up
            raise HttpError("the HTTP runner was not set up")
        self._server = await loop.create_server(
            functools.partial(EnvelopeHandler, server, loop=loop),
            self._host, self._port, backlog=self._backlog,
        )


def serve(config: Config, dsn: str) -> int:
    """Serve HTTP on ``[http] host`` and ``port`` until SIGTERM or SIGINT;
    return the exit code."""
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(config, dsn))
    except FuwadError as exc:
        log.critical("http cannot start: %s", exc)
        return 1
    return 0
