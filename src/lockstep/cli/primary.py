"""`lockstep primary ...`: the phone-like device that owns the account."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lockstep.cli import CommandError, messaging
from lockstep.cli.common import (
    PASSPHRASE_ENV,
    add_state_argument,
    load_state,
    read_passphrase,
    refusals,
    run_client,
    state_dir,
    warn_about_clock,
)
from lockstep.cli.ids import add_id_argument
from lockstep.client import primary, qrimage
from lockstep.client.primary import PrimarySession
from lockstep.client.state import DeviceState
from lockstep.link import bycode, probation
from lockstep.link.devices import Role
from lockstep.link.matching import number_matches
from lockstep.link.qr import LinkCode, decode_text
from lockstep.link.wording import code_refusal, link_code_text, probation_text, relay_text
from lockstep.server.events import DeclineReason


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("primary", help="the device that owns the account")
    verbs = parser.add_subparsers(dest="primary_verb", required=True, metavar="VERB")

    init = verbs.add_parser("init", help="create an account with this device as its primary")
    init.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8000")
    init.add_argument("--handle", required=True, help="your handle (3-32 of a-z 0-9 _ . -)")
    init.add_argument("--name", help="display name (default: the handle)")
    init.add_argument("--device-name", default="Terminal primary", help="this device's name")
    init.add_argument(
        "--passphrase",
        action="store_true",
        help=f"seal this device's state folder with a passphrase (asked now and by every later command; "
        f"scripts set ${PASSPHRASE_ENV})",
    )
    add_state_argument(init, Role.PRIMARY)
    init.set_defaults(handler=run_init)

    scan = verbs.add_parser("scan", help="link a companion by scanning its QR code")
    source = scan.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", metavar="FILE", help="a picture of the QR code")
    source.add_argument("--camera", action="store_true", help="scan with the camera (needs lockstep[camera])")
    scan.add_argument("--yes", action="store_true", help="approve without asking (after showing the context)")
    scan.add_argument(
        "--name", help="name for the new device (default: what the server saw, e.g. Chrome on Linux)"
    )
    add_state_argument(scan, Role.PRIMARY)
    scan.set_defaults(handler=run_scan)

    link_code = verbs.add_parser(
        "link-code", help="link a companion by typing the code it shows (only one in front of you)"
    )
    link_code.add_argument(
        "code", metavar="CODE", help="the 8 characters the companion shows, e.g. K7PM-2QXD"
    )
    link_code.add_argument(
        "--yes", action="store_true", help="approve without asking (after showing the context)"
    )
    link_code.add_argument(
        "--name", help="name for the new device (default: what the server saw, e.g. Chrome on Linux)"
    )
    add_state_argument(link_code, Role.PRIMARY)
    link_code.set_defaults(handler=run_link_code)

    devices = verbs.add_parser("devices", help="list the account's devices")
    devices.add_argument("--json", action="store_true", help="machine-readable output")
    add_state_argument(devices, Role.PRIMARY)
    devices.set_defaults(handler=run_devices)

    unlink = verbs.add_parser("unlink", help="unlink a companion, or --all (logged out at once)")
    add_id_argument(unlink, "device", nargs="?", metavar="DEVICE", help="device id, id prefix or name")
    unlink.add_argument(
        "--all", action="store_true", help="log out of every companion with one signed device list"
    )
    add_state_argument(unlink, Role.PRIMARY)
    unlink.set_defaults(handler=run_unlink)

    end = verbs.add_parser(
        "end-probation",
        help="send a companion linked from another network its history now, before its 24 hours end",
    )
    add_id_argument(end, "device", metavar="DEVICE", help="device id, id prefix or name")
    add_state_argument(end, Role.PRIMARY)
    end.set_defaults(handler=run_end_probation)

    rename = verbs.add_parser("rename", help="rename a device")
    add_id_argument(rename, "device", metavar="DEVICE", help="device id, id prefix or name")
    rename.add_argument("name", metavar="NAME")
    add_state_argument(rename, Role.PRIMARY)
    rename.set_defaults(handler=run_rename)


def run_init(args: argparse.Namespace) -> int:
    passphrase = read_passphrase("Passphrase for this device's keys: ", new=True) if args.passphrase else None
    state = run_client(
        primary.create_account(
            args.server,
            args.handle,
            args.name or args.handle,
            args.device_name,
            state_dir(args, Role.PRIMARY),
            passphrase=passphrase,
        )
    )
    print(f"Account @{state.account.handle} created; this device ({state.device_id}) is its primary.")
    if passphrase is not None:
        print("Its state folder is sealed: every command on it asks for the passphrase.")
    messaging.publish_keys(state)
    return 0


def _ago(ms: int) -> str:
    seconds = max(0, ms // 1000)
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def network_label(network: Any) -> str:
    """ "private network 192.168.1.0/24" for the server's description of an address (linking.md §6.2)."""
    if not isinstance(network, dict):
        return ""
    prefix = network.get("prefix") or ""
    return {
        "loopback": "the server's own machine",
        "private": f"private network {prefix}",
        "link-local": f"link-local network {prefix}",
        "public": f"public internet, network {prefix}",
    }.get(str(network.get("kind")), "")


def run_scan(args: argparse.Namespace) -> int:
    state = load_state(args, Role.PRIMARY)
    with refusals():
        text = qrimage.read_camera() if args.camera else qrimage.read_image(Path(args.image))
        code = decode_text(text, own_origin=state.origin)

    async def scanned(session: PrimarySession) -> LinkCode:
        return code

    return _link(args, state, scanned)


def run_link_code(args: argparse.Namespace) -> int:
    """Type the companion's code (linking.md §10): CPace through the server, then the QR flow."""
    state = load_state(args, Role.PRIMARY)
    print(link_code_text("warning"))
    with refusals():
        typed = bycode.parse_code(args.code)

    async def offered(session: PrimarySession) -> LinkCode:
        return await session.offer_code(typed)

    return _link(args, state, offered)


def _link(
    args: argparse.Namespace, state: DeviceState, get_code: Callable[[PrimarySession], Awaitable[LinkCode]]
) -> int:
    """Context before consent, then approve or decline: the same for a scanned and a typed code."""

    async def scan() -> str | None:
        session = await PrimarySession.open(state)
        warn_about_clock(session)
        try:
            code = await get_code(session)
            context = await session.inspect(code)
            companion, network = context["companion"], context["network"]
            print(f"A device asks to be linked to @{state.account.handle}:")
            print(f"  device:   {companion['description']} (as the computer describes itself)")
            place = network_label(companion.get("network"))
            print(f"  address:  {companion['address']}{', ' + place if place else ''} (as the server saw it)")
            same = "same network as this device" if network["same_network"] else "a DIFFERENT network"
            print(f"  network:  {same}")
            print(f"  code made {_ago(context['age_ms'])}")
            if not network["same_network"]:  # friction, and the number, whatever --yes says (§6.5)
                print(relay_text("warning", address=companion["address"]))
                if not number_matches(_ask_number(), code):
                    await session.decline(code, DeclineReason.WRONG_NUMBER)
                    print(code_refusal("wrong_number"))
                    return None
            if not args.yes and not _confirm():
                await session.decline(code)
                return None
            other_network = None if network["same_network"] else str(companion["address"])
            device_id = await session.approve(code, args.name or companion["description"], other_network)
            entry = session.state.devices.find(device_id)
            return f'"{entry.name if entry else device_id}" ({device_id})'
        finally:
            await session.close()

    linked = run_client(scan())
    if linked is None:
        print("Declined; nothing was linked.")
        return 1
    print(f"Linked {linked}.")
    return 0


def _ask_number() -> str:
    """The number the companion shows, read from the terminal (or from standard input in scripts)."""
    print(f"{relay_text('number_prompt')}: ", end="", flush=True)
    return sys.stdin.readline().strip()


def _confirm() -> bool:
    if not sys.stdin.isatty():
        raise CommandError("not approved: pass --yes to approve without a terminal to ask in")
    return input("Link this device? [y/N] ").strip().lower() in ("y", "yes")


def run_devices(args: argparse.Namespace) -> int:
    state = load_state(args, Role.PRIMARY)

    async def listing() -> dict[str, Any]:
        session = await PrimarySession.open(state)
        try:
            listed = await session.refresh()
            return listed | {"_state": session.state, "_probation_now": session.probation_now()}
        finally:
            await session.close()

    result = run_client(listing())
    fresh: DeviceState = result["_state"]
    server = {d["device_id"]: d for d in result["devices"]}
    rows = [
        {
            "device_id": entry.device_id,
            "name": entry.name,
            "role": entry.role.value,
            "linked_at": entry.linked_at,
            "last_active": server.get(entry.device_id, {}).get("last_active"),
            "online": server.get(entry.device_id, {}).get("online", False),
            "probation_until": entry.probation_until,
            "linked_from": entry.linked_from,
        }
        for entry in fresh.devices.devices
    ]
    if args.json:
        print(
            json.dumps({"account": fresh.account.handle, "version": fresh.devices.version, "devices": rows})
        )
        return 0
    now = time.time_ns() // 1_000_000
    judged = result["_probation_now"]
    for row in rows:
        active = (
            "online"
            if row["online"]
            else (f"active {_ago(now - row['last_active'])}" if row["last_active"] else "never active")
        )
        entry = fresh.devices.find(row["device_id"])
        on_probation = (
            f", on probation until {probation.until_text(row['probation_until'])}"
            if probation.on_probation(entry, judged)
            else ""
        )
        print(
            f"{row['device_id']}  {row['role']:<9}  {row['name']:<28}  "
            f"linked {_ago(now - row['linked_at'])}, {active}{on_probation}"
        )
    for entry in probation.newcomers(fresh.devices, judged, seen_from=fresh.device_id):
        print(
            f"{probation.banner(entry, judged)} {probation_text('unlink')}: "
            f"lockstep primary unlink -- {entry.device_id}  (or send its history now: "
            f"lockstep primary end-probation -- {entry.device_id})"
        )
    return 0


def run_end_probation(args: argparse.Namespace) -> int:
    """ "Send history now" (linking.md §4.6): a signed list without the companion's probation, then the
    history transfer it was waiting for."""
    state = load_state(args, Role.PRIMARY)

    async def end() -> str:
        session = await PrimarySession.open(state)
        try:
            return await session.end_probation(args.device)
        finally:
            await session.close()

    device_id = run_client(end())
    print(f"Probation ended for {args.device} ({device_id}).")
    served = messaging.with_messenger(args, lambda messenger: messenger.sync_history())
    if device_id in served:
        print("Its history was sent.")
    else:
        print("Its history is sent once it has published its keys (the next `lockstep receive`).")
    return 0


def run_unlink(args: argparse.Namespace) -> int:
    if bool(args.device) == args.all:
        raise CommandError("name one DEVICE to unlink, or give --all to log out of every companion")
    state = load_state(args, Role.PRIMARY)

    async def unlink() -> list[str]:
        session = await PrimarySession.open(state)
        try:
            if args.all:
                return await session.unlink_all()
            await session.unlink(args.device)
            return [args.device]
        finally:
            await session.close()

    names = run_client(unlink())
    if not args.all:
        print(f"Unlinked {args.device}.")
    elif not names:
        print("No companion is linked.")
    else:
        count = f"{len(names)} companion{'s' if len(names) != 1 else ''}"
        print(f"Logged out of {count}: {', '.join(names)}. They wipe their keys and messages.")
    return 0


def run_rename(args: argparse.Namespace) -> int:
    state = load_state(args, Role.PRIMARY)

    async def rename() -> None:
        session = await PrimarySession.open(state)
        try:
            await session.rename(args.device, args.name)
        finally:
            await session.close()

    run_client(rename())
    print(f"Renamed {args.device} to {args.name}.")
    return 0
