"""Health for load balancers: ``/healthz`` (this instance can reach its database and Redis) and
``/readyz`` (that, and it is not shutting down: send it new clients)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from lockstep.server.errors import Unavailable
from lockstep.server.hub import LocalBus
from lockstep.server.services import Services

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0


async def _probe(ping: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(ping(), timeout=CHECK_TIMEOUT_S)
    except (Unavailable, TimeoutError, OSError) as error:
        return f"unavailable: {error or type(error).__name__}"
    return "ok"


async def check(services: Services) -> dict[str, str]:
    """``{"database": "ok", "redis": "ok"}``, or what is wrong (Redis only when configured)."""
    probes = {"database": services.store.ping}
    if not isinstance(services.hub.bus, LocalBus):
        probes["redis"] = services.hub.bus.ping
    results = await asyncio.gather(*(_probe(ping) for ping in probes.values()))
    return dict(zip(probes, results, strict=True))


def healthy(results: dict[str, str]) -> bool:
    return all(result == "ok" for result in results.values())
