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
        [--synapse /tmp/synapse-venv/bin/python]

Without ``--rate`` senders are closed loops (saturation: throughput, and latency including queueing);
with it they offer R messages/s in total (latency at that load). With ``--synapse`` the same workload
then runs against Matrix Synapse (see synapse_peer.py) and the ratios are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_server import generous_server

from lockstep.client.companion import ShownCode, link
from lockstep.client.messenger import Messenger
from lockstep.client.primary import PrimarySession, create_account
from lockstep.client.state import DeviceState
from lockstep.e2e.envelope import Kind


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


@dataclass
class Outcome:
    sent: int
    delivered: int
    elapsed: float
    latencies: list[float]
    server_cpu: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc, 100 ticks a second)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


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
                await self.messenger.handle_events([event, *connection.drain_events()])
                batch = self.messenger.take_unreported()
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
    while (next_at if interval else time.perf_counter()) < stop_at:
        if interval:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += interval
        message_id = f"bench-{messenger.device_id[:8]}-{number:08d}"
        sent_at[message_id] = time.perf_counter()
        await messenger.send_direct(to, Kind.TEXT, {"text": f"message {number}"}, message_id=message_id)
        number += 1
        counter[0] += 1


async def run(
    url: str, server_pid: int, seconds: float, senders: int, recipients: int, rate: float
) -> Outcome:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
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
            counter = [0]
            interval = senders / rate if rate else 0.0
            cpu_before = cpu_seconds(server_pid)
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
            cpu = cpu_seconds(server_pid) - cpu_before
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks)
            delivered = sum(r.received for r in receivers) - before
    return Outcome(counter[0], delivered, elapsed, latencies, cpu)


def report(name: str, outcome: Outcome) -> dict[str, float]:
    ordered = sorted(outcome.latencies)
    p50 = statistics.median(ordered) * 1000 if ordered else float("nan")
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else float("nan")
    figures = {
        "messages/s": outcome.sent / outcome.elapsed,
        "deliveries/s": outcome.delivered / outcome.elapsed,
        "p50 ms": p50,
        "p99 ms": p99,
        "server CPU ms/message": 1000 * outcome.server_cpu / max(outcome.sent, 1),
    }
    print(
        f"{name}: sent {outcome.sent}, delivered {outcome.delivered} of {2 * outcome.sent} by "
        f"{outcome.elapsed:.1f} s; {figures['messages/s']:.0f} messages/s, "
        f"{figures['deliveries/s']:.0f} deliveries/s; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        f"server CPU {outcome.server_cpu:.2f} s ({figures['server CPU ms/message']:.2f} ms/message)"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--recipients", type=int, default=25)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="offered messages/s in total (default: as fast as accepted)"
    )
    parser.add_argument(
        "--synapse",
        metavar="PYTHON",
        help="also run the workload against Matrix Synapse, using this Python (a venv with matrix-synapse)",
    )
    args = parser.parse_args()
    mode = f"{args.rate:.0f} messages/s offered" if args.rate else "as fast as accepted (closed loops)"
    print(
        f"{args.senders + 2 * args.recipients} devices ({args.senders} senders x 1 device, {args.recipients} "
        f"recipients x 2 devices), every message to 2 devices, {args.seconds:.0f} s, {mode}"
    )
    with generous_server() as (url, server):
        outcome = asyncio.run(run(url, server.pid, args.seconds, args.senders, args.recipients, args.rate))
    ours = report("Lockstep", outcome)
    if args.synapse:
        import synapse_peer

        peer = report(
            "Synapse ",
            asyncio.run(
                synapse_peer.run(args.synapse, args.seconds, args.senders, args.recipients, args.rate)
            ),
        )
        print(
            "Lockstep / Synapse: "
            + ", ".join(f"{name} {ours[name] / peer[name]:.3g}" for name in ours if peer[name] == peer[name])
        )
    clients = resource.getrusage(resource.RUSAGE_SELF)
    print(f"client CPU (all devices of both runs, this process): {clients.ru_utime + clients.ru_stime:.2f} s")


if __name__ == "__main__":
    main()
