"""The companion role: show rotating QR codes, or one typed code (linking.md §10), until a primary
grants a link, then keep the identity."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from lockstep.client import timesync
from lockstep.client.connection import ServerConnection, server_base
from lockstep.client.errors import ClientError, StateError
from lockstep.client.session import DeviceSession
from lockstep.client.state import DeviceState, exists, save_key
from lockstep.link import bycode
from lockstep.link.devices import Role
from lockstep.link.encoding import b64u_decode
from lockstep.link.errors import EncodingError
from lockstep.link.grant import OpenedGrant, SealedGrant, open_grant
from lockstep.link.matching import matching_number
from lockstep.link.qr import LinkCode
from lockstep.link.wording import companion_notice
from lockstep.server.events import (
    LinkCodeOffer,
    LinkDeclined,
    LinkGranted,
    LinkIdle,
    LinkRef,
    LinkScanned,
)


class LinkNotCompleted(ClientError):
    """No link happened: declined on the phone, or every code expired unscanned."""


@dataclass(frozen=True, slots=True)
class ShownCode:
    code: LinkCode
    expires_at: int
    server_time: int
    index: int
    last: bool
    typed: str | None = None
    """For a typed-code session (§10): the 8 characters to show (with :func:`bycode.format_code`)."""


async def link(
    server_url: str,
    directory: Path,
    show: Callable[[ShownCode], None],
    on_scanned: Callable[[str], None] = lambda number: None,
    *,
    typed_code: bool = False,
) -> DeviceSession:
    """Run one link session to its end; on success the state is saved and the socket authenticated.
    ``on_scanned`` gets the 2-digit number a primary on another network asks for (§6.5).
    With ``typed_code`` the session shows one code to type on the primary instead of QR codes."""
    if exists(directory):
        raise StateError(f"{directory} already holds a linked device; choose another --state folder")
    server_url = server_base(server_url)
    device_key = Ed25519PrivateKey.generate()
    ephemeral_key = X25519PrivateKey.generate()
    connection = await ServerConnection.open(server_url)
    codes: dict[bytes, LinkCode] = {}  # every code shown: the grant names the one it answers
    typed: str | None = None
    answered = False
    try:
        started = await connection.request(
            "link.start", client="terminal", **({"mode": "code"} if typed_code else {})
        )
        while True:
            event = await connection.next_event()
            kind = event.get("event")
            if kind == LinkRef.EVENT:
                code = LinkCode(
                    connection.origin,
                    b64u_decode(event["ref"], length=32, what="ref"),
                    ephemeral_key.public_key().public_bytes_raw(),
                    device_key.public_key().public_bytes_raw(),
                    secrets.token_bytes(32),  # a fresh secret for every code (§6.1)
                )
                codes[code.ref] = code
                typed = bycode.new_code(started["code_id"]) if typed_code else None
                answered = False
                shown = ShownCode(
                    code, event["expires_at"], event["server_time"], event["index"], event["last"], typed
                )
                show(shown)
            elif kind == LinkCodeOffer.EVENT and typed is not None and not answered:
                answered = True  # one CPace run per code, whatever the server sends (§10.3)
                await _answer_offer(connection, typed, code, event)
            elif kind == LinkScanned.EVENT:  # with the number to type if the networks differ (§6.5)
                on_scanned(matching_number(code))
            elif kind == LinkGranted.EVENT:
                granted = codes.get(b64u_decode(event["ref"], length=32, what="ref"))
                if granted is None:
                    raise LinkNotCompleted("the server granted a code this device never showed")
                sealed = SealedGrant(
                    b64u_decode(event["enc"], length=32, what="enc"),
                    b64u_decode(event["ciphertext"], what="ciphertext"),
                )
                grant = open_grant(granted, ephemeral_key, sealed)
                return await _finish(connection, directory, device_key, grant, server_url)
            elif kind == LinkDeclined.EVENT:  # with the reason since §7.3's "reason" field
                raise LinkNotCompleted(companion_notice(str(event.get("reason", "declined"))))
            elif kind == LinkIdle.EVENT:
                raise LinkNotCompleted(
                    "no phone scanned the code in time; run the command again for a new code"
                )
    except BaseException:
        await connection.close()
        raise


async def _answer_offer(
    connection: ServerConnection, typed: str, code: LinkCode, offer: dict[str, object]
) -> None:
    """Run CPace as B on the primary's offer and send the §3.1 payload sealed under its key. An offer
    that cannot be answered (a low-order share) is left unanswered: the code then runs out."""
    try:
        sid = b64u_decode(str(offer.get("sid", "")), length=bycode.SID_SIZE, what="sid")
        share = b64u_decode(str(offer.get("share", "")), what="share")
        answer = bycode.answer(typed, connection.origin, sid, share, code, scalar=secrets.token_bytes(32))
    except (EncodingError, bycode.WrongCode):
        return
    await connection.request("link.code.answer", **answer.to_json())


async def _finish(
    connection: ServerConnection,
    directory: Path,
    device_key: Ed25519PrivateKey,
    grant: OpenedGrant,
    server_url: str,
) -> DeviceSession:
    save_key(directory / "device.key", device_key)
    state = DeviceState(
        directory,
        Role.COMPANION,
        server_url,
        connection.origin,
        grant.account,
        grant.certificate.unverified()["device_id"],
        grant.device_name,
        grant.device_list,
    )
    state.save()
    session = DeviceSession(state, connection)
    await session.authenticate()
    session.clock = await timesync.measure(connection)
    return session
