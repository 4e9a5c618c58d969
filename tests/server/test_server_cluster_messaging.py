"""Messaging across instances (issue 10): 1:1 and group messages between devices connected to three
``lockstep serve`` processes that share one database and one Redis, and what survives faults — an
instance killed with SIGKILL, Redis restarted, PostgreSQL stopped for 5 s — while 20 devices exchange
2,000 messages."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from helpers_linking import link_one, primary
from helpers_messaging import Account, load, make_account, shown

from lockstep.client.errors import ConnectionLost, ServerRefused
from lockstep.client.messenger import Kind, Messenger, Received, new_message_id
from lockstep_cluster import Cluster, cluster
from pg_server import PostgresServer
from redis_server import RedisServer

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def messenger_at(directory: Path, url: str) -> AsyncIterator[Messenger]:
    """The device in ``directory``, connected to the instance at ``url``."""
    async with Messenger.open(replace(load(directory), server_url=url)) as messenger:
        yield messenger


def texts(received: list[Received]) -> list[str]:
    return [m.text for m in received if m.kind == "text" and m.text is not None]


async def test_direct_and_group_messages_cross_instances(
    tmp_path: Path, redis: RedisServer, postgres: PostgresServer
) -> None:
    with cluster(tmp_path, redis, postgres, 3) as servers:
        alice, bob, carol = [
            await make_account(servers.url(0), tmp_path, h) for h in ("alice", "bob", "carol")
        ]
        async with contextlib.AsyncExitStack() as stack:
            a_phone, a_laptop, b_phone, b_laptop, c_phone = [
                await stack.enter_async_context(messenger_at(directory, servers.url(instance)))
                for directory, instance in (
                    (alice.primary_dir, 0),
                    (alice.companion_dir, 1),
                    (bob.primary_dir, 2),
                    (bob.companion_dir, 0),
                    (carol.primary_dir, 1),
                )
            ]
            await a_phone.send("bob", "across instances")
            for device in (b_phone, b_laptop, a_laptop):  # live events, through Redis for two of them
                assert texts(await device.receive(wait=5, until=shown, receipts=False)) == [
                    "across instances"
                ]
            await a_phone.create_group("team", ["bob", "carol"])
            await a_phone.send("#team", "hello team")
            for device in (b_phone, b_laptop, c_phone, a_laptop):
                got = await device.receive(wait=5, until=shown, receipts=False)
                assert texts(got) == ["hello team"]
            await c_phone.send("#team", "carol here")
            for device in (a_phone, a_laptop, b_phone, b_laptop):
                assert texts(await device.receive(wait=5, until=shown, receipts=False)) == ["carol here"]


# --- faults ---------------------------------------------------------------------------------------
ACCOUNTS = 10  # each a phone and a linked laptop: 20 devices
MESSAGES = 2_000


@dataclass
class Device:
    name: str
    account: Account
    directory: Path
    instance: int
    outbox: list[tuple[str, str, str]] = field(default_factory=list)
    """(message id, recipient handle, text) still to send, in order."""
    texts: Counter[str] = field(default_factory=Counter)
    """Every text this device's application was given, with how often."""
    reconnects: int = 0


@dataclass
class Exchange:
    servers: Cluster
    devices: list[Device]
    dead: set[int] = field(default_factory=set)
    sent: int = 0
    sending_done: asyncio.Event = field(default_factory=asyncio.Event)

    def next_instance(self, device: Device) -> int:
        """What a load balancer would do: the next instance that is up."""
        size = len(self.servers.ports)
        for step in range(1, size + 1):
            candidate = (device.instance + step) % size
            if candidate not in self.dead:
                return candidate
        raise AssertionError("no instance is up")

    async def run(self, device: Device) -> None:
        """Send this device's share and take in what arrives; after a lost connection, reconnect to
        another instance and carry on — a send whose reply never came is sent again, same id.
        What the messenger handled but could not hand over before the connection dropped comes
        from the next receive() (it was saved as unreported; the server's re-delivery is a duplicate)."""
        while True:
            received: list[Received] = []
            try:
                async with messenger_at(device.directory, self.servers.url(device.instance)) as messenger:
                    connection = messenger.session.connection
                    received += await messenger.receive(receipts=False)  # what was queued while away
                    while device.outbox:
                        message_id, to, text = device.outbox[0]
                        await messenger.send_direct(to, Kind.TEXT, {"text": text}, message_id=message_id)
                        device.outbox.pop(0)
                        self.sent += 1
                        await messenger.handle_events(connection.drain_events())
                        received += messenger.take_unreported()
                    while not self.sending_done.is_set():
                        with contextlib.suppress(TimeoutError):
                            event = await connection.next_event(timeout=0.2)
                            await messenger.handle_events([event, *connection.drain_events()])
                            received += messenger.take_unreported()
                    received += await messenger.receive(receipts=False)  # stragglers: all are stored by now
                    return
            except (ConnectionLost, ServerRefused) as error:
                if isinstance(error, ServerRefused) and error.code != "unavailable":
                    raise
                device.reconnects += 1
                if device.instance in self.dead or isinstance(error, ConnectionLost):
                    device.instance = self.next_instance(device)
                await asyncio.sleep(0.1)
            finally:
                device.texts.update(texts(received))


async def _exchange(tmp_path: Path, servers: Cluster, fault: object) -> Exchange:
    accounts = await asyncio.gather(
        *(make_account(servers.url(n % 3), tmp_path, f"user{n:02d}") for n in range(ACCOUNTS))
    )
    devices = [
        Device(f"{account.handle}-{kind}", account, directory, instance=(2 * n + k) % 3)
        for n, account in enumerate(accounts)
        for k, (kind, directory) in enumerate(
            (("phone", account.primary_dir), ("laptop", account.companion_dir))
        )
    ]
    chooser = random.Random(10)
    for number in range(MESSAGES):
        sender = devices[number % len(devices)]
        others = [a for a in accounts if a is not sender.account]
        recipient = chooser.choice(others)
        sender.outbox.append(
            (new_message_id(), recipient.handle, f"m{number:04d} {sender.name}>{recipient.handle}")
        )
    exchange = Exchange(servers, devices)
    expected = _expected(devices)
    tasks = [asyncio.create_task(exchange.run(device)) for device in devices]
    fault_task = asyncio.create_task(fault(exchange))  # type: ignore[operator]
    await asyncio.wait_for(_all_sent(exchange, tasks), timeout=480)
    await fault_task
    exchange.sending_done.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    for device in devices:
        assert device.texts == expected[device.name], f"{device.name}: lost or duplicated messages"
    return exchange


async def _all_sent(exchange: Exchange, tasks: list[asyncio.Task[None]]) -> None:
    while any(device.outbox for device in exchange.devices):
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await asyncio.sleep(0.1)


def _expected(devices: list[Device]) -> dict[str, Counter[str]]:
    """Each message once on every device of its recipient and on the sender's other device."""
    by_handle = {d.account.handle: [o for o in devices if o.account is d.account] for d in devices}
    expected: dict[str, Counter[str]] = {d.name: Counter() for d in devices}
    for device in devices:
        for _, to, text in device.outbox:
            for target in [*by_handle[to], *(d for d in by_handle[device.account.handle] if d is not device)]:
                expected[target.name][text] += 1
    return expected


async def _when_sent(exchange: Exchange, count: int) -> None:
    while exchange.sent < count:
        await asyncio.sleep(0.05)


@pytest.mark.timeout(600)  # 2,000 real E2E messages through 3 processes: ~40-100 s on 2 shared cores
async def test_an_instance_killed_under_load_loses_and_duplicates_nothing(
    tmp_path: Path, redis: RedisServer, postgres: PostgresServer
) -> None:
    async def kill_one(exchange: Exchange) -> None:
        await _when_sent(exchange, MESSAGES // 3)
        exchange.dead.add(1)
        exchange.servers.kill(1)  # SIGKILL: nothing flushed, sockets cut

    with cluster(tmp_path, redis, postgres, 3) as servers:
        exchange = await _exchange(tmp_path, servers, kill_one)
        moved = [d for d in exchange.devices if d.reconnects]
        assert moved, "the killed instance had clients, and they reconnected elsewhere"


@pytest.mark.timeout(600)
async def test_a_redis_restart_under_load_loses_and_duplicates_nothing(
    tmp_path: Path, private_redis: RedisServer, postgres: PostgresServer
) -> None:
    async def restart_redis(exchange: Exchange) -> None:
        await _when_sent(exchange, MESSAGES // 3)
        private_redis.kill()
        await asyncio.sleep(1)
        private_redis.start()

    with cluster(tmp_path, private_redis, postgres, 3) as servers:
        await _exchange(tmp_path, servers, restart_redis)


@pytest.mark.timeout(600)
async def test_postgres_stopped_for_5s_under_load_loses_and_duplicates_nothing(
    tmp_path: Path, redis: RedisServer, private_postgres: PostgresServer
) -> None:
    """Every instance answers `unavailable` while the database is gone; the devices retry (a send
    whose reply never came goes again with its id) and, once it is back, every copy arrives once."""
    sent_at_stop: list[int] = []

    async def stop_postgres(exchange: Exchange) -> None:
        await _when_sent(exchange, MESSAGES // 3)
        await asyncio.to_thread(private_postgres.stop)
        sent_at_stop.append(exchange.sent)
        await asyncio.sleep(5)
        assert exchange.sent - sent_at_stop[0] <= len(exchange.devices), "sends went on with no database"
        await asyncio.to_thread(private_postgres.start)

    with cluster(tmp_path, redis, private_postgres, 3) as servers:
        exchange = await _exchange(tmp_path, servers, stop_postgres)
        assert sum(d.reconnects for d in exchange.devices) >= len(exchange.devices) // 2, (
            "the outage reached the devices"
        )
        for index in range(3):
            assert servers.instances[index].process.poll() is None, f"instance {index} stayed up"
            assert "Traceback" not in servers.log(index)


async def test_after_a_redis_restart_connected_devices_hear_what_they_missed(
    tmp_path: Path, private_redis: RedisServer, postgres: PostgresServer
) -> None:
    with cluster(tmp_path, private_redis, postgres, 2) as servers:
        alice = await make_account(servers.url(0), tmp_path, "alice")
        bob = await make_account(servers.url(0), tmp_path, "bob")
        async with (
            primary(servers.url(1), tmp_path / "carol-phone", "carol") as carol_phone,
            messenger_at(alice.primary_dir, servers.url(1)) as a_phone,
            messenger_at(bob.companion_dir, servers.url(0)) as b_laptop,
        ):
            carol_laptop = await link_one(servers.url(0), carol_phone, tmp_path / "carol-laptop")
            await a_phone.contact(handle="bob")
            private_redis.kill()
            await a_phone.send("bob", "sent while Redis was down")  # stored; its events are lost
            await carol_phone.unlink(carol_laptop.state.device_id)  # so is the unlink's
            private_redis.start()
            # Instance A subscribes again and has its sockets catch up: the newest queued message
            # is announced (the laptop fetches what it missed, over the socket it kept), and a device
            # unlinked meanwhile is told so and closed.
            event = await b_laptop.session.connection.next_event(timeout=15)
            assert event["event"] == "message"
            await b_laptop.handle_events([event])
            assert texts(b_laptop.take_unreported()) == ["sent while Redis was down"]
            event = await carol_laptop.connection.next_event(timeout=5)
            assert event == {"event": "device.unlinked", "device_id": carol_laptop.state.device_id}
            with pytest.raises(ConnectionLost):
                await carol_laptop.connection.next_event(timeout=5)
