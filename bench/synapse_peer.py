"""The same messaging workload against Matrix Synapse on PostgreSQL, for a side-by-side figure.

Synapse runs from its own virtual environment, made by :func:`ensure_venv` in the benchmarks' cache
folder (it is not a Lockstep dependency; ``--synapse PYTHON`` names another). Its database is a new
database on the same PostgreSQL server as Lockstep's run (created ``C``-collated, as Synapse wants).

Workload, as Lockstep's: sender users with one device each, recipient users with two devices each (two
logins), one room per sender with its recipient, so every message reaches exactly 2 devices. A sender
PUTs ``m.room.encrypted`` events whose ``ciphertext`` is a ciphertext-sized body (Synapse answers once
the event is persisted); each recipient device long-polls ``/sync``. Synapse's rate limits are raised
and its logging set to warnings, as Lockstep's server is run.

Run as a script, this file is the worker (see loadgen.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
from loadgen import LoadClient, Sender, Tally, b64_decode, run_worker, venv_with

SYNAPSE = "matrix-synapse[postgres]==1.163.2"
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


def ensure_venv(cache: Path) -> str:
    """A venv with Synapse in ``cache`` (made once); returns its Python."""
    return venv_with(cache / "synapse-venv", SYNAPSE)


def postgres_config(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"""
database:
  name: psycopg2
  args:
    user: {parts.username}
    host: {parts.hostname}
    port: {parts.port}
    database: {parts.path.lstrip("/")}
    cp_min: 5
    cp_max: 10
"""


def start(python: str, directory: Path, port: int, database_url: str) -> subprocess.Popen[bytes]:
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
    text = re.sub(r"database:\n  name: sqlite3\n  args:\n    database: .*\n", "", text)
    config.write_text(text + OVERRIDES + postgres_config(database_url))
    log_config = next(directory.glob("*.log.config"))
    log_config.write_text(re.sub(r"level: INFO", "level: WARNING", log_config.read_text()))
    return subprocess.Popen(
        [python, "-m", "synapse.app.homeserver", "--config-path", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=directory,
    )


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


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


async def prepare(base: str, directory: Path, senders: int, recipients: int) -> list[dict[str, Any]]:
    """Users, devices and rooms; returns one entry per device for the workers."""
    secret = re.search(r'registration_shared_secret: "(.*)"', (directory / "homeserver.yaml").read_text())
    assert secret is not None
    devices: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/health")).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        users = []
        for i in range(recipients):
            first = await register(client, secret.group(1), f"rcpt{i}")
            users.append(first)
            for device in (first, await login(client, f"rcpt{i}")):
                devices.append({"account": first["user_id"], "token": device["access_token"]})
        for i in range(senders):
            me = await register(client, secret.group(1), f"sndr{i}")
            peer = users[i % recipients]
            room = (
                await client.post(
                    "/_matrix/client/v3/createRoom",
                    headers=auth(me["access_token"]),
                    json={"preset": "private_chat", "invite": [peer["user_id"]], "is_direct": True},
                )
            ).json()["room_id"]
            joined = await client.post(
                f"/_matrix/client/v3/join/{urllib.parse.quote(room)}",
                headers=auth(peer["access_token"]),
                json={},
            )
            joined.raise_for_status()
            devices.append({"number": i, "to": peer["user_id"], "token": me["access_token"], "room": room})
    return devices


# --- the worker ------------------------------------------------------------------------------------


class SynapseClient(LoadClient):
    def __init__(self) -> None:
        self.client: httpx.AsyncClient | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, spec: dict[str, Any], tally: Tally) -> list[Sender]:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        self.client = client = httpx.AsyncClient(base_url=spec["base"], timeout=90, limits=limits)
        positions = await asyncio.gather(*(self._initial_sync(client, d) for d in spec["receivers"]))
        for index, (device, since) in enumerate(zip(spec["receivers"], positions, strict=True)):
            name = f"{device['account']}/{index}"
            self.tasks.append(asyncio.create_task(self._sync(client, device["token"], since, name, tally)))
        return [
            Sender(int(d["number"]), d["to"], self._sender(client, d, spec["body_bytes"]))
            for d in spec["senders"]
        ]

    @staticmethod
    async def _initial_sync(client: httpx.AsyncClient, device: dict[str, Any]) -> str:
        answer = await client.get(
            "/_matrix/client/v3/sync",
            params={"filter": SYNC_FILTER, "timeout": "0"},
            headers=auth(device["token"]),
        )
        answer.raise_for_status()
        return str(answer.json()["next_batch"])

    @staticmethod
    async def _sync(client: httpx.AsyncClient, token: str, since: str, name: str, tally: Tally) -> None:
        params = {"filter": SYNC_FILTER, "timeout": "30000"}
        with contextlib.suppress(Exception):
            while True:
                answer = await client.get(
                    "/_matrix/client/v3/sync", params={**params, "since": since}, headers=auth(token)
                )
                body = answer.json()
                since = body["next_batch"]
                for room in body.get("rooms", {}).get("join", {}).values():
                    for event in room.get("timeline", {}).get("events", []):
                        if event.get("type") == "m.room.encrypted":
                            tally.delivered(name, b64_decode(event["content"]["ciphertext"]))

    @staticmethod
    def _sender(client: httpx.AsyncClient, device: dict[str, Any], size: int) -> Any:
        room = urllib.parse.quote(device["room"])
        session_id = base64.b64encode(os.urandom(32)).decode().rstrip("=")
        count = [0]

        async def send(body: bytes) -> None:
            count[0] += 1
            content = {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": base64.b64encode(body).decode().rstrip("="),
                "session_id": session_id,
                "sender_key": "bench",
                "device_id": "bench",
            }
            txn = f"b{device['number']}-{count[0]}-{time.monotonic_ns()}"
            answer = await client.put(
                f"/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/{txn}",
                headers=auth(device["token"]),
                json=content,
            )
            answer.raise_for_status()

        return send

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.client is not None:
            await self.client.aclose()


if __name__ == "__main__":
    run_worker(SynapseClient())
