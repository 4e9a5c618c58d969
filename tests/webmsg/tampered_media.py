"""Sends a media message whose descriptor lies about the blob (run by the tests as a subprocess).

usage: python tampered_media.py STATE_DIR HANDLE FILE hash|mac

``hash``: the blob's SHA-256 in the descriptor is wrong; ``mac``: the media key is another one, so the
blob's hash matches but its MAC cannot. A receiver must refuse both.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

from lockstep.client.messenger import Messenger
from lockstep.client.state import DeviceState
from lockstep.e2e.envelope import Kind
from lockstep.link.encoding import b64u_encode


async def main(state_dir: str, handle: str, file: str, lie: str) -> None:
    async with Messenger.open(DeviceState.load(Path(state_dir), "primary")) as messenger:
        media = await messenger.upload(Path(file))
        field = "file_enc_sha256" if lie == "hash" else "media_key"
        media[field] = b64u_encode(secrets.token_bytes(32))
        await messenger.send_direct(handle, Kind.MEDIA, {"media": media, "caption": f"tampered {lie}"})


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
