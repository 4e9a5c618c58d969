"""Link operations: link.start (companion), link.inspect / approve / decline (primary) — §6, §7."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lockstep.link.devices import DeviceCertificate, Role
from lockstep.link.encoding import b64u_encode
from lockstep.link.errors import DeviceListError
from lockstep.server.api_accounts import check_successor, load_account, require_primary, verify_list
from lockstep.server.connection import Connection
from lockstep.server.context import describe_user_agent, same_network
from lockstep.server.errors import ApiError, StaleDeviceList
from lockstep.server.frames import Request
from lockstep.server.link_sessions import (
    SCHEDULE_MS,
    CompanionContext,
    IssuedRef,
    LinkSession,
    RefState,
)
from lockstep.server.services import Services
from lockstep.server.storage import DeviceListChange

log = logging.getLogger(__name__)

MAX_GRANT_BYTES = 16_384


def ref_event(issued: IssuedRef, now: int) -> dict[str, Any]:
    return {
        "event": "link.ref",
        "ref": b64u_encode(issued.ref),
        "issued_at": issued.issued_at,
        "expires_at": issued.expires_at,
        "server_time": now,
        "index": issued.index,
        "last": issued.last,
    }


async def rotate_refs(services: Services, session: LinkSession) -> None:
    """Push a new ref whenever the current one stops being live; ``link.idle`` after the last."""
    while (issued := services.links.issue_next(session, services.clock())) is not None:
        session.owner.push(ref_event(issued, services.clock()))
        while (deadline := services.links.next_deadline(session)) is not None:
            remaining = deadline - services.clock()
            if remaining <= 0:
                break
            await services.sleep(remaining / 1000)
        if session.finished:
            return
    if not session.finished:
        session.owner.push({"event": "link.idle"})


def end_link_session(services: Services, connection: Connection) -> None:
    if connection.link_session is not None:
        services.links.close(connection.link_session)
        connection.link_session = None
    if connection.link_task is not None:
        connection.link_task.cancel()
        connection.link_task = None


async def start(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    if connection.identity is not None:
        raise ApiError("forbidden", "this device is already linked")
    if not services.limits.link_start.allow(connection.address, services.clock()):
        raise ApiError("rate_limited", "too many codes requested from this address; wait a minute")
    client = request.text("client", max_length=16)
    if client not in ("browser", "terminal"):
        raise ApiError("bad_request", "'client' must be 'browser' or 'terminal'")
    end_link_session(services, connection)
    context = CompanionContext(
        describe_user_agent(connection.user_agent), client, connection.user_agent[:256], connection.address
    )
    session = services.links.start(context, connection, services.clock())
    connection.link_session = session
    connection.link_task = asyncio.create_task(rotate_refs(services, session), name="link-rotation")
    return {"schedule_ms": list(SCHEDULE_MS)}


async def inspect(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_primary(connection)
    now = services.clock()
    limiter = services.limits.unknown_refs
    if limiter.exhausted(identity.device_id, now):
        raise ApiError("rate_limited", "too many unknown codes scanned; wait a minute")
    ref = request.binary("ref", length=32)
    try:
        issued = services.links.claim(ref, identity.device_id, now)
    except ApiError as error:
        if error.code == "ref_unknown":
            limiter.allow(identity.device_id, now)
        raise
    issued.session.owner.push({"event": "link.scanned"})
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
        },
        "network": {
            "primary_address": connection.address,
            "same_network": same_network(connection.address, companion.address),
        },
    }


async def approve(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_primary(connection)
    ref = request.binary("ref", length=32)
    enc = request.binary("enc", length=32)
    ciphertext = request.binary("ciphertext", max_length=MAX_GRANT_BYTES)
    certificate_envelope = request.envelope("certificate")
    record = await load_account(services, identity.account_id)
    issued = services.links.lookup(ref, services.clock())
    if len(record.devices().companions) >= 4:
        raise ApiError("too_many_devices", "this account already has 4 linked devices; unlink one first")
    new_list = verify_list(request, "device_list", record.info.account_key)
    current = check_successor(record, new_list)
    added = [entry for entry in new_list.devices if current.find(entry.device_id) is None]
    if (
        len(added) != 1
        or added[0].role is not Role.COMPANION
        or len(new_list.devices) != len(current.devices) + 1
    ):
        raise ApiError("invalid_device_list", "linking adds exactly one companion and changes nothing else")
    if any(current.find(entry.device_id) != entry for entry in new_list.devices if entry is not added[0]):
        raise ApiError("invalid_device_list", "linking adds exactly one companion and changes nothing else")
    try:
        certificate = DeviceCertificate.verify(certificate_envelope, record.info.account_key)
    except DeviceListError as error:
        raise ApiError("bad_signature", str(error)) from error
    if certificate.device_key != added[0].device_key:
        raise ApiError("invalid_device_list", "the certificate names another device than the list adds")
    if issued.session.closed:
        raise ApiError("companion_gone", "the computer that showed this code has gone away")
    issued = services.links.resolve(ref, identity.device_id, services.clock(), RefState.GRANTED)
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
        issued.state = RefState.CLAIMED
        raise ApiError("stale_device_list", "the device list changed meanwhile; refresh and retry") from error
    issued.session.owner.push(
        {
            "event": "link.granted",
            "ref": b64u_encode(ref),
            "enc": b64u_encode(enc),
            "ciphertext": b64u_encode(ciphertext),
        }
    )
    others = [entry.device_id for entry in current.devices]
    services.hub.push(
        others,
        {
            "event": "devices.changed",
            "device_list": request.envelope("device_list").to_json(),
            "change": {"kind": "linked", "device_id": added[0].device_id, "name": added[0].name},
        },
    )
    log.info("account %s linked a companion (%s)", identity.account_id, issued.session.context.description)
    return {"device_id": added[0].device_id}


async def decline(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_primary(connection)
    ref = request.binary("ref", length=32)
    issued = services.links.resolve(ref, identity.device_id, services.clock(), RefState.DECLINED)
    issued.session.owner.push({"event": "link.declined"})
    return {}
