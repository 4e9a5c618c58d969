"""Making up for events that never arrived (docs/deploy.md, "Failure semantics").

Events are live hints; the store is the record. A client that missed a ``message`` event learns of it
when it next sees a message whose sequence number leaves a gap, on reconnect, or — when the server
knows events were lost — because the server announces each affected device's newest queued message,
which both clients answer by fetching everything before it (messaging.md §7.2).
"""

from __future__ import annotations

import logging

from lockstep.server.connection import CLOSE_UNLINKED
from lockstep.server.events import DeviceUnlinked
from lockstep.server.fanout import message_frames
from lockstep.server.frames import encode
from lockstep.server.hub import device_topic
from lockstep.server.services import Services

log = logging.getLogger(__name__)


async def announce_queued(services: Services, device_ids: list[str]) -> None:
    """Push each device's newest queued message to its sockets, wherever they are."""
    newest = await services.store.newest_queued(device_ids)
    await services.hub.push_each(message_frames(newest.items()))


async def after_outage(services: Services) -> None:
    """The bus was cut off (Redis restarted): events for sockets here may be lost. Close the sockets of
    devices unlinked meanwhile, and have every other device here catch up from the store."""
    here = services.hub.devices_here()
    log.info("catching up %d devices after the bus came back", len(here))
    linked: list[str] = []
    for device_id in here:
        if await services.store.device(device_id) is None:
            event = DeviceUnlinked(device_id).to_json()
            services.hub.deliver(device_topic(device_id), encode(event), (CLOSE_UNLINKED, "unlinked"))
        else:
            linked.append(device_id)
    for message_holder, message in (await services.store.newest_queued(linked)).items():
        services.hub.deliver(device_topic(message_holder), encode(message.to_event()), None)
