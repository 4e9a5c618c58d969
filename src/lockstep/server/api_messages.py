"""Store-and-forward of ciphertext: messages.send, messages.fetch, messages.ack (messaging.md §7.2).

The server sees who sends to whom and when, and opaque ciphertext; never plaintext. It checks that a
send reaches *every* device it must (all devices of the recipient and all other devices of the sender,
or all devices of all group members; devices that never published E2E keys cannot be reached), so a
client with a stale device list is told ``devices_changed`` instead of silently missing a device.
Each device has its own queue, numbered by a sequence that only grows; live sockets get each message
as an event at once, a device that was away fetches on reconnect, and acknowledging up to a sequence
number deletes what it covers.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from typing import Any

from lockstep.link.encoding import b64u_decode
from lockstep.link.errors import EncodingError
from lockstep.server import catch_up
from lockstep.server.api_accounts import require_device
from lockstep.server.connection import Connection
from lockstep.server.errors import ApiError, ErrorCode, StrangerLimit
from lockstep.server.fanout import FanoutTimer, message_frames
from lockstep.server.frames import Request, bad_request
from lockstep.server.services import Services
from lockstep.server.store import Audience, Conversation, Delivery

MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAX_PAYLOADS = 1024
MAX_FETCH = 500


def _b64u(value: dict[str, Any], name: str, length: int | None = None) -> str:
    text = value.get(name)
    try:
        b64u_decode(text, length=length, what=name)  # type: ignore[arg-type]
    except EncodingError as error:
        raise bad_request(str(error)) from error
    assert isinstance(text, str)
    return text


def _olm_payload(value: object) -> tuple[str, dict[str, Any]]:
    if not isinstance(value, dict) or value.get("type") != "olm":
        raise bad_request("each payload is {device_id, type: 'olm', olm_type, sender_key, ciphertext}")
    device_id, olm_type = value.get("device_id"), value.get("olm_type")
    if not isinstance(device_id, str) or len(device_id) > 64:
        raise bad_request("'device_id' must be a device id")
    if olm_type not in (0, 1) or isinstance(olm_type, bool):
        raise bad_request("'olm_type' is 0 (pre-key) or 1 (normal)")
    return device_id, {
        "type": "olm",
        "olm_type": olm_type,
        "sender_key": _b64u(value, "sender_key", 32),
        "ciphertext": _b64u(value, "ciphertext"),
    }


def _megolm_payload(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request("'megolm' is {session_id, ciphertext}")
    session_id = value.get("session_id")
    if not isinstance(session_id, str) or not 1 <= len(session_id) <= 64:
        raise bad_request("'session_id' must be a short string")
    return {"type": "megolm", "session_id": session_id, "ciphertext": _b64u(value, "ciphertext")}


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A ``messages.send`` as parsed, before it is checked against the conversation's devices."""

    message_id: str
    receipt: bool
    payloads: list[tuple[str, dict[str, Any]]]
    """Olm payloads, one per device."""
    megolm: dict[str, Any] | None
    """A group's one ciphertext for every device (instead of ``payloads``)."""
    conversation: Conversation

    @classmethod
    def parse(cls, request: Request, sender_account: str) -> SendRequest:
        message_id = request.text("message_id", max_length=64)
        if not MESSAGE_ID.fullmatch(message_id):
            raise bad_request("'message_id' is 16 to 64 base64url characters")
        receipt = request.fields.get("receipt", False)
        if not isinstance(receipt, bool):
            raise bad_request("'receipt' is true or false")
        raw_payloads = request.fields.get("payloads", [])
        if not isinstance(raw_payloads, list) or len(raw_payloads) > MAX_PAYLOADS:
            raise bad_request(f"'payloads' must be a list of at most {MAX_PAYLOADS}")
        payloads = [_olm_payload(p) for p in raw_payloads]
        if len({device_id for device_id, _ in payloads}) != len(payloads):
            raise bad_request("one payload per device")
        megolm = request.fields.get("megolm")
        if "group_id" in request.fields:
            conversation = Conversation(sender_account, group_id=request.text("group_id", max_length=64))
            shared = None if megolm is None else _megolm_payload(megolm)
            return cls(message_id, receipt, payloads, shared, conversation)
        conversation = Conversation(sender_account, to_account=request.text("to", max_length=64))
        if megolm is not None:
            raise bad_request("'megolm' goes only to groups")
        return cls(message_id, receipt, payloads, None, conversation)

    def plan(self, sender_device: str, audience: Audience | None) -> Delivery:
        """What to queue, once the conversation's devices are known; refused (``ApiError``) unless the
        send reaches every device it must."""
        conversation = self.conversation
        targets = {device_id for device_id, _ in self.payloads}
        payloads = self.payloads
        if conversation.group_id is not None:
            if audience is None:
                raise ApiError(ErrorCode.GROUP_UNKNOWN, "no such group")
            if conversation.sender_account not in audience.devices:
                raise ApiError(ErrorCode.FORBIDDEN, "you are not a member of this group")
            expected = set().union(*audience.devices.values()) - {sender_device}
            if (self.megolm is None) == (not payloads):
                raise bad_request("a group send carries either 'megolm' (to everyone) or Olm 'payloads'")
            if not targets <= expected:
                raise ApiError(
                    ErrorCode.DEVICES_CHANGED, "a target device is not in the group; refresh and retry"
                )
            if self.megolm is not None:
                payloads = [(device_id, self.megolm) for device_id in sorted(expected)]
        else:
            if audience is None:
                raise ApiError(ErrorCode.ACCOUNT_UNKNOWN, "no such account")
            expected = set().union(*audience.devices.values()) - {sender_device}
            to_self = conversation.to_account == conversation.sender_account
            if to_self and targets and targets <= expected:
                pass  # device-to-device sync within one account (history for a new companion)
            elif targets != expected:
                raise ApiError(
                    ErrorCode.DEVICES_CHANGED,
                    "the message must go to every device of the recipient and every other device of "
                    "yours; the device lists changed: refresh and retry",
                )
        return Delivery(
            self.message_id,
            conversation.sender_account,
            sender_device,
            conversation.group_id,
            payloads,
            conversation.to_account,
            introduces=not self.receipt,
        )


async def send(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    arrived = time.perf_counter()
    identity = require_device(connection)
    if not await services.limits.sends.allow(identity.device_id, services.clock()):
        raise ApiError(ErrorCode.RATE_LIMITED, "too many messages from this device; wait a minute")
    parsed = SendRequest.parse(request, identity.account_id)
    now = services.clock()
    plan = functools.partial(parsed.plan, identity.device_id)
    try:
        delivery, queued = await services.store.send(parsed.conversation, plan, now, services.stranger_limits)
    except StrangerLimit as error:
        raise _stranger_refusal(error, parsed.conversation.group_id is not None) from error
    services.metrics.messages_queued.inc(len(queued))
    timer = FanoutTimer(arrived, services.metrics.send_fanout_seconds.observe)
    await services.hub.push_each(message_frames(queued), timer)
    new = {device_id for device_id, _ in queued}
    if repeated := [device_id for device_id, _ in delivery.payloads if device_id not in new]:
        # A retried send (same message id): the first try may have stored its copies but never
        # announced them (its instance died first), so announce what those devices hold.
        await catch_up.announce_queued(services, repeated)
    return {"message_id": parsed.message_id, "server_time": now, "devices": len(delivery.payloads)}


def _stranger_refusal(error: StrangerLimit, group: bool) -> ApiError:
    whom = "a member of this group has" if group else "this account has"
    share = "from you" if error.details.sender_share else "from accounts it never wrote to"
    return ApiError(
        ErrorCode.STRANGER_LIMIT,
        f"{whom} not written to you yet, and {error.details.limit_bytes // 1024} KiB {share} is already "
        "waiting unread for one of its devices; send more once they read it or reply",
    )


def _non_negative(request: Request, name: str, default: int) -> int:
    value = request.fields.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise bad_request(f"'{name}' must be a non-negative integer")
    return value


async def fetch(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_device(connection)
    after = _non_negative(request, "after", 0)
    limit = min(max(_non_negative(request, "limit", 100), 1), MAX_FETCH)
    messages = await services.store.fetch_messages(identity.device_id, after, limit + 1)
    return {
        "messages": [{k: v for k, v in m.to_event().items() if k != "event"} for m in messages[:limit]],
        "more": len(messages) > limit,
    }


async def ack(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_device(connection)
    up_to = _non_negative(request, "up_to", 0)
    deleted = await services.store.ack_messages(identity.device_id, up_to)
    services.metrics.messages_delivered.inc(deleted)
    return {"deleted": deleted}
