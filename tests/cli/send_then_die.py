"""A terminal device that sends one text and dies at once, for test_cli_killed_send.py (run as a
subprocess, then killed with SIGKILL once it printed ``LEFT``).

usage: python send_then_die.py STATE_DIR TO TEXT WHEN     (TO: a handle, or #group whose key is shared)

The real messenger sends the text: it saves the request with its ratchet state, then writes the
``messages.send`` frame. With WHEN ``answered`` the server takes it and its answer arrives, but the
process dies before the messenger handles it; with ``unsent`` it dies between the save and the frame
leaving, so the server never gets it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from lockstep.client.messenger import Messenger
from lockstep.client.state import DeviceState


async def main(state_dir: str, handle: str, text: str, when: str) -> None:
    async with Messenger.open(DeviceState.load(Path(state_dir), "primary")) as messenger:
        if handle.startswith("#"):  # keys shared, looked up before the hook: only the send dies
            await messenger.resolve_group(handle)
        else:
            await messenger.contact(handle=handle)
        connection: Any = messenger.session.connection
        socket = connection._socket
        send = socket.send

        async def send_then_die(frame: str) -> None:
            if '"op": "messages.send"' in frame:
                if when == "answered":
                    await send(frame)
                    await asyncio.wait({connection._pending[json.loads(frame)["id"]]})
                print("LEFT", flush=True)
                await asyncio.Event().wait()  # killed here
            await send(frame)

        socket.send = send_then_die
        await messenger.send(handle, text)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
