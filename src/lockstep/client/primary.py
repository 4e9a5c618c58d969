"""The primary role: create an account, inspect and approve link codes, rename and unlink devices."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.client import timesync, vault
from lockstep.client.connection import ServerConnection, server_base
from lockstep.client.errors import ServerRefused, StateError
from lockstep.client.session import DeviceSession
from lockstep.client.state import DeviceState, exists, save_key
from lockstep.link import bycode, idle, probation
from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.encoding import b64u_decode, b64u_encode, key_id
from lockstep.link.envelope import Context, Envelope, auth_message, sign
from lockstep.link.grant import AccountInfo, approve
from lockstep.link.qr import LinkCode
from lockstep.link.wording import SERVER_REFUSALS
from lockstep.server.events import DeclineReason, LinkCodeAnswer

MIN_ID_PREFIX = 4
"""An id prefix must have this many characters (of 22) to name a device."""
ANSWER_TIMEOUT_S = 30.0
"""How long the primary waits for the companion's CPace answer to a typed code (it answers at once)."""


@contextlib.contextmanager
def shared_wording() -> Iterator[None]:
    """Linking refusals in the words the phone app uses for them too (link/wording.json)."""
    try:
        yield
    except ServerRefused as error:
        if error.code not in SERVER_REFUSALS:
            raise
        raise ServerRefused(error.code, SERVER_REFUSALS[error.code]) from error


async def create_account(
    server_url: str,
    handle: str,
    display_name: str,
    device_name: str,
    directory: Path,
    *,
    passphrase: str | None = None,
) -> DeviceState:
    """Make account and device keys here, register them, and save the state (keys never leave); with a
    ``passphrase``, in a folder sealed under it (client/vault.py) before the first key is written."""
    if exists(directory):
        raise StateError(f"{directory} already holds a device; choose another --state folder")
    server_url = server_base(server_url)
    account_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    account_public = account_key.public_key().public_bytes_raw()
    device_public = device_key.public_key().public_bytes_raw()
    connection = await ServerConnection.open(server_url)
    try:
        now = (await timesync.measure(connection)).now_ms()
        primary = DeviceEntry.new(device_public, Role.PRIMARY, device_name, now)
        devices = DeviceList(key_id(account_public), 1, now, (primary,))
        envelope = devices.sign(account_key)
        signature = sign(device_key, Context.AUTH, auth_message(connection.challenge, connection.origin))
        with shared_wording():
            await connection.request(
                "account.register",
                handle=handle,
                display_name=display_name,
                account_key=b64u_encode(account_public),
                device_key=b64u_encode(device_public),
                device_list=envelope.to_json(),
                signature=b64u_encode(signature),
            )
    finally:
        await connection.close()
    if passphrase is not None:
        vault.seal_new_folder(directory, passphrase)
    save_key(directory / "account.key", account_key)
    save_key(directory / "device.key", device_key)
    state = DeviceState(
        directory,
        Role.PRIMARY,
        server_url,
        connection.origin,
        AccountInfo(key_id(account_public), handle, display_name, account_public),
        primary.device_id,
        primary.name,
        envelope,
    )
    state.save()
    return state


class PrimarySession(DeviceSession):
    async def inspect(self, code: LinkCode) -> dict[str, Any]:
        with shared_wording():
            return await self.connection.request("link.inspect", ref=b64u_encode(code.ref))

    async def offer_code(self, typed: str) -> LinkCode:
        """Run CPace (linking.md §10.3) on a typed code, canonical as :func:`bycode.parse_code` gives
        it: the companion's answer opens to the same payload a QR code carries, for
        :meth:`inspect` and :meth:`approve` as after a scan. A code that does not match raises
        :class:`bycode.WrongCode` after the code is declined (the companion is told, and the code
        was burned by the offer anyway)."""
        run = bycode.PrimaryRun.start(
            typed, self.state.origin, scalar=secrets.token_bytes(32), sid=secrets.token_bytes(bycode.SID_SIZE)
        )
        with shared_wording():
            result = await self.connection.request("link.code.offer", **run.offer.to_json())
        ref = b64u_decode(result["ref"], length=32, what="ref")
        answer = await self._code_answer(run.offer.code_id)
        try:
            code = run.open(bycode.Answer.from_json(answer))
            if code.ref != ref:  # sealed by the companion whose code this is, so never seen honestly
                raise bycode.WrongCode
        except bycode.WrongCode:
            with contextlib.suppress(ServerRefused):
                await self.connection.request(
                    "link.decline", ref=b64u_encode(ref), reason=DeclineReason.WRONG_CODE
                )
            raise
        return code

    async def _code_answer(self, code_id: str) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                event = await self.connection.next_event()
                if event.get("event") == LinkCodeAnswer.EVENT and event.get("code_id") == code_id:
                    return event

        try:
            return await asyncio.wait_for(wait(), ANSWER_TIMEOUT_S)
        except TimeoutError as error:
            raise ServerRefused("companion_gone", SERVER_REFUSALS["companion_gone"]) from error

    async def approve(self, code: LinkCode, device_name: str, other_network: str | None = None) -> str:
        """Link the companion that showed ``code``; its name gets a suffix if another device has it
        (``DeviceList.unused_name``), so each device stays reachable by name. A companion the server saw
        on another network (at ``other_network``) starts on probation (linking.md §4.6)."""
        await self.refresh()
        approval = approve(
            code,
            self.state.account_key(),
            self.state.account,
            self.state.devices,
            self.state.devices.unused_name(device_name),
            self.clock.now_ms(),
            other_network,
        )
        with shared_wording():
            result = await self.connection.request(
                "link.approve",
                ref=b64u_encode(code.ref),
                enc=b64u_encode(approval.sealed.enc),
                ciphertext=b64u_encode(approval.sealed.ciphertext),
                certificate=approval.certificate.to_json(),
                device_list=approval.device_list.to_json(),
            )
        self.accept_device_list(approval.device_list)
        device_id: str = result["device_id"]
        return device_id

    async def decline(self, code: LinkCode, reason: DeclineReason = DeclineReason.DECLINED) -> None:
        with shared_wording():
            await self.connection.request("link.decline", ref=b64u_encode(code.ref), reason=reason)

    async def after_open(self) -> None:
        """Online: re-sign the list once it is a day old, so companions stay linked (§4.5)."""
        await self.keep_companions_alive()

    async def keep_companions_alive(self) -> None:
        fresh = idle.keep_alive(self.state.devices, self.clock.now_ms())
        if fresh is not None:
            await self.refresh()
            fresh = idle.keep_alive(self.state.devices, self.clock.now_ms())
        if fresh is not None:
            await self.publish(fresh)

    async def refresh(self) -> dict[str, Any]:
        """The server's view of the devices; its list is accepted only if signed and not older."""
        result = await self.connection.request("devices.list")
        self.accept_device_list(Envelope.from_json(result["device_list"]))
        return result

    async def publish(self, devices: DeviceList) -> dict[str, Any]:
        envelope = devices.sign(self.state.account_key())
        result = await self.connection.request("devices.update", device_list=envelope.to_json())
        self.accept_device_list(envelope)
        return result

    async def unlink(self, device_id: str) -> None:
        await self.refresh()
        await self.publish(self.state.devices.without(self.resolve(device_id), self.clock.now_ms()))

    async def unlink_all(self) -> list[str]:
        """Log out of every companion at once: one signed list that keeps only this primary (linking.md
        §7.4). Each companion is disconnected and wipes its keys and messages. Returns their names."""
        await self.refresh()
        devices = self.state.devices
        if not devices.companions:
            return []
        await self.publish(devices.successor((devices.primary,), self.clock.now_ms()))
        return [entry.name for entry in devices.companions]

    async def end_probation(self, device: str) -> str:
        """ "Send history now" (§4.6): sign a list with ``device`` off probation; returns its id. The
        history transfer follows on the next messaging sync, which no longer skips it."""
        await self.refresh()
        device_id = self.resolve(device)
        await self.publish(probation.ended(self.state.devices, device_id, self.clock.now_ms()))
        return device_id

    async def rename(self, device_id: str, name: str) -> None:
        await self.refresh()
        await self.publish(self.state.devices.renamed(self.resolve(device_id), name, self.clock.now_ms()))

    def resolve(self, device: str) -> str:
        """A device named by id, id prefix (at least :data:`MIN_ID_PREFIX` characters) or exact name."""
        devices = self.state.devices.devices
        matches = [d for d in devices if d.device_id == device or d.name == device]
        if not matches and len(device) >= MIN_ID_PREFIX:
            matches = [d for d in devices if d.device_id.startswith(device)]
        if len(matches) == 1:
            return matches[0].device_id
        if matches:
            raise StateError(
                f"{len(matches)} devices match {device!r}: give more of the id "
                "(`lockstep primary devices` lists them)"
            )
        if len(device) < MIN_ID_PREFIX:
            raise StateError(
                f"no device is named {device!r}, and an id prefix needs at least {MIN_ID_PREFIX} characters"
            )
        raise StateError(
            f"no linked device has the name, id or id prefix {device!r} "
            "(`lockstep primary devices` lists them)"
        )
