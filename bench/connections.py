"""Idle authenticated devices: how many one instance (or two) holds, server memory per connection, and
delivery latency while they are connected. On loopback.

Worker processes (``--processes``) each play a share of ``--devices`` devices. Every device is its
own account, registered through ``account.register`` over a socket that is then closed (phase 1);
then every device opens a WebSocket from one of ``--addresses`` source addresses (127.0.0.2, .3, …:
the server's per-address caps apply to sockets that have not signed in, and the kernel's port range
is per address) and signs in with ``auth`` (phase 2), and stays connected, idle. The server's
resident memory (VmRSS) is read after phase 1 and after phase 2: the difference divided by the
connected devices is the memory per connection. Then, with everyone still connected, ``--probes``
devices per worker publish E2E keys and send each other messages for ``--seconds`` at ``--rate``
messages/s in all; the latency of each (send to the receiving device, which acknowledges) is what a
user would see on a server holding that many connections.

    .venv/bin/python bench/connections.py [--devices 18000] [--processes 4] [--addresses 16]
        [--instances 1|2] [--rate 50] [--seconds 10]

With ``--instances 2`` two servers share a throwaway PostgreSQL and Redis (tests/pg_server.py,
tests/redis_server.py) and the devices alternate between them; with one, the server uses SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from loadgen import Channel, Tally, Worker, b64u_decode, b64u_encode, percentile, stamped_body

BENCH = Path(__file__).resolve().parent
PER_ADDRESS_AT_ONCE = 8
"""Hand-shakes in flight per source address (the server admits 16 unauthenticated sockets each)."""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- the worker ------------------------------------------------------------------------------------


class Device:
    """One device: its keys, and once connected, its socket."""

    def __init__(self, handle: str, url: str, source: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.handle, self.url, self.source = handle, url, source
        self.account_key = Ed25519PrivateKey.generate()
        self.device_key = Ed25519PrivateKey.generate()
        self.account_id = ""
        self.device_id = ""
        self.socket: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> dict[str, Any]:
        from websockets.asyncio.client import connect

        self.socket = await connect(
            self.url.replace("http", "ws", 1) + "/ws",
            local_addr=(self.source, 0),
            open_timeout=60,
            ping_interval=None,  # the server pings every idle socket; the client only answers
            max_size=2**20,
        )
        hello: dict[str, Any] = json.loads(await self.socket.recv())
        return hello

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send and wait for the reply (reading in line, or through the reader once it runs)."""
        request_id = next(self._ids)
        await self.socket.send(json.dumps({"id": request_id, "op": op, **fields}))
        if self._reader is not None:
            future = asyncio.get_running_loop().create_future()
            self._pending[request_id] = future
            reply = await asyncio.wait_for(future, timeout=60)
        else:
            while True:
                reply = json.loads(await asyncio.wait_for(self.socket.recv(), timeout=60))
                if reply.get("id") == request_id:
                    break
        if not reply.get("ok"):
            raise Refused(op, reply.get("error") or {})
        result: dict[str, Any] = reply["result"]
        return result

    async def register(self) -> None:
        from lockstep.link.devices import DeviceEntry, DeviceList, Role
        from lockstep.link.encoding import key_id
        from lockstep.link.envelope import Context, auth_message, sign

        hello = await self.connect()
        try:
            origin, challenge = hello["server"]["origin"], b64u_decode(hello["challenge"])
            account_public = self.account_key.public_key().public_bytes_raw()
            device_public = self.device_key.public_key().public_bytes_raw()
            now = int(time.time() * 1000)
            primary = DeviceEntry.new(device_public, Role.PRIMARY, "Phone", now)
            envelope = DeviceList(key_id(account_public), 1, now, (primary,)).sign(self.account_key)
            result = await self.request(
                "account.register",
                handle=self.handle,
                display_name=self.handle,
                account_key=b64u_encode(account_public),
                device_key=b64u_encode(device_public),
                device_list=envelope.to_json(),
                signature=b64u_encode(sign(self.device_key, Context.AUTH, auth_message(challenge, origin))),
            )
            self.account_id, self.device_id = result["account_id"], result["device_id"]
        finally:
            await self.socket.close()
            self.socket = None

    async def sign_in(self) -> None:
        from lockstep.link.envelope import Context, auth_message, sign

        hello = await self.connect()
        origin, challenge = hello["server"]["origin"], b64u_decode(hello["challenge"])
        signature = sign(self.device_key, Context.AUTH, auth_message(challenge, origin))
        try:
            await self.request("auth", device_id=self.device_id, signature=b64u_encode(signature))
        except BaseException:
            await self.socket.close()
            self.socket = None
            raise

    async def publish_keys(self) -> None:
        from lockstep.e2e.olm import OlmDevice

        keys = OlmDevice.create().device_keys(self.account_id, self.device_id, int(time.time() * 1000))
        await self.request("keys.upload", bundle=keys.seal(self.device_key).to_json())

    def read(self, tally: Tally) -> None:
        """From now on a task reads this socket: replies to their requests, messages to ``tally``
        (acknowledged in batches, as clients do)."""

        async def reader() -> None:
            with contextlib.suppress(Exception):
                async for frame in self.socket:
                    message = json.loads(frame)
                    future = self._pending.pop(message.get("id"), None)
                    if future is not None:
                        future.set_result(message)
                    elif message.get("event") == "message":
                        tally.delivered(self.device_id, b64u_decode(message["payload"]["ciphertext"]))
                        seq = int(message["seq"])
                        asyncio.get_running_loop().create_task(self.request("messages.ack", up_to=seq))

        self._reader = asyncio.get_running_loop().create_task(reader())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.socket is not None:
            with contextlib.suppress(Exception):
                await self.socket.close()


class Refused(RuntimeError):
    def __init__(self, op: str, error: dict[str, Any]) -> None:
        super().__init__(f"{op}: {error}")
        self.code = str(error.get("code"))


RETRY = {"unavailable", "rate_limited"}
"""What a client tries again after a pause: the server was busy (a full database pool) or asked it to."""


async def gathered(
    jobs: list[Callable[[], Awaitable[None]]], gates: dict[str, asyncio.Semaphore], sources: list[str]
) -> int:
    """Run jobs (each bound to a source address) with at most PER_ADDRESS_AT_ONCE per address, each
    tried up to 5 times while the server says to retry; returns how many failed for good."""

    async def one(job: Callable[[], Awaitable[None]], source: str) -> bool:
        for attempt in range(5):
            async with gates[source]:
                try:
                    await job()
                    return True
                except Refused as error:
                    if error.code not in RETRY or attempt == 4:
                        print(f"failed: {error}", file=sys.stderr)
                        return False
                except Exception as error:
                    print(f"failed: {type(error).__name__}: {error}", file=sys.stderr)
                    return False
            await asyncio.sleep(0.5 * 2**attempt)
        return False

    done = await asyncio.gather(*(one(job, source) for job, source in zip(jobs, sources, strict=True)))
    return done.count(False)


async def worker() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    channel = Channel()
    emit, read = channel.emit, channel.read
    spec = await read()
    urls, sources = spec["urls"], spec["sources"]
    gates = {source: asyncio.Semaphore(PER_ADDRESS_AT_ONCE) for source in sources}
    devices = [
        Device(f"idle{spec['worker']}x{i}", urls[i % len(urls)], sources[i % len(sources)])
        for i in range(spec["count"])
    ]
    started = time.monotonic()
    failed = await gathered([d.register for d in devices], gates, [d.source for d in devices])
    devices = [d for d in devices if d.device_id]
    emit({"registered": {"count": len(devices), "failed": failed, "seconds": time.monotonic() - started}})
    await read()  # connect
    started = time.monotonic()
    failed = await gathered([d.sign_in for d in devices], gates, [d.source for d in devices])
    emit(
        {
            "connected": {
                "count": len(devices) - failed,
                "failed": failed,
                "seconds": time.monotonic() - started,
            }
        }
    )
    probe = await read()  # probe: {"seconds", "rate"}
    tally = Tally()
    probes = [d for d in devices if d.socket is not None][: spec["probes"]]
    for device in probes:
        device.read(tally)
        await device.publish_keys()
    tally.measuring = True
    interval = len(probes) / probe["rate"] if probe["rate"] else 1.0
    stop = time.monotonic() + probe["seconds"]
    sent = [0]

    async def sender(index: int, device: Device) -> None:
        peer = probes[(index + 1) % len(probes)]
        sender_key = b64u_encode(os.urandom(32))
        await asyncio.sleep(interval * index / len(probes))
        while time.monotonic() < stop:
            number = sent[0]
            sent[0] += 1
            body = stamped_body(index, number, spec["body_bytes"])
            await device.request(
                "messages.send",
                message_id=f"probe{spec['worker']:03d}x{number:010d}",
                to=peer.account_id,
                payloads=[
                    {
                        "device_id": peer.device_id,
                        "type": "olm",
                        "olm_type": 1,
                        "sender_key": sender_key,
                        "ciphertext": b64u_encode(body),
                    }
                ],
            )
            await asyncio.sleep(interval)

    await asyncio.gather(*(sender(i, d) for i, d in enumerate(probes)))
    await tally.wait_for(sent[0], time.monotonic_ns() + 10_000_000_000)
    emit({"probe": {"sent": sent[0], "received": tally.received, "latencies_ns": tally.latencies_ns}})
    await read()  # close
    await asyncio.gather(*(d.close() for d in devices))
    emit({"closed": True})


# --- the orchestrator ------------------------------------------------------------------------------


async def orchestrate(args: argparse.Namespace, urls: list[str], pids: list[int]) -> None:
    from lockstep_load import typical_ciphertext_bytes

    body_bytes = typical_ciphertext_bytes()
    sources = [f"127.0.0.{2 + i}" for i in range(args.addresses)]
    share = [
        args.devices // args.processes + (i < args.devices % args.processes) for i in range(args.processes)
    ]
    workers = [
        await Worker.start(
            [sys.executable, __file__, "--worker"],
            {
                "worker": index,
                "count": count,
                "urls": urls,
                "sources": sources[index :: args.processes] or sources,
                "probes": args.probes,
                "body_bytes": body_bytes,
            },
        )
        for index, count in enumerate(share)
    ]
    try:
        registered = [await w.hear("registered", 3600) for w in workers]
        took = max(r["seconds"] for r in registered)
        print(
            f"phase 1: {sum(r['count'] for r in registered)} accounts registered in {took:.0f} s",
            flush=True,
        )
        await asyncio.sleep(3)
        snapshot(args, pids, 0)
        before = [rss_kib(pid) for pid in pids]
        files_before = [open_files(pid) for pid in pids]
        for w in workers:
            await w.say({"connect": True})
        started = time.monotonic()
        replies = [await w.hear("connected", 3600) for w in workers]
        took = time.monotonic() - started
        connected = sum(r["count"] for r in replies)
        failed = sum(r["failed"] for r in replies)
        await asyncio.sleep(5)  # let every hand-shake's transient buffers go
        after = [rss_kib(pid) for pid in pids]
        files_after = [open_files(pid) for pid in pids]
        per_connection = (sum(after) - sum(before)) / max(connected, 1)
        snapshot(args, pids, 1)
        print(
            f"phase 2: {connected} devices connected and signed in ({failed} failed) in {took:.0f} s; "
            f"server descriptors {files_before} -> {files_after}; server memory (VmRSS) "
            f"{[b // 1024 for b in before]} -> {[a // 1024 for a in after]} MiB: "
            f"{per_connection:.1f} KiB per connection",
            flush=True,
        )
        for w in workers:
            await w.say({"seconds": args.seconds, "rate": args.rate / args.processes})
        probes = [await w.hear("probe", args.seconds + 120) for w in workers]
        latencies = sorted(ns / 1e6 for p in probes for ns in p["latencies_ns"])
        sent, received = sum(p["sent"] for p in probes), sum(p["received"] for p in probes)
        still = [open_files(pid) for pid in pids]
        print(
            f"while connected: {sent} messages between {args.probes * args.processes} of the devices at "
            f"{args.rate:.0f}/s, {received} delivered; latency p50 {percentile(latencies, 0.5):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {percentile(latencies, 1.0):.1f} ms; "
            f"server descriptors now {still}",
            flush=True,
        )
        print(
            f"| {len(pids)} | {connected} | {failed} | {per_connection:.1f} KiB | "
            f"{percentile(latencies, 0.5):.1f} ms | {percentile(latencies, 0.99):.1f} ms |"
        )
        for w in workers:
            await w.say({"close": True})
        for w in workers:
            await w.hear("closed", 300)
    finally:
        for w in workers:
            await w.stop()


def snapshot(args: argparse.Namespace, pids: list[int], number: int) -> None:
    """With --tracemalloc: have the server dump a snapshot; after the second, print the difference."""
    if not args.tracemalloc:
        return
    import signal
    import tracemalloc

    os.kill(pids[0], signal.SIGUSR1)
    path = Path(f"{args.tracemalloc}.{number}")
    for _ in range(600):
        if path.exists():
            break
        time.sleep(0.1)
    if number == 0:
        return
    first = tracemalloc.Snapshot.load(f"{args.tracemalloc}.0")
    second = tracemalloc.Snapshot.load(str(path))
    for group in ("lineno", "traceback"):
        stats = second.compare_to(first, group)
        total = sum(s.size_diff for s in stats)
        print(f"tracemalloc, by {group}: {total / 1024 / args.devices:.1f} KiB per device traced in all")
        for stat in stats[: 25 if group == "lineno" else 8]:
            if group == "lineno":
                frame = stat.traceback[0]
                print(
                    f"  {stat.size_diff / args.devices:8.0f} B/device  {stat.count_diff:+7d}  "
                    f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
                )
            else:
                print(f"  {stat.size_diff / args.devices:8.0f} B/device:")
                for line in stat.traceback.format()[-12:]:
                    print("      " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=18_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--addresses", type=int, default=16, help="source addresses 127.0.0.2 onwards")
    parser.add_argument("--instances", type=int, default=1, choices=(1, 2))
    parser.add_argument("--probes", type=int, default=10, help="devices per worker that exchange messages")
    parser.add_argument("--rate", type=float, default=50.0, help="messages/s among the probes, in all")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace the server's Python allocations and print what the connections added (one instance; "
        "tracing inflates memory, so per-connection figures of such a run are not the benchmark's)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker())
        return
    sys.path.insert(0, str(BENCH.parent / "tests"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(
        f"{args.devices} devices from {args.processes} processes and {args.addresses} source addresses, "
        f"{args.instances} instance(s); open-file limit {soft}/{hard}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        if args.instances == 1:
            from bench_server import TRACEMALLOC_ENV, generous_server

            if args.tracemalloc:
                folder = stack.enter_context(tempfile.TemporaryDirectory())
                os.environ[TRACEMALLOC_ENV] = args.tracemalloc = str(Path(folder) / "snapshot")

            url, server = stack.enter_context(generous_server())
            urls, pids = [url], [server.pid]
        else:
            from bench_server import generous_servers

            from pg_server import start_postgres
            from redis_server import start_redis

            postgres = stack.enter_context(contextlib.closing(start_postgres()))
            redis = stack.enter_context(contextlib.closing(start_redis()))
            urls, servers = stack.enter_context(
                generous_servers(2, redis.url, database_url=postgres.create_database("connections"))
            )
            pids = [s.pid for s in servers]
        asyncio.run(orchestrate(args, urls, pids))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
