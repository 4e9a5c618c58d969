"""The ASGI application: pages of the web app, a small HTTP API, and the WebSocket API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from lockstep import __version__
from lockstep.server import catch_up, health, media
from lockstep.server.ca_page import LocalCa, ca_routes
from lockstep.server.errors import ErrorCode, Unavailable
from lockstep.server.gateway import serve_websocket
from lockstep.server.hosts import HostPolicy
from lockstep.server.metrics import CONTENT_TYPE, TimeHttpRequests
from lockstep.server.services import Services

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # Calls and voice notes (messaging.md §14, §16) need the microphone, calls the camera.
    (b"permissions-policy", b"camera=(self), microphone=(self), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
PAGES = {"/": "index.html", "/app": "app.html", "/link": "link.html"}


class SecurityHeaders:
    """Adds the headers above to every HTTP response (pages, API and static files alike)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostGuard:
    """Refuses, before any route runs, requests for names this server does not serve and WebSockets
    opened by other sites' pages (DNS rebinding, cross-site WebSocket hijacking; see hosts.py)."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host, local = headers.get("host"), scope["server"][0] if scope.get("server") else None
        if scope["type"] == "http":
            if self.policy.host_allowed(host, local):
                await self.app(scope, receive, send)
                return
            name = (host or "")[:100]
            message = (
                f"this server does not answer to the name {name!r} (an operator can add it: --allowed-origin)"
            )
            refusal = JSONResponse(
                {"error": {"code": ErrorCode.UNKNOWN_HOST, "message": message}}, status_code=421
            )
            await refusal(scope, receive, send)
        elif self.policy.origin_allowed(headers.get("origin"), host, scope["scheme"] == "wss", local):
            await self.app(scope, receive, send)
        else:  # before the handshake completes: the client gets HTTP 403
            await send({"type": "websocket.close", "code": 1008, "reason": "foreign host or origin refused"})


def create_ca_app(ca: LocalCa) -> ASGIApp:
    """What `serve --lan` answers over plain HTTP on the LAN: the local CA's root and its page, and
    nothing else (the app itself is served only over HTTPS)."""

    async def home(request: Request) -> Response:
        return RedirectResponse("/ca")

    app = Starlette(routes=[*ca_routes(ca), Route("/", home)])
    app.add_middleware(SecurityHeaders)
    return app


def create_app(services: Services, web_root: Path) -> Starlette:
    def page(name: str) -> Response:
        path = web_root / name
        if not path.is_file():
            return PlainTextResponse(
                f"The web app is not built ({path} is missing): run `make run`.", status_code=503
            )
        return FileResponse(path, headers={"cache-control": "no-cache"})

    async def pages(request: Request) -> Response:
        return page(PAGES[request.url.path.rstrip("/") or "/"])

    async def info(request: Request) -> Response:
        return JSONResponse({"origin": services.origin, "name": "Lockstep", "version": __version__})

    async def healthz(request: Request) -> Response:
        results = await health.check(services)
        ok = health.healthy(results)
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", **results}, status_code=200 if ok else 503
        )

    async def readyz(request: Request) -> Response:
        if services.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return await healthz(request)

    async def metrics(request: Request) -> Response:
        return Response(services.metrics.exposition(), media_type=CONTENT_TYPE)

    async def media_upload(request: Request) -> Response:
        try:
            return await media.upload(services, request)
        except Unavailable as error:  # the database, while checking the token's device
            return media.refused(error)

    async def media_download(request: Request) -> Response:
        try:
            return await media.download(services, request)
        except Unavailable as error:
            return media.refused(error)

    async def websocket(websocket: WebSocket) -> None:
        await serve_websocket(services, websocket)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not services.store.is_open:  # `lockstep serve` opens it first, to report errors in one line
            await services.store.open()
        services.metrics.count_devices(services.hub.device_count)
        services.hub.on_reconnected = lambda: catch_up.after_outage(services)
        await services.hub.start()
        try:
            yield
        finally:
            await services.hub.close()
            await services.store.close()

    routes = [
        *(Route(path, pages) for path in ("/", "/app", "/app/", "/link")),
        Route("/api/info", info),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/media", media_upload, methods=["POST"]),
        Route("/media/{media_id}", media_download, methods=["GET"]),
        WebSocketRoute("/ws", websocket),
        *(ca_routes(services.local_ca) if services.local_ca else []),
        Mount("/", StaticFiles(directory=web_root, check_dir=False)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(TimeHttpRequests, metrics=services.metrics)
    app.add_middleware(HostGuard, policy=HostPolicy.of([services.origin, *services.allowed_origins]))
    app.add_middleware(SecurityHeaders)  # added last, so outermost: refusals carry the headers too
    return app
