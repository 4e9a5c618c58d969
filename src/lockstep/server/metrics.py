"""Prometheus metrics of one instance, served at ``/metrics`` (docs/deploy.md lists them).

Each app has its own registry (tests run several apps in one process). Counts only: no label ever
carries an account, device, address or anything a message says.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LinkOutcome(enum.Enum):
    GRANTED = "granted"
    DECLINED = "declined"
    IDLE = "idle"
    """Every code of the schedule expired unscanned."""
    ABANDONED = "abandoned"
    """The companion's page closed (or its socket dropped) while codes were live."""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.websockets = Gauge("lockstep_websockets", "Open WebSocket connections here", registry=r)
        self.connected_devices = Gauge(
            "lockstep_connected_devices", "Authenticated devices with a socket here", registry=r
        )
        self.messages_queued = Counter(
            "lockstep_messages_queued",
            "Message copies stored for a device (one per target device)",
            registry=r,
        )
        self.messages_delivered = Counter(
            "lockstep_messages_delivered",
            "Message copies a device acknowledged (and the server then deleted)",
            registry=r,
        )
        self.link_flows_started = Counter(
            "lockstep_link_flows_started", "Link sessions opened by companions", registry=r
        )
        self.link_flows = Counter(
            "lockstep_link_flows", "Link sessions by how they ended", ["outcome"], registry=r
        )
        for outcome in LinkOutcome:
            self.link_flows.labels(outcome.value)
        self.request_seconds = Histogram(
            "lockstep_request_seconds",
            "WebSocket request handling time by operation",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.send_fanout_seconds = Histogram(
            "lockstep_send_fanout_seconds",
            "From a messages.send's arrival to its last copy written to a socket here",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_request_seconds = Histogram(
            "lockstep_http_request_seconds",
            "HTTP request handling time by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def link_ended(self, outcome: LinkOutcome) -> None:
        self.link_flows.labels(outcome.value).inc()

    def count_devices(self, count: Callable[[], int]) -> None:
        self.connected_devices.set_function(lambda: float(count()))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


ROUTES = ("/", "/app", "/link", "/api/info", "/healthz", "/readyz", "/metrics", "/media", "/ws")


def route_of(path: str) -> str:
    """A route template for a path, so the label has a handful of values whatever clients ask for."""
    if path.startswith("/media/"):
        return "/media/{id}"
    stripped = path.rstrip("/") or "/"
    return stripped if stripped in ROUTES else "static"


class TimeHttpRequests:
    """ASGI middleware: time every HTTP request (WebSocket requests are timed per operation)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            histogram = self.metrics.http_request_seconds.labels(route_of(scope["path"]))
            histogram.observe(time.perf_counter() - started)
