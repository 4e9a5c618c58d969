"""Sends raw ``call`` envelope bodies from a terminal device, well formed or not (run by the tests as a
subprocess, to give a browser signals no honest client makes).

usage: python send_call_signals.py STATE_DIR HANDLE BODY_JSON...
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from lockstep.client.messenger import Messenger
from lockstep.client.state import DeviceState
from lockstep.e2e.envelope import Kind


async def main(state_dir: str, handle: str, bodies: list[str]) -> None:
    async with Messenger.open(DeviceState.load(Path(state_dir), "primary")) as messenger:
        for body in bodies:
            await messenger.send_direct(handle, Kind.CALL, json.loads(body))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
