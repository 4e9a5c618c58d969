"""`lockstep companion ...`: a terminal linked to an account by scanning its QR code with the primary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lockstep.cli import messaging
from lockstep.cli.common import (
    add_state_argument,
    load_state,
    refusals,
    run_client,
    state_dir,
    warn_about_clock,
)
from lockstep.client import companion, qrimage
from lockstep.client.companion import ShownCode
from lockstep.client.session import DeviceSession
from lockstep.link import bycode, probation
from lockstep.link.devices import Role
from lockstep.link.wording import (
    companion_notice,
    idle_text,
    link_code_text,
    number_notice,
    probation_text,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("companion", help="a computer or terminal linked to an account")
    verbs = parser.add_subparsers(dest="companion_verb", required=True, metavar="VERB")

    link = verbs.add_parser("link", help="show a QR code for the primary to scan; wait until linked")
    link.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8000")
    link.add_argument(
        "--qr-out", metavar="FILE", help="also save each QR code as a PNG (replaced atomically)"
    )
    link.add_argument("--quiet-qr", action="store_true", help="do not draw the QR code in the terminal")
    link.add_argument(
        "--code",
        action="store_true",
        help="show a code to type on the phone instead of a QR code (valid 3 minutes, one attempt)",
    )
    add_state_argument(link, Role.COMPANION)
    link.set_defaults(handler=run_link)

    status = verbs.add_parser("status", help="check that this device is still linked")
    add_state_argument(status, Role.COMPANION)
    status.set_defaults(handler=run_status)


def run_link(args: argparse.Namespace) -> int:
    directory = state_dir(args, Role.COMPANION)

    def show(shown: ShownCode) -> None:
        seconds = max(0, (shown.expires_at - shown.server_time) // 1000)
        if shown.typed is not None:
            print(link_code_text("companion_instructions"), flush=True)
            print(f"Code: {bycode.format_code(shown.typed)}  (valid {seconds} s)", flush=True)
            return
        text = shown.code.to_text()
        if args.qr_out:
            qrimage.save_png(text, Path(args.qr_out))
        if not args.quiet_qr:
            print(qrimage.terminal_art(text))
        print(
            "Open Lockstep on your phone -> Linked devices -> Link a device, and point it at this code "
            f"(valid {seconds} s{'; the last one' if shown.last else ''}).",
            flush=True,
        )

    def scanned(number: str) -> None:
        print(companion_notice("scanned"), flush=True)
        print(number_notice(number), flush=True)

    async def link() -> DeviceSession:
        session = await companion.link(args.server, directory, show, scanned, typed_code=args.code)
        await session.close()
        return session

    session = run_client(link())
    state = session.state
    print(f'Linked to @{state.account.handle} ({state.account.display_name}) as "{state.device_name}".')
    messaging.publish_keys(state)
    return 0


def run_status(args: argparse.Namespace) -> int:
    state = load_state(args, Role.COMPANION)

    async def check() -> DeviceSession:
        session = await DeviceSession.open(state)
        await session.close()
        warn_about_clock(session)
        return session

    session = run_client(check())
    fresh = session.state
    print(
        f'Linked to @{fresh.account.handle} ({fresh.account.display_name}) as "{fresh.device_name}"; '
        f"{len(fresh.devices.devices)} devices on the account.",
    )
    now = session.probation_now()
    for entry in probation.newcomers(fresh.devices, now, seen_from=fresh.device_id):
        print(f"{probation.banner(entry, now)} {probation_text('unlink_on_phone')}")
    here = fresh.devices.find(fresh.device_id)
    if here is not None and probation.on_probation(here, now):
        print(probation_text("here", until=probation.until_text(here.probation_until or 0)))
    with refusals():
        left = session.idle_countdown()
    if left is not None:
        print(idle_text("countdown", days=left))
    return 0
