"""Link operations: link.start (companion), link.inspect / approve / decline (primary) — §6, §7."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from lockstep.link import bycode
from lockstep.link.cpace import FIELD_SIZE_BYTES
from lockstep.link.devices import MAX_COMPANIONS, DeviceCertificate, Role
from lockstep.link.encoding import b64u_encode
from lockstep.link.errors import DeviceListError
from lockstep.server.api_accounts import check_successor, load_account, require_primary, verify_list
from lockstep.server.connection import CLOSE_POLICY, Connection
from lockstep.server.context import describe_user_agent, network_of, same_network
from lockstep.server.errors import ApiError, ErrorCode, StaleDeviceList, Unavailable
from lockstep.server.events import (
    DeclineReason,
    DeviceChange,
    DeviceChangeKind,
    DevicesChanged,
    LinkCodeAnswer,
    LinkCodeOffer,
    LinkDeclined,
    LinkGranted,
    LinkIdle,
    LinkRef,
    LinkScanned,
)
from lockstep.server.frames import Request
from lockstep.server.link_sessions import CompanionContext, IssuedRef, RefState
from lockstep.server.metrics import LinkOutcome
from lockstep.server.services import Services
from lockstep.server.store import DeviceListChange

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_GRANT_BYTES = 16_384


def ref_event(issued: IssuedRef, now: int) -> LinkRef:
    ref = b64u_encode(issued.ref)
    return LinkRef(ref, issued.issued_at, issued.expires_at, now, issued.index, issued.last)


RETRY_SECONDS = 1.0


async def _retrying(step: Callable[[], Awaitable[T]]) -> T:
    """Run a link store step, waiting out a store that is unreachable (Redis restarting)."""
    while True:
        try:
            return await step()
        except Unavailable as error:
            log.warning("link rotation waits for its store: %s", error)
            await asyncio.sleep(RETRY_SECONDS)


async def rotate_refs(services: Services, connection: Connection, session_id: str) -> None:
    """Push a new ref whenever the current one stops being live; ``link.idle`` after the last (or
    when the session's state is gone, so the page offers a new code). Then the socket is back on the
    unauthenticated deadline."""
    links = services.links
    while (issued := await _retrying(lambda: links.issue_next(session_id, services.clock()))) is not None:
        connection.push(ref_event(issued, services.clock()).to_json())
        while True:
            progress = await _retrying(lambda: links.progress(session_id))
            if progress.deadline is None or (remaining := progress.deadline - services.clock()) <= 0:
                break
            await services.sleep(remaining / 1000)
        if progress.finished and not progress.gone:
            break
    else:
        progress = await _retrying(lambda: links.progress(session_id))
        if not progress.finished or progress.gone:
            services.metrics.link_ended(LinkOutcome.IDLE)
            connection.push(LinkIdle().to_json())
    # The session is over (idle, approved or declined): the socket must authenticate or link again
    # in time, like a new one, and no longer takes a linking companion's protection from eviction.
    services.admission.linking_over(connection)
    watch_deadline(services, connection)


def watch_deadline(services: Services, connection: Connection) -> None:
    """(Re)start the socket's deadline: closed unless it authenticates or starts linking in time."""
    if connection.deadline_task is not None:
        connection.deadline_task.cancel()
    connection.deadline_task = asyncio.create_task(
        _close_if_still_waiting(services, connection), name="ws-deadline"
    )


async def _close_if_still_waiting(services: Services, connection: Connection) -> None:
    deadline_s = services.admission.limits.deadline_s
    await services.sleep(deadline_s)
    if services.admission.waiting(connection):
        connection.close_soon(CLOSE_POLICY, f"authenticate or start linking within {deadline_s:g} s")


async def end_link_session(services: Services, connection: Connection) -> None:
    if connection.link_task is not None:
        connection.link_task.cancel()
        connection.link_task = None
    session_id, connection.link_session_id = connection.link_session_id, None
    if session_id is not None:
        await services.hub.detach_link(session_id, connection)
        with contextlib.suppress(Unavailable):  # its state expires by itself; approve checks the socket
            if await services.links.close(session_id):
                services.metrics.link_ended(LinkOutcome.ABANDONED)


async def start(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    if connection.identity is not None:
        raise ApiError(ErrorCode.FORBIDDEN, "this device is already linked")
    if not await services.limits.link_start.allow(connection.limit_key, services.clock()):
        raise ApiError(ErrorCode.RATE_LIMITED, "too many codes requested from this address; wait a minute")
    client = request.text("client", max_length=16)
    if client not in ("browser", "terminal"):
        raise ApiError(ErrorCode.BAD_REQUEST, "'client' must be 'browser' or 'terminal'")
    mode = request.optional_text("mode", max_length=8) or "qr"
    if mode not in ("qr", "code"):
        raise ApiError(ErrorCode.BAD_REQUEST, "'mode' must be 'qr' or 'code'")
    await end_link_session(services, connection)
    context = CompanionContext(
        describe_user_agent(connection.user_agent), client, connection.user_agent[:256], connection.address
    )
    session = await services.links.start(context, services.clock(), code=mode == "code")
    connection.link_session_id = session.session_id
    services.metrics.link_flows_started.inc()
    await services.hub.attach_link(session.session_id, connection)
    connection.link_task = asyncio.create_task(
        rotate_refs(services, connection, session.session_id), name="link-rotation"
    )
    result: dict[str, Any] = {"schedule_ms": list(session.schedule)}
    if session.code_id is not None:
        result["code_id"] = session.code_id
    return result


async def _refuse_if_full(services: Services, account_id: str, primary_id: str, ref: bytes) -> None:
    """An account with MAX_COMPANIONS companions links no other: the code ends declined, its page is told
    why (``link.declined`` with ``reason``, §7.3) rather than waiting, and the primary gets
    ``too_many_devices``."""
    record = await load_account(services, account_id)
    if len(record.devices().companions) < MAX_COMPANIONS:
        return
    issued = await services.links.resolve(ref, primary_id, services.clock(), RefState.DECLINED)
    declined = LinkDeclined(DeclineReason.TOO_MANY_DEVICES)
    await services.hub.push_link(issued.session.session_id, declined.to_json())
    raise ApiError(
        ErrorCode.TOO_MANY_DEVICES,
        f"this account already has {MAX_COMPANIONS} linked devices; unlink one first",
    )


async def inspect(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_primary(connection)
    now = services.clock()
    limiter = services.limits.unknown_refs
    if await limiter.exhausted(identity.device_id, now):
        raise ApiError(ErrorCode.RATE_LIMITED, "too many unknown codes scanned; wait a minute")
    ref = request.binary("ref", length=32)
    try:
        issued = await services.links.claim(ref, identity.device_id, now)
    except ApiError as error:
        if error.code is ErrorCode.REF_UNKNOWN:
            await limiter.allow(identity.device_id, now)
        raise
    await _refuse_if_full(services, identity.account_id, identity.device_id, ref)
    await services.hub.push_link(issued.session.session_id, LinkScanned().to_json())
    companion = issued.session.context
    return {
        "ref": b64u_encode(ref),
        "issued_at": issued.issued_at,
        "expires_at": issued.expires_at,
        "server_time": now,
        "age_ms": now - issued.issued_at,
        "companion": {
            "description": companion.description,
            "client": companion.client,
            "user_agent": companion.user_agent,
            "address": companion.address,
            "network": network_of(companion.address),
        },
        "network": {
            "primary_address": connection.address,
            "same_network": same_network(connection.address, companion.address, services.separate_networks),
        },
    }


async def approve(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_primary(connection)
    ref = request.binary("ref", length=32)
    enc = request.binary("enc", length=32)
    ciphertext = request.binary("ciphertext", max_length=MAX_GRANT_BYTES)
    certificate_envelope = request.envelope("certificate")
    record = await load_account(services, identity.account_id)
    issued = await services.links.lookup(ref, services.clock())
    await _refuse_if_full(services, identity.account_id, identity.device_id, ref)
    new_list = verify_list(request, "device_list", record.info.account_key)
    current = check_successor(record, new_list)
    added = [entry for entry in new_list.devices if current.find(entry.device_id) is None]
    if (
        len(added) != 1
        or added[0].role is not Role.COMPANION
        or len(new_list.devices) != len(current.devices) + 1
    ):
        raise ApiError(
            ErrorCode.INVALID_DEVICE_LIST, "linking adds exactly one companion and changes nothing else"
        )
    if any(current.find(entry.device_id) != entry for entry in new_list.devices if entry is not added[0]):
        raise ApiError(
            ErrorCode.INVALID_DEVICE_LIST, "linking adds exactly one companion and changes nothing else"
        )
    try:
        certificate = DeviceCertificate.verify(certificate_envelope, record.info.account_key)
    except DeviceListError as error:
        raise ApiError(ErrorCode.BAD_SIGNATURE, str(error)) from error
    if certificate.device_key != added[0].device_key:
        raise ApiError(
            ErrorCode.INVALID_DEVICE_LIST, "the certificate names another device than the list adds"
        )
    session_id = issued.session.session_id
    if issued.session.closed or not await services.hub.link_owner_present(session_id):
        raise ApiError(ErrorCode.COMPANION_GONE, "the computer that showed this code has gone away")
    issued = await services.links.resolve(ref, identity.device_id, services.clock(), RefState.GRANTED)
    change = DeviceListChange(
        identity.account_id,
        record.device_list_version,
        new_list,
        request.envelope("device_list"),
        certificate_envelope,
    )
    try:
        await services.store.change_device_list(change, services.clock())
    except StaleDeviceList as error:
        await services.links.reopen(ref, identity.device_id)
        raise ApiError(
            ErrorCode.STALE_DEVICE_LIST, "the device list changed meanwhile; refresh and retry"
        ) from error
    granted = LinkGranted(b64u_encode(ref), b64u_encode(enc), b64u_encode(ciphertext))
    await services.hub.push_link(session_id, granted.to_json())
    others = [entry.device_id for entry in current.devices]
    linked = DeviceChange(DeviceChangeKind.LINKED, added[0].device_id, added[0].name)
    changed = DevicesChanged(request.envelope("device_list").to_json(), linked)
    await services.hub.push(others, changed.to_json())
    services.metrics.link_ended(LinkOutcome.GRANTED)
    log.info("account %s linked a companion (%s)", identity.account_id, issued.session.context.description)
    return {"device_id": added[0].device_id}


async def decline(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_primary(connection)
    ref = request.binary("ref", length=32)
    reason = request.optional_text("reason", max_length=32) or DeclineReason.DECLINED
    if reason not in (DeclineReason.DECLINED, DeclineReason.WRONG_CODE, DeclineReason.WRONG_NUMBER):
        raise ApiError(ErrorCode.BAD_REQUEST, "'reason' must be 'declined', 'wrong_code' or 'wrong_number'")
    issued = await services.links.resolve(ref, identity.device_id, services.clock(), RefState.DECLINED)
    declined = LinkDeclined(DeclineReason(reason))
    await services.hub.push_link(issued.session.session_id, declined.to_json())
    services.metrics.link_ended(LinkOutcome.DECLINED)
    return {}


async def code_offer(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    """A primary's CPace message for a typed code (§10.3): routed by the code id, it burns the code
    and claims its ref; the companion gets ``link.code.offer``. Limited per account: every offer is an
    online guess at someone's code."""
    identity = require_primary(connection)
    code_id = request.text("code_id", max_length=bycode.CODE_ID_LENGTH)
    if not bycode.is_code_id(code_id):
        raise ApiError(ErrorCode.BAD_REQUEST, "'code_id' must be 3 Crockford base32 characters")
    sid = request.binary("sid", length=bycode.SID_SIZE)
    share = request.binary("share", length=FIELD_SIZE_BYTES)
    now = services.clock()
    if not await services.limits.code_offers.allow(identity.account_id, now):
        raise ApiError(ErrorCode.RATE_LIMITED, "too many codes typed on this account; wait a minute")
    issued = await services.links.offer(code_id, identity.device_id, now)
    await _refuse_if_full(services, identity.account_id, identity.device_id, issued.ref)
    offer = LinkCodeOffer(b64u_encode(sid), b64u_encode(share))
    await services.hub.push_link(issued.session.session_id, offer.to_json())
    return {"ref": b64u_encode(issued.ref)}


async def code_answer(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    """The companion's CPace message and sealed payload, relayed once to the primary that offered."""
    session_id = connection.link_session_id
    if connection.identity is not None or session_id is None:
        raise ApiError(ErrorCode.FORBIDDEN, "only a page showing a typed code answers an offer")
    share = request.binary("share", length=FIELD_SIZE_BYTES)
    sealed = request.binary("sealed", length=bycode.SEALED_SIZE)
    issued = await services.links.answer(session_id, services.clock())
    code_id = issued.session.code_id
    if issued.claimed_by is None or code_id is None:  # answer() allows neither; for the type checker
        raise ApiError(ErrorCode.FORBIDDEN, "no offer on this page's code is waiting for an answer")
    answer = LinkCodeAnswer(code_id, b64u_encode(share), b64u_encode(sealed))
    await services.hub.push([issued.claimed_by], answer.to_json())
    return {}
