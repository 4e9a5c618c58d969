#!/usr/bin/env python3
"""Regenerates vectors/link-*.json from fixed seeds with the Python implementation.

The files are committed: Python and browser tests both read them, so a change to either implementation
that alters the wire format fails a test instead of silently drifting. Run this only when the protocol
itself changes (and say so in docs/protocol/linking.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lockstep.link import probation
from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.encoding import b64u_encode, json_bytes, key_id
from lockstep.link.envelope import Context, Envelope, auth_message, sign
from lockstep.link.grant import AccountInfo, approve
from lockstep.link.qr import LinkCode

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
ORIGIN = "https://chat.example:8443"
NOW = 1764000000000


def seed(label: str) -> bytes:
    return hashlib.sha256(f"lockstep vectors {label}".encode()).digest()


def ed25519(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed(label))


def x25519(label: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(seed(label))


def write(name: str, doc: dict[str, object]) -> None:
    (VECTORS / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def qr_vectors() -> None:
    code = LinkCode(
        ORIGIN,
        ref=seed("ref"),
        ephemeral_key=x25519("companion ephemeral").public_key().public_bytes_raw(),
        device_key=ed25519("companion device").public_key().public_bytes_raw(),
        link_secret=seed("link secret"),
    )
    text = code.to_text()
    fields = {
        "origin": ORIGIN,
        "ref": code.ref.hex(),
        "ephemeral_key": code.ephemeral_key.hex(),
        "device_key": code.device_key.hex(),
        "link_secret": code.link_secret.hex(),
    }
    payload = code.payload()
    fragment = text.split("#", 1)[1]
    invalid = [
        ("not a URL", "hello", "NotALinkCode"),
        ("other scheme", "lockstep://link#" + fragment, "NotALinkCode"),
        ("other path", f"{ORIGIN}/login#{fragment}", "NotALinkCode"),
        ("query string", f"{ORIGIN}/link?x=1#{fragment}", "NotALinkCode"),
        ("no fragment", f"{ORIGIN}/link", "NotALinkCode"),
        ("truncated payload", text[:-10], "MalformedCode"),
        ("padding", text + "=", "MalformedCode"),
        ("not base64url", text[:-3] + "+/+", "MalformedCode"),
        ("one extra byte", f"{ORIGIN}/link#{b64u_encode(payload + b'x')}", "MalformedCode"),
        ("version 2", f"{ORIGIN}/link#{b64u_encode(bytes([2]) + payload[1:])}", "UnsupportedVersion"),
        ("too long", text + "A" * 400, "MalformedCode"),
        ("another server", f"https://chat.example.evil:8443/link#{fragment}", "ForeignOrigin"),
        ("same host, other port", f"https://chat.example:9443/link#{fragment}", "ForeignOrigin"),
        ("http instead of https", f"http://chat.example:8443/link#{fragment}", "ForeignOrigin"),
        # The origin is checked before the payload (§3.3): another server's code is a phishing warning
        # whatever its payload, never "damaged" or "update the app".
        (
            "another server, truncated payload",
            f"https://chat.example.evil:8443/link#{fragment[:-10]}",
            "ForeignOrigin",
        ),
        (
            "another server, version 2",
            f"https://chat.example.evil:8443/link#{b64u_encode(bytes([2]) + payload[1:])}",
            "ForeignOrigin",
        ),
    ]
    write(
        "link-qr.json",
        {
            "description": "QR text codec (docs/protocol/linking.md §3). Made by "
            "scripts/generate-link-vectors.py; binary fields are hex. Decode each 'invalid' text "
            "with own_origin and expect the named error.",
            "own_origin": ORIGIN,
            "valid": [
                {"name": "canonical", "text": text, **fields},
                {
                    "name": "upper-case host, default port spelled out",
                    "text": text.replace("https://chat.example:8443", "HTTPS://Chat.Example:8443"),
                    **fields,
                },
            ],
            "invalid": [{"name": n, "text": t, "error": e} for n, t, e in invalid],
        },
    )


def signature_vectors() -> None:
    account = ed25519("account")
    device = ed25519("primary device")
    challenge = seed("challenge")
    cases = []
    for context, key, message, label in [
        (Context.AUTH, device, auth_message(challenge, ORIGIN), "auth"),
        (Context.DEVICE_LIST, account, b'{"hello":"world"}', "device list context"),
        (Context.DEVICE_CERTIFICATE, account, b'{"hello":"world"}', "certificate context"),
    ]:
        cases.append(
            {
                "name": label,
                "context": context.value,
                "private_key": key.private_bytes_raw().hex(),
                "public_key": key.public_key().public_bytes_raw().hex(),
                "message": message.hex(),
                "signature": sign(key, context, message).hex(),
            }
        )
    account_key = account.public_key().public_bytes_raw()
    primary = DeviceEntry.new(device.public_key().public_bytes_raw(), Role.PRIMARY, "Phone", NOW)
    devices = DeviceList(key_id(account_key), 1, NOW, (primary,))
    valid = devices.sign(account).to_json()
    companions = [
        DeviceEntry.new(
            ed25519(f"companion {i}").public_key().public_bytes_raw(), Role.COMPANION, f"C{i}", NOW
        )
        for i in range(5)
    ]

    def raw_list(entries: list[DeviceEntry], **changes: object) -> dict[str, str]:
        payload = {**devices.to_payload(), "devices": [e.to_json() for e in entries], **changes}
        return Envelope.seal(account, Context.DEVICE_LIST, payload).to_json()

    tampered_payload = json_bytes({**devices.to_payload(), "version": 2})
    wrong_id = {**companions[0].to_json(), "device_id": companions[1].device_id}
    invalid_lists = [
        (
            "signed by another key",
            Envelope.seal(ed25519("mallory"), Context.DEVICE_LIST, devices.to_payload()).to_json(),
        ),
        (
            "payload changed after signing",
            {"payload": b64u_encode(tampered_payload), "signature": valid["signature"]},
        ),
        (
            "signed as a certificate",
            Envelope.seal(account, Context.DEVICE_CERTIFICATE, devices.to_payload()).to_json(),
        ),
        ("five companions", raw_list([primary, *companions])),
        ("no primary", raw_list(companions[:2])),
        ("device listed twice", raw_list([primary, companions[0], companions[0]])),
        (
            "device_id does not match key",
            Envelope.seal(
                account,
                Context.DEVICE_LIST,
                {**devices.to_payload(), "devices": [primary.to_json(), wrong_id]},
            ).to_json(),
        ),
        ("other account_id", raw_list([primary], account_id=key_id(seed("x")))),
    ]
    write(
        "link-signatures.json",
        {
            "description": "Domain-separated Ed25519 signatures and signed device lists (linking.md §4). "
            "Made by scripts/generate-link-vectors.py; keys and messages are hex, envelopes as on the wire.",
            "signatures": cases,
            "device_lists": {
                "account_key": account_key.hex(),
                "valid": [
                    {
                        "name": "primary only",
                        "envelope": valid,
                        "version": 1,
                        "device_ids": [primary.device_id],
                    }
                ],
                "invalid": [{"name": n, "envelope": e} for n, e in invalid_lists],
            },
        },
    )


def grant_vectors() -> None:
    account = ed25519("account")
    account_key = account.public_key().public_bytes_raw()
    info = AccountInfo(key_id(account_key), "alice", "Alice Liddell", account_key)
    primary = DeviceEntry.new(
        ed25519("primary device").public_key().public_bytes_raw(), Role.PRIMARY, "Phone", NOW
    )
    devices = DeviceList(info.account_id, 1, NOW, (primary,))
    ephemeral = x25519("companion ephemeral")
    code = LinkCode(
        ORIGIN,
        seed("ref"),
        ephemeral.public_key().public_bytes_raw(),
        ed25519("companion device").public_key().public_bytes_raw(),
        seed("link secret"),
    )
    approval = approve(code, account, info, devices, "Chromium on Linux", NOW + 1000)
    enc, ciphertext = approval.sealed.enc, approval.sealed.ciphertext
    flipped = bytearray(ciphertext)
    flipped[10] ^= 1
    write(
        "link-grant.json",
        {
            "description": "A sealed link grant (linking.md §5) and tampered copies. HPKE's ephemeral key "
            "is random, so these test opening only. Made by scripts/generate-link-vectors.py; bytes are hex.",
            "code_text": code.to_text(),
            "ephemeral_private_key": ephemeral.private_bytes_raw().hex(),
            "valid": {
                "enc": enc.hex(),
                "ciphertext": ciphertext.hex(),
                "account_id": info.account_id,
                "handle": "alice",
                "display_name": "Alice Liddell",
                "device_name": "Chromium on Linux",
                "device_list_version": 2,
                "device_id": approval.device_id,
            },
            "invalid": [
                {"name": "ciphertext bit flipped", "enc": enc.hex(), "ciphertext": bytes(flipped).hex()},
                {
                    "name": "enc from another key",
                    "enc": x25519("other").public_key().public_bytes_raw().hex(),
                    "ciphertext": ciphertext.hex(),
                },
                {"name": "truncated", "enc": enc.hex(), "ciphertext": ciphertext[:-1].hex()},
            ],
            "wrong_secret": seed("not the link secret").hex(),
        },
    )


def device_list_update_vectors() -> None:
    """§4.3: what a companion holding version 3 does with each valid list it is offered."""
    account = ed25519("account")
    account_key = account.public_key().public_bytes_raw()
    primary = DeviceEntry.new(
        ed25519("primary device").public_key().public_bytes_raw(), Role.PRIMARY, "Phone", NOW
    )
    me = DeviceEntry.new(
        ed25519("companion 0").public_key().public_bytes_raw(), Role.COMPANION, "Laptop", NOW
    )
    other = DeviceEntry.new(
        ed25519("companion 1").public_key().public_bytes_raw(), Role.COMPANION, "Tablet", NOW
    )
    renamed = DeviceEntry(me.device_id, me.device_key, me.role, "Work laptop", me.linked_at)

    def signed(version: int, *devices: DeviceEntry) -> dict[str, str]:
        return DeviceList(key_id(account_key), version, NOW + version, devices).sign(account).to_json()

    offered = [
        ("same version, identical", signed(3, primary, me), "keep", False),
        ("same version, without this device", signed(3, primary), "keep", False),
        ("same version, this device renamed", signed(3, primary, renamed), "keep", False),
        ("same version, another companion added", signed(3, primary, me, other), "keep", False),
        ("newer, this device renamed", signed(4, primary, renamed), "take", False),
        ("newer, without this device", signed(4, primary), "take", True),
        ("much newer, another companion added", signed(9, primary, me, other), "take", False),
        ("older, without this device", signed(2, primary), "stale", False),
    ]
    write(
        "device-list-updates.json",
        {
            "description": "Device lists offered to a companion that holds version 3 (linking.md §4.3): "
            "a newer valid list is taken (and a companion missing from it is unlinked), one of the same "
            "version is kept as held whatever it says, an older one is refused. "
            "Made by scripts/generate-link-vectors.py.",
            "account_key": account_key.hex(),
            "account_id": key_id(account_key),
            "device_id": me.device_id,
            "device_key": me.device_key.hex(),
            "held": signed(3, primary, me),
            "held_version": 3,
            "cases": [
                {"name": name, "offered": envelope, "update": update, "unlinked": unlinked}
                for name, envelope, update, unlinked in offered
            ],
        },
    )


def probation_vectors() -> None:
    """§4.6: lists with companions on probation, tampered copies every device refuses, and what each
    device concludes at a given time (on probation or not, the banner, when it ends)."""
    account = ed25519("account")
    account_key = account.public_key().public_bytes_raw()
    primary = DeviceEntry.new(
        ed25519("primary device").public_key().public_bytes_raw(), Role.PRIMARY, "Phone", NOW
    )
    laptop = probation.start(
        DeviceEntry.new(
            ed25519("companion 0").public_key().public_bytes_raw(), Role.COMPANION, "Laptop", NOW
        ),
        NOW,
        "203.0.113.7",
    )
    desk = DeviceEntry.new(
        ed25519("companion 1").public_key().public_bytes_raw(), Role.COMPANION, "Desk", NOW
    )
    devices = DeviceList(key_id(account_key), 4, NOW, (primary, laptop, desk))
    good = devices.sign(account)

    def tampered(change: Callable[[dict[str, Any]], None]) -> dict[str, str]:
        """The signed list with its payload changed and its signature kept: what a server could send."""
        payload = json.loads(good.payload)
        change(payload)
        return Envelope(json_bytes(payload), good.signature).to_json()

    def signed(change: Callable[[dict[str, Any]], None]) -> dict[str, str]:
        """A list the account key really signed that breaks a rule of §4.6 all the same."""
        payload = devices.to_payload()
        change(payload)
        return Envelope.seal(account, Context.DEVICE_LIST, payload).to_json()

    def laptop_entry(payload: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = payload["devices"][1]
        return entry

    lists = [
        ("signed, one companion on probation", good.to_json(), True),
        (
            "version 1 list without the fields",
            DeviceList(key_id(account_key), 3, NOW, (primary, desk)).sign(account).to_json(),
            True,
        ),
        (
            "probation_until stripped by the server",
            tampered(lambda p: laptop_entry(p).pop("probation_until")),
            False,
        ),
        (
            "probation_until moved earlier by the server",
            tampered(lambda p: laptop_entry(p).update(probation_until=NOW + 1)),
            False,
        ),
        (
            "linked_from changed by the server",
            tampered(lambda p: laptop_entry(p).update(linked_from="10.0.0.2")),
            False,
        ),
        (
            "probation on the primary",
            signed(lambda p: p["devices"][0].update(probation_until=NOW + 1)),
            False,
        ),
        (
            "probation_until not an integer",
            signed(lambda p: laptop_entry(p).update(probation_until="soon")),
            False,
        ),
        (
            "linked_from not an address",
            signed(lambda p: laptop_entry(p).update(linked_from="10.0.0.2 or so")),
            False,
        ),
    ]
    moments = [
        ("at the link", NOW),
        ("an hour later", NOW + probation.HOUR_MS),
        ("3 hours 5 minutes later", NOW + 3 * probation.HOUR_MS + 300_000),
        ("a millisecond before the end", NOW + probation.PROBATION_MS - 1),
        ("at the end", NOW + probation.PROBATION_MS),
        ("a clock an hour behind the link", NOW - probation.HOUR_MS),
    ]
    write(
        "probation.json",
        {
            "description": "Probation for companions linked from another network (linking.md §4.6): which "
            "signed lists every device accepts (a server that strips or alters probation_until breaks "
            "the signature), and what a device concludes at each time. Made by "
            "scripts/generate-link-vectors.py.",
            "account_key": account_key.hex(),
            "account_id": key_id(account_key),
            "primary_id": primary.device_id,
            "laptop_id": laptop.device_id,
            "desk_id": desk.device_id,
            "lists": [{"name": n, "envelope": e, "valid": v} for n, e, v in lists],
            "list": devices.to_payload(),
            "moments": [
                {
                    "name": name,
                    "now": now,
                    "on_probation": [probation.on_probation(d, now) for d in devices.devices],
                    "banners_on_desk": [
                        probation.banner(d, now) for d in probation.newcomers(devices, now, desk.device_id)
                    ],
                }
                for name, now in moments
            ],
            "until_text": probation.until_text(laptop.probation_until or 0),
            "ended_early": [d.to_json() for d in probation.ended(devices, laptop.device_id, NOW).devices],
        },
    )


if __name__ == "__main__":
    probation_vectors()
    device_list_update_vectors()
    qr_vectors()
    signature_vectors()
    grant_vectors()
