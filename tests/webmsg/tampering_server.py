"""``lockstep serve`` whose relay flips one byte of every ciphertext sent by the devices named in a file
(run by the tests as a subprocess, like a compromised server; the file is read at each send, so a test
names a device once it exists).

usage: python tampering_server.py DEVICE_ID_FILE serve ARGS...
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/, for calls_samples

from calls_samples import flip_a_byte
from lockstep.cli import main
from lockstep.server import gateway


def tamper_with_sends_from(device_file: Path) -> None:
    honest_send = gateway.OPERATIONS["messages.send"]

    async def tampering_send(services: Any, connection: Any, request: Any) -> dict[str, Any]:
        targets = set(device_file.read_text().split()) if device_file.exists() else set()
        if connection.identity is not None and connection.identity.device_id in targets:
            for payload in request.fields.get("payloads", []):
                payload["ciphertext"] = flip_a_byte(payload["ciphertext"])
        result: dict[str, Any] = await honest_send(services, connection, request)
        return result

    gateway.OPERATIONS["messages.send"] = tampering_send


if __name__ == "__main__":
    tamper_with_sends_from(Path(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
