"""The same messaging workload against Matrix Synapse (SQLite) on loopback, for a side-by-side figure.

Synapse runs from its own virtual environment (it is not a Lockstep dependency):

    python3 -m venv /tmp/synapse-venv && /tmp/synapse-venv/bin/pip install matrix-synapse

Workload, as in messaging_throughput.py: 50 sender users with one device each, 25 recipient users with two
devices each (two logins), one room per sender with its recipient, so every message reaches exactly 2
devices. Senders encrypt with Megolm (vodozemac, like Lockstep's groups) and PUT `m.room.encrypted`
events; each recipient device long-polls `/sync` and decrypts. Synapse's rate limits are raised and its
logging set to warnings, as Lockstep's server is run. Latency is from just before encrypting to the
receiving device having decrypted the event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import httpx
import vodozemac
from messaging_throughput import Outcome, cpu_seconds

UNLIMITED = "{per_second: 1000000, burst_count: 1000000}"
OVERRIDES = f"""
trusted_key_servers: []
suppress_key_server_warning: true
rc_message: {UNLIMITED}
rc_registration: {UNLIMITED}
rc_room_creation: {UNLIMITED}
rc_login:
  address: {UNLIMITED}
  account: {UNLIMITED}
  failed_attempts: {UNLIMITED}
rc_joins:
  local: {UNLIMITED}
  remote: {UNLIMITED}
rc_invites:
  per_room: {UNLIMITED}
  per_user: {UNLIMITED}
  per_issuer: {UNLIMITED}
"""
SYNC_FILTER = json.dumps(
    {
        "room": {"timeline": {"limit": 200}, "state": {"lazy_load_members": True}},
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    }
)


def start(python: str, directory: Path, port: int) -> subprocess.Popen[bytes]:
    config = directory / "homeserver.yaml"
    subprocess.run(
        [
            python,
            "-m",
            "synapse.app.homeserver",
            "--server-name",
            "localhost",
            "--config-path",
            str(config),
            "--generate-config",
            "--report-stats=no",
            "--data-directory",
            str(directory),
        ],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=directory,  # Synapse logs its start-up to the working folder
    )
    text = config.read_text().replace("port: 8008", f"port: {port}").replace("    - ::1\n", "")
    text = re.sub(r"trusted_key_servers:\n  - server_name: \"matrix.org\"\n", "", text)
    config.write_text(text + OVERRIDES)
    log_config = next(directory.glob("*.log.config"))
    log_config.write_text(re.sub(r"level: INFO", "level: WARNING", log_config.read_text()))
    return subprocess.Popen(
        [python, "-m", "synapse.app.homeserver", "--config-path", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=directory,
    )


async def register(client: httpx.AsyncClient, secret: str, username: str) -> dict[str, str]:
    nonce = (await client.get("/_synapse/admin/v1/register")).json()["nonce"]
    password = "bench-" + username
    mac = hmac.new(
        secret.encode(),
        b"\x00".join(x.encode() for x in (nonce, username, password, "notadmin")),
        hashlib.sha1,
    ).hexdigest()
    answer = await client.post(
        "/_synapse/admin/v1/register",
        json={"nonce": nonce, "username": username, "password": password, "mac": mac},
    )
    answer.raise_for_status()
    return dict(answer.json())


async def login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    answer = await client.post(
        "/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": username},
            "password": "bench-" + username,
        },
    )
    answer.raise_for_status()
    return dict(answer.json())


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def run(python: str, seconds: float, senders: int, recipients: int, rate: float) -> Outcome:
    from lockstep_servers import free_port

    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        server = start(python, Path(directory), port)
        try:
            return await _workload(server, Path(directory), port, seconds, senders, recipients, rate)
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=20)


async def _workload(
    server: subprocess.Popen[bytes],
    directory: Path,
    port: int,
    seconds: float,
    senders: int,
    recipients: int,
    rate: float,
) -> Outcome:
    base = f"http://127.0.0.1:{port}"
    secret = re.search(r'registration_shared_secret: "(.*)"', (directory / "homeserver.yaml").read_text())
    assert secret is not None
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/health")).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        recipient_devices: list[dict[str, str]] = []
        recipient_users = []
        for i in range(recipients):
            first = await register(client, secret.group(1), f"rcpt{i}")
            recipient_users.append(first)
            recipient_devices += [first, await login(client, f"rcpt{i}")]
        rooms, sessions, sender_tokens = [], [], []
        for i in range(senders):
            me = await register(client, secret.group(1), f"sndr{i}")
            peer = recipient_users[i % recipients]
            room = (
                await client.post(
                    "/_matrix/client/v3/createRoom",
                    headers=auth(me["access_token"]),
                    json={"preset": "private_chat", "invite": [peer["user_id"]], "is_direct": True},
                )
            ).json()["room_id"]
            (
                await client.post(
                    f"/_matrix/client/v3/join/{urllib.parse.quote(room)}",
                    headers=auth(peer["access_token"]),
                    json={},
                )
            ).raise_for_status()
            rooms.append(room)
            sessions.append(vodozemac.GroupSession())
            sender_tokens.append(me["access_token"])
        inbound = {s.session_id: vodozemac.InboundGroupSession(s.session_key) for s in sessions}

        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        received = [0]
        measuring = [False]

        async def sync_loop(device: dict[str, str]) -> None:
            params = {"filter": SYNC_FILTER, "timeout": "0"}
            since = (
                await client.get(
                    "/_matrix/client/v3/sync", params=params, headers=auth(device["access_token"])
                )
            ).json()["next_batch"]
            params["timeout"] = "30000"
            while True:
                answer = (
                    await client.get(
                        "/_matrix/client/v3/sync",
                        params={**params, "since": since},
                        headers=auth(device["access_token"]),
                    )
                ).json()
                since = answer["next_batch"]
                for room in answer.get("rooms", {}).get("join", {}).values():
                    for event in room.get("timeline", {}).get("events", []):
                        if event.get("type") != "m.room.encrypted":
                            continue
                        content = event["content"]
                        # A fresh decryptor per device: the two devices of a recipient each decrypt.
                        message = vodozemac.MegolmMessage.from_base64(content["ciphertext"])
                        plaintext = inbound[content["session_id"]].decrypt(message).plaintext
                        bench_id = json.loads(plaintext)["bench_id"]
                        now = time.perf_counter()
                        if measuring[0] and bench_id in sent_at:
                            received[0] += 1
                            latencies.append(now - sent_at[bench_id])

        syncers = [asyncio.create_task(sync_loop(d)) for d in recipient_devices]
        await asyncio.sleep(1.0)
        counter = [0]
        interval = senders / rate if rate else 0.0

        async def put(index: int, bench_id: str, body: str) -> None:
            session = sessions[index]
            plaintext = json.dumps({"bench_id": bench_id, "body": body}).encode()
            content = {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": session.encrypt(plaintext).to_base64(),
                "session_id": session.session_id,
                "sender_key": "bench",
                "device_id": "bench",
            }
            txn = base64.urlsafe_b64encode(bench_id.encode()).decode().rstrip("=")
            path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(rooms[index])}/send/m.room.encrypted/{txn}"
            (await client.put(path, headers=auth(sender_tokens[index]), json=content)).raise_for_status()

        async def warm_up(index: int) -> None:
            await put(index, f"warm-{index}", "warm-up")

        async def sender(index: int, stop_at: float) -> None:
            number, next_at = 0, time.perf_counter() + interval * index / senders
            while (next_at if interval else time.perf_counter()) < stop_at:
                if interval:
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                    next_at += interval
                bench_id = f"{index}-{number}"
                sent_at[bench_id] = time.perf_counter()
                await put(index, bench_id, f"message {number}")
                number += 1
                counter[0] += 1

        # Warm-up, as for Lockstep: one message per room, not measured.
        await asyncio.gather(*(warm_up(i) for i in range(senders)))
        await asyncio.sleep(1.0)
        measuring[0] = True
        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        await asyncio.gather(*(sender(i, started + seconds) for i in range(senders)))
        done = time.perf_counter()
        while received[0] < 2 * counter[0] and time.perf_counter() < done + 30:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server.pid) - cpu_before
        for task in syncers:
            task.cancel()
        await asyncio.gather(*syncers, return_exceptions=True)
        return Outcome(counter[0], received[0], elapsed, latencies, cpu)
