"""A send's copies on their way to sockets (server/fanout.py, hub.py): each copy's event is the event its
queued message makes, however the text is shared; the sender's answer goes out before the copies; and
the fan-out time is reported once the last copy here was written."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers_messaging import make_account, messengers
from hypothesis import given
from hypothesis import strategies as st

from lockstep.client.messenger import Messenger
from lockstep.server.fanout import FanoutTimer, message_frames
from lockstep.server.frames import Encoded, Outgoing
from lockstep.server.hub import Hub, device_topic
from lockstep.server.store import QueuedMessage

pytestmark = pytest.mark.anyio

texts = st.text(max_size=24)
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), texts)
payloads = st.dictionaries(texts, st.one_of(json_leaves, st.lists(json_leaves, max_size=3)), max_size=4)
messages = st.builds(
    QueuedMessage,
    seq=st.integers(0, 2**53),
    message_id=texts,
    sender_account=texts,
    sender_device=texts,
    group_id=st.none() | texts,
    payload=payloads,
    server_time=st.integers(0, 2**53),
)


@given(st.lists(st.tuples(messages, st.lists(st.integers(0, 2**53), min_size=1, max_size=4)), max_size=4))
def test_each_copys_frame_is_its_own_event_whatever_it_shares_with_the_others(
    sends: list[tuple[QueuedMessage, list[int]]],
) -> None:
    # Each send's copies share its payload object (a group's Megolm message) and differ in their
    # numbers, whose texts differ in length; two sends may have equal fields but distinct payloads.
    copies = [
        (f"device-{number}-{seq}", dataclasses.replace(message, seq=seq))
        for number, (message, seqs) in enumerate(sends)
        for seq in seqs
    ]
    frames = message_frames(copies)
    assert [device_id for device_id, _ in frames] == [device_id for device_id, _ in copies]
    assert [json.loads(frame) for _, frame in frames] == [message.to_event() for _, message in copies]


class OrderedPeer:
    """A socket that notes, in one list shared with the others, when a frame was queued for it."""

    def __init__(self, name: str, order: list[str]) -> None:
        self.name, self.order = name, order

    def push(self, frame: Outgoing, timer: FanoutTimer | None = None) -> None:
        self.order.append(self.name)

    def close_soon(self, code: int, reason: str) -> None:
        raise AssertionError("not closed here")


async def test_a_senders_answer_is_queued_before_the_copies_of_its_message() -> None:
    # The gateway queues a request's answer right after its handler returns; the handler has pushed
    # the copies by then. If the copies went into their outboxes at once, their writers would be woken
    # first, and the sender would wait for every one of a large group's copies to be written.
    hub, order = Hub(), []
    await hub.start()
    sender = OrderedPeer("sender's answer", order)
    await hub.attach("sender", sender)
    for device_id in ("a", "b", "c"):
        await hub.attach(device_id, OrderedPeer(device_id, order))
    await hub.push_each([(device_id, Encoded("{}")) for device_id in ("a", "b", "c")])
    sender.push(Encoded('{"id": 1, "ok": true}'))
    await asyncio.sleep(0)
    assert order == ["sender's answer", "a", "b", "c"]
    await hub.close()


class RecordingPeer:
    """A socket that notes, in one list shared with the others, each event queued for it and its close."""

    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    def push(self, frame: Outgoing, timer: FanoutTimer | None = None) -> None:
        assert isinstance(frame, str)
        self.seen.append(f"{self.name}: {json.loads(frame).get('event', 'answer')}")

    def close_soon(self, code: int, reason: str) -> None:
        self.seen.append(f"{self.name}: closed ({reason})")


async def test_events_made_after_a_send_reach_a_device_after_its_copy() -> None:
    # A send's copies wait a turn (so the sender's answer goes first); a group change, a device-list
    # change from another instance or an unlink made in that turn must not overtake them: a receiver
    # would apply a membership change before the message sent before it, or be closed before its copy.
    hub, seen = Hub(), []
    await hub.start()
    sender = RecordingPeer("sender", seen)
    await hub.attach("sender", sender)
    await hub.attach("bob", RecordingPeer("bob", seen))
    await hub.push_each([("bob", Encoded('{"event": "message", "seq": 1}'))])
    sender.push(Encoded('{"id": 1, "ok": true}'))
    await hub.push(["bob"], {"event": "groups.changed"})
    hub.deliver(device_topic("bob"), Encoded('{"event": "devices.changed"}'), None)  # from the bus
    await hub.disconnect("bob", {"event": "device.unlinked"}, 4001, "unlinked")
    await asyncio.sleep(0)
    assert seen == [
        "sender: answer",
        "bob: message",
        "bob: groups.changed",
        "bob: devices.changed",
        "bob: device.unlinked",
        "bob: closed (unlinked)",
    ]
    await hub.close()


def fanouts(live_server: Any) -> tuple[float, float]:
    """How many sends' fan-outs were timed, and their seconds in all."""
    registry = live_server.services.metrics.registry
    count = registry.get_sample_value("lockstep_send_fanout_seconds_count") or 0.0
    return count, registry.get_sample_value("lockstep_send_fanout_seconds_sum") or 0.0


async def next_message(messenger: Messenger, message_id: str) -> None:
    for _ in range(10):  # skip other events (a key top-up); the message is among the first few
        event = await messenger.session.connection.next_event(timeout=10)
        if event.get("event") == "message" and event["message_id"] == message_id:
            return
    raise AssertionError(f"no message event for {message_id}")


async def test_a_sends_fanout_is_timed_until_its_last_copy_here_is_written(
    live_server: Any, tmp_path: Path
) -> None:
    alice = await make_account(live_server.url, tmp_path, "alice")
    bob = await make_account(live_server.url, tmp_path, "bob")
    directories = (alice.primary_dir, alice.companion_dir, bob.primary_dir, bob.companion_dir)
    async with messengers(*directories) as (phone, laptop, bobs_phone, bobs_laptop):
        started = time.perf_counter()
        sent = await phone.send("bob", "to three devices")
        for receiver in (laptop, bobs_phone, bobs_laptop):
            await next_message(receiver, sent.message_id)
        for _ in range(100):  # the writer tells the timer right after the socket took the last copy
            if fanouts(live_server)[0]:
                break
            await asyncio.sleep(0.01)
        count, seconds = fanouts(live_server)
        assert count == 1 and 0 < seconds < time.perf_counter() - started
    async with messengers(alice.primary_dir) as (phone,):
        await phone.send("bob", "to nobody online")  # every copy waits in the store: nothing to time
    assert fanouts(live_server) == (count, seconds)
