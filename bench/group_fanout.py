"""Large groups (issue 15): time from a group send to the message decrypted on every member device, for
groups of 50, 256 and 1,024 members with two devices each (a phone and a linked laptop), the first
message (the Megolm key share to every device: Olm sessions from claimed one-time keys, in about 45
requests at 1,024 members) and later messages (one Megolm ciphertext the server copies to every device).

Every device is a real Python :class:`Messenger` with its own WebSocket, all in this process; the server
is its own process (bench_server.py: SQLite unless ``--database``; its rate limits raised, since every
device connects from 127.0.0.1). Each device handles its pushed events as the Python client does
(decrypt, save its state, acknowledge). All devices share this box's CPUs, so the wall-clock figure
counts every device's work one after another; the server's part and one device's part are shown too.

    .venv/bin/python bench/group_fanout.py [--sizes 50,256,1024] [--later 5] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_server import generous_server
from loadgen import CpuMeter

from group_of_devices import LoopThread, Person, load, make_people, opened
from lockstep.client.messenger import Kind, Messenger, new_message_id


@dataclass
class Figure:
    members: int
    devices: int
    which: str
    accepted_s: float
    """From the send call to the server's answer to its last request (every copy queued)."""
    decrypted_s: float
    """From the send call to the message decrypted (and saved, and acknowledged) on the last device."""
    server_cpu_s: float
    client_cpu_ms_per_device: float


class Listener:
    """Runs every device's event loop and notes when each message reached how many devices."""

    def __init__(self, messengers: list[Messenger]) -> None:
        self.reached: dict[str, int] = {}
        self._waiting: dict[str, tuple[int, asyncio.Future[float]]] = {}
        self._tasks = [asyncio.create_task(self._run(m)) for m in messengers]

    async def _run(self, messenger: Messenger) -> None:
        connection = messenger.session.connection
        while True:
            event = await connection.next_event()
            await messenger.handle_events([event, *connection.drain_events()])
            for message in messenger.take_unreported():
                count = self.reached[message.message_id] = self.reached.get(message.message_id, 0) + 1
                expected, done = self._waiting.get(message.message_id, (0, None))
                if done is not None and count == expected and not done.done():
                    done.set_result(time.perf_counter())

    def expect(self, message_id: str, devices: int) -> asyncio.Future[float]:
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = (devices, done)
        return done

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def measure(
    url: str, server_pid: int, people: list[Person], sizes: list[int], later: int
) -> list[Figure]:
    figures: list[Figure] = []
    meter = CpuMeter({"server": [server_pid]})
    async with opened([d for p in people for d in p.devices]) as devices:
        sender = devices.open[people[0].phone]
        listener = Listener([m for d, m in devices.open.items() if d != people[0].phone])
        try:
            for size in sizes:
                members = people[:size]
                group = await sender.session.connection.request(
                    "groups.create", members=[load(p.phone).account.account_id for p in members[1:]]
                )
                targets = 2 * size - 1
                for number in range(1 + later):
                    message_id = new_message_id()
                    done = listener.expect(message_id, targets)
                    meter.start()
                    cpu = time.process_time()
                    start = time.perf_counter()
                    await sender.send_group(
                        group["group_id"], Kind.TEXT, {"text": f"hello {number}"}, message_id=message_id
                    )
                    accepted = time.perf_counter()
                    finished = await asyncio.wait_for(done, timeout=600)
                    figures.append(
                        Figure(
                            size,
                            targets,
                            "first" if number == 0 else "later",
                            accepted - start,
                            finished - start,
                            meter.used()["server"],
                            (time.process_time() - cpu) * 1000 / targets,
                        )
                    )
                    print(figures[-1], flush=True)
                    assert listener.reached[message_id] == targets, "every device exactly once"
        finally:
            await listener.close()
    return figures


def table(figures: list[Figure]) -> str:
    header = ["members x devices", "message", "accepted by the server", "decrypted on all devices"]
    header += ["server CPU", "client CPU per device"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size in sorted({f.members for f in figures}):
        for which in ("first", "later"):
            rows = [f for f in figures if f.members == size and f.which == which]
            if not rows:
                continue
            label = which if len(rows) == 1 else f"{which} (median of {len(rows)})"
            cells = [f"{size} x 2 ({rows[0].devices} receiving)", label]
            cells += [f"{statistics.median(r.accepted_s for r in rows):.2f} s"]
            cells += [f"{statistics.median(r.decrypted_s for r in rows):.2f} s"]
            cells += [f"{statistics.median(r.server_cpu_s for r in rows):.2f} s"]
            cells += [f"{statistics.median(r.client_cpu_ms_per_device for r in rows):.1f} ms"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,256,1024", help="group sizes in members (two devices each)")
    parser.add_argument("--later", type=int, default=5, help="later messages per group, after the first")
    parser.add_argument("--database", help="a postgresql:// URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    loop = LoopThread()
    try:
        with tempfile.TemporaryDirectory() as root, generous_server(args.database) as (url, server):
            started = time.perf_counter()
            handles = [f"person{i}" for i in range(sizes[-1])]
            people = loop.run(make_people(url, Path(root), handles, laptops=len(handles)), timeout=7200)
            print(
                f"{len(people)} accounts with a phone and a laptop in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            figures = loop.run(measure(url, server.pid, people, sizes, args.later), timeout=7200)
    finally:
        loop.close()
    print(table(figures))


if __name__ == "__main__":
    main()
