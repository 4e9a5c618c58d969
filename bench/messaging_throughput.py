"""End-to-end messaging throughput and send-to-receive latency with 100 simulated devices, on loopback.

A server runs in a child process (SQLite, rate limits raised: every device here comes from 127.0.0.1).
The devices are Python Messengers in this process: 50 sender accounts with one device each, and 25
recipient accounts with a primary and a linked companion each — 100 devices, and every message fans out
to exactly 2 devices (the recipient's two; the sender has no other device). Each sender sends text
messages back to back (the next when the server accepted the previous) for a fixed time; each receiving
device decrypts what arrives live and acknowledges it.

Latency is from just before the sender encrypts to the receiving device having decrypted, checked and
stored the message (the moment a UI would show it), on one clock (one process). Olm sessions are
set up in a warm-up round first, which is not measured.

    .venv/bin/python bench/messaging_throughput.py [--seconds 10] [--senders 50] [--recipients 25] [--rate R]

Without ``--rate`` senders are closed loops (saturation: throughput, and latency including queueing);
with it they offer R messages/s in total (latency at that load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from lockstep.client.companion import ShownCode, link
from lockstep.client.messenger import Messenger, Received
from lockstep.client.primary import PrimarySession, create_account
from lockstep.client.state import DeviceState
from lockstep.e2e.envelope import Kind


def serve_with_generous_limits(port: int, data: str) -> None:
    import uvicorn

    from lockstep.server.app import create_app
    from lockstep.server.ratelimit import RateLimiter
    from lockstep.server.services import Limits, Services
    from lockstep.server.settings import default_web_root
    from lockstep.server.storage import SqliteStore

    many = RateLimiter(per_minute=1_000_000)
    limits = Limits(
        link_start=many,
        unknown_refs=many,
        auth_failures=many,
        registrations=many,
        key_claims=many,
        sends=many,
    )
    services = Services(f"http://127.0.0.1:{port}", SqliteStore(Path(data) / "bench.sqlite3"), limits=limits)
    uvicorn.run(create_app(services, default_web_root()), host="127.0.0.1", port=port, log_level="warning")


async def make_recipient(url: str, index: int, root: Path) -> tuple[DeviceState, DeviceState]:
    state = await create_account(url, f"rcpt{index}", f"Recipient {index}", "Phone", root / f"r{index}")
    primary = await PrimarySession.open(state)
    shown: asyncio.Queue[ShownCode] = asyncio.Queue()
    task = asyncio.create_task(link(url, root / f"r{index}-laptop", shown.put_nowait))
    code = (await shown.get()).code
    await primary.inspect(code)
    await primary.approve(code, "Laptop")
    companion = await task
    await companion.close()
    await primary.close()
    return state, companion.state


class Receiver:
    def __init__(self, messenger: Messenger, sent_at: dict[str, float], latencies: list[float]) -> None:
        self.messenger = messenger
        self.sent_at = sent_at
        self.latencies = latencies
        self.received = 0

    async def run(self) -> None:
        connection = self.messenger.session.connection
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                event = await connection.next_event()
                batch: list[Received] = []
                await self.messenger.handle_events([event, *connection.drain_events()], batch)
                now = time.perf_counter()
                for message in batch:
                    if message.kind == "text":
                        self.received += 1
                        started = self.sent_at.get(message.message_id)
                        if started is not None:
                            self.latencies.append(now - started)


async def sender(
    messenger: Messenger,
    to: str,
    stop_at: float,
    sent_at: dict[str, float],
    counter: list[int],
    interval: float,
    offset: float,
) -> None:
    number = 0
    next_at = time.perf_counter() + offset  # senders spread evenly over one interval
    while time.perf_counter() < stop_at:
        if interval:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        message_id = f"bench-{messenger.device_id[:8]}-{number:08d}"
        sent_at[message_id] = time.perf_counter()
        await messenger.send_direct(to, Kind.TEXT, {"text": f"message {number}"}, message_id=message_id)
        number += 1
        counter[0] += 1


async def run(url: str, seconds: float, senders: int, recipients: int, rate: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        setup_started = time.perf_counter()
        pairs = [await make_recipient(url, i, root) for i in range(recipients)]
        sender_states = [
            await create_account(url, f"sndr{i}", f"Sender {i}", "Phone", root / f"s{i}")
            for i in range(senders)
        ]
        async with contextlib.AsyncExitStack() as stack:
            receiving = [
                await stack.enter_async_context(Messenger.open(state)) for pair in pairs for state in pair
            ]
            sending = [await stack.enter_async_context(Messenger.open(state)) for state in sender_states]
            for messenger in receiving:
                messenger.auto_download = False
            devices = len(receiving) + len(sending)
            sent_at: dict[str, float] = {}
            latencies: list[float] = []
            receivers = [Receiver(m, sent_at, latencies) for m in receiving]
            tasks = [asyncio.create_task(r.run()) for r in receivers]
            targets = [f"rcpt{i % recipients}" for i in range(senders)]
            # Warm-up: one message per sender sets up the Olm sessions (one-time key claims, pre-keys).
            await asyncio.gather(*(s.send("@" + t, "warm-up") for s, t in zip(sending, targets, strict=True)))
            await asyncio.sleep(1.0)
            latencies.clear()
            before = sum(r.received for r in receivers)
            setup = time.perf_counter() - setup_started
            counter = [0]
            interval = senders / rate if rate else 0.0
            started = time.perf_counter()
            stop_at = started + seconds
            await asyncio.gather(
                *(
                    sender(s, t, stop_at, sent_at, counter, interval, interval * i / senders)
                    for i, (s, t) in enumerate(zip(sending, targets, strict=True))
                )
            )
            sent_done = time.perf_counter()
            expected = before + 2 * counter[0]
            while sum(r.received for r in receivers) < expected and time.perf_counter() < sent_done + 30:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks)
            delivered = sum(r.received for r in receivers) - before
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    print(
        f"devices: {devices} ({senders} senders x 1 device, {recipients} recipients x 2 devices); "
        f"each message fans out to 2 devices; setup {setup:.1f} s"
    )
    print(
        f"offered: {f'{rate:.0f} messages/s' if rate else 'as fast as the server accepts'}; "
        f"sent {counter[0]} messages in {seconds:.0f} s, delivered {delivered} copies "
        f"(expected {2 * counter[0]}) by {elapsed:.1f} s"
    )
    print(f"throughput: {counter[0] / elapsed:.0f} messages/s, {delivered / elapsed:.0f} device deliveries/s")
    if ordered:
        print(
            f"send-to-receive latency: p50 {statistics.median(ordered) * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--recipients", type=int, default=25)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="offered messages/s in total (default: as fast as accepted)"
    )
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_with_generous_limits(int(args.serve[0]), args.serve[1])
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from lockstep_servers import free_port

    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), data], env=os.environ.copy()
        )
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            asyncio.run(run(url, args.seconds, args.senders, args.recipients, args.rate))
        finally:
            server.terminate()
            server.wait(timeout=10)
    clients, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"CPU: server {children.ru_utime + children.ru_stime:.2f} s, "
        f"clients (all 100 devices, one process) {clients.ru_utime + clients.ru_stime:.2f} s"
    )


if __name__ == "__main__":
    main()
