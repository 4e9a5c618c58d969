"""Account and device operations: register, auth, devices.list, devices.update (linking.md §7.2)."""

from __future__ import annotations

import logging
import re
from typing import Any

from lockstep.link.devices import DeviceList, Role, check_name
from lockstep.link.encoding import key_id
from lockstep.link.envelope import Context, auth_message, verify
from lockstep.link.errors import DeviceListError, SignatureError
from lockstep.link.grant import AccountInfo
from lockstep.server.connection import CLOSE_TRY_LATER, CLOSE_UNLINKED, Connection, DeviceIdentity
from lockstep.server.errors import ApiError, ErrorCode, HandleTaken, StaleDeviceList, StorageFull, Unavailable
from lockstep.server.events import DeviceChange, DeviceChangeKind, DevicesChanged, DeviceUnlinked
from lockstep.server.frames import Request
from lockstep.server.services import Services
from lockstep.server.store import AccountRecord, DeviceListChange

log = logging.getLogger(__name__)

HANDLE = re.compile(r"[a-z0-9][a-z0-9_.-]{2,31}")


def require_device(connection: Connection) -> DeviceIdentity:
    if connection.identity is None:
        raise ApiError(ErrorCode.NOT_AUTHENTICATED, "authenticate first")
    return connection.identity


def require_primary(connection: Connection) -> DeviceIdentity:
    identity = require_device(connection)
    if not identity.is_primary:
        raise ApiError(ErrorCode.FORBIDDEN, "only the account's primary device can do this")
    return identity


def verify_list(envelope_request: Request, name: str, account_key: bytes) -> DeviceList:
    try:
        return DeviceList.verify(envelope_request.envelope(name), account_key)
    except DeviceListError as error:
        raise ApiError(ErrorCode.INVALID_DEVICE_LIST, str(error)) from error


async def load_account(services: Services, account_id: str) -> AccountRecord:
    record = await services.store.account(account_id)
    if record is None:
        raise ApiError(ErrorCode.DEVICE_UNKNOWN, "this account no longer exists")
    return record


def check_successor(record: AccountRecord, new_list: DeviceList) -> DeviceList:
    """The stored list, after checking ``new_list`` may replace it (version + 1, same primary)."""
    current = record.devices()
    if new_list.version != record.device_list_version + 1:
        raise ApiError(
            ErrorCode.STALE_DEVICE_LIST,
            f"device list version {new_list.version} does not follow {record.device_list_version}; "
            "refresh the device list and try again",
        )
    if new_list.primary != current.primary:
        raise ApiError(ErrorCode.INVALID_DEVICE_LIST, "the primary device cannot change")
    return current


async def _authenticate(services: Services, connection: Connection, identity: DeviceIdentity) -> None:
    """Sign the socket in; past the device's cap of sockets (per instance), its oldest are closed: a
    device needs one, so many are either stale or someone holding descriptors."""
    connection.identity = identity
    most = services.storage_limits.sockets_per_device
    for oldest in await services.hub.attach(identity.device_id, connection, most):
        oldest.close_soon(
            CLOSE_TRY_LATER, f"this device signed in on more than {most} connections; this was the oldest"
        )


async def register(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    if connection.identity is not None:
        raise ApiError(ErrorCode.BAD_REQUEST, "this socket is already authenticated")
    if not await services.limits.registrations.allow(connection.limit_key, services.clock()):
        raise ApiError(ErrorCode.RATE_LIMITED, "too many accounts created from this address; wait a minute")
    handle = request.text("handle", max_length=32)
    if not HANDLE.fullmatch(handle):
        raise ApiError(
            ErrorCode.INVALID_HANDLE,
            "a handle is 3 to 32 of a-z, 0-9, '_', '.', '-', starting with a letter or digit",
        )
    try:
        display_name = check_name(request.text("display_name", max_length=64))
    except DeviceListError as error:
        raise ApiError(ErrorCode.BAD_REQUEST, f"display_name: {error}") from error
    account_key = request.binary("account_key", length=32)
    device_key = request.binary("device_key", length=32)
    signature = request.binary("signature", length=64)
    devices = verify_list(request, "device_list", account_key)
    if devices.version != 1 or len(devices.devices) != 1 or devices.primary.device_key != device_key:
        raise ApiError(
            ErrorCode.INVALID_DEVICE_LIST, "a new account's list is version 1 with only its primary"
        )
    try:
        verify(device_key, Context.AUTH, auth_message(connection.challenge, services.origin), signature)
    except SignatureError as error:
        raise ApiError(ErrorCode.BAD_SIGNATURE, "the device signature does not verify") from error
    info = AccountInfo(key_id(account_key), handle, display_name, account_key)
    try:
        await services.store.create_account(info, request.envelope("device_list"), devices, services.clock())
    except HandleTaken as error:
        raise ApiError(ErrorCode.HANDLE_TAKEN, f"the handle '{handle}' is taken") from error
    await _authenticate(
        services, connection, DeviceIdentity(info.account_id, devices.primary.device_id, Role.PRIMARY)
    )
    return {"account_id": info.account_id, "device_id": devices.primary.device_id}


async def auth(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    """Sign in; the signature is checked first, so a valid one always succeeds (SECURITY.md).

    Only failures are counted, per address and per claimed device; past either limit a failure is
    answered ``rate_limited`` (and says nothing about the device), while its owner still gets in.
    """
    if connection.identity is not None:
        raise ApiError(ErrorCode.BAD_REQUEST, "this socket is already authenticated")
    device_id = request.text("device_id", max_length=64)
    signature = request.binary("signature", length=64)
    device = await services.store.device(device_id)
    record = None if device is None else await services.store.account(device.account_id)
    entry = None if record is None else record.devices().find(device_id)
    if device is None or record is None or entry is None:
        raise await _auth_failure(services, connection, None, ErrorCode.DEVICE_UNKNOWN, UNKNOWN_DEVICE)
    try:
        verify(
            device.device_key, Context.AUTH, auth_message(connection.challenge, services.origin), signature
        )
    except SignatureError as error:
        raise await _auth_failure(
            services, connection, device_id, ErrorCode.BAD_SIGNATURE, "the device signature does not verify"
        ) from error
    await _authenticate(services, connection, DeviceIdentity(record.info.account_id, device_id, entry.role))
    await touch_device(services, device_id, services.clock())
    return {
        "account": record.info.to_json(),
        "device_id": device_id,
        "role": entry.role.value,
        "device_list": record.device_list.to_json(),
    }


UNKNOWN_DEVICE = "this device is not linked to any account (it may have been unlinked)"


async def _auth_failure(
    services: Services, connection: Connection, device_id: str | None, code: ErrorCode, message: str
) -> ApiError:
    now = services.clock()
    limits = services.limits
    within = await limits.auth_failures.allow(connection.limit_key, now)
    if device_id is not None:  # unknown ids get no bucket: random ones must not grow memory
        within = await limits.auth_device_failures.allow(device_id, now) and within
    if not within:
        return ApiError(ErrorCode.RATE_LIMITED, "too many failed sign-ins; wait a minute")
    return ApiError(code, message)


async def touch_device(services: Services, device_id: str, now: int) -> None:
    """Record activity; on a full or read-only disk skip it, so signing in and reading still work."""
    try:
        await services.store.touch(device_id, now)
    except (StorageFull, Unavailable) as error:
        log.warning("last-active time not saved: %s", error)


async def list_devices(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_device(connection)
    record = await load_account(services, identity.account_id)
    last_active = await services.store.last_active(identity.account_id)
    online = await services.hub.online(entry.device_id for entry in record.devices().devices)
    return {
        "device_list": record.device_list.to_json(),
        "devices": [
            {
                "device_id": entry.device_id,
                "last_active": last_active.get(entry.device_id),
                "online": entry.device_id in online,
            }
            for entry in record.devices().devices
        ],
    }


async def update_devices(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    """Rename or unlink, as a new signed list that adds nothing (§7.4)."""
    identity = require_primary(connection)
    record = await load_account(services, identity.account_id)
    new_list = verify_list(request, "device_list", record.info.account_key)
    current = check_successor(record, new_list)
    old = {entry.device_id: entry for entry in current.devices}
    if any(entry.device_id not in old for entry in new_list.devices):
        raise ApiError(ErrorCode.INVALID_DEVICE_LIST, "devices are added only by linking")
    if any(old[entry.device_id].device_key != entry.device_key for entry in new_list.devices):
        raise ApiError(ErrorCode.INVALID_DEVICE_LIST, "a device's key cannot change")
    kept = {entry.device_id for entry in new_list.devices}
    unlinked = [device_id for device_id in old if device_id not in kept]
    renamed = [entry for entry in new_list.devices if old[entry.device_id].name != entry.name]
    change = DeviceListChange(
        identity.account_id, record.device_list_version, new_list, request.envelope("device_list")
    )
    try:
        await services.store.change_device_list(change, services.clock())
    except StaleDeviceList as error:
        raise ApiError(
            ErrorCode.STALE_DEVICE_LIST, "the device list changed meanwhile; refresh and retry"
        ) from error
    list_json = request.envelope("device_list").to_json()
    for device_id in unlinked:
        gone = DeviceUnlinked(device_id).to_json()
        await services.hub.disconnect(device_id, gone, CLOSE_UNLINKED, "unlinked")
    changes = [DeviceChange(DeviceChangeKind.UNLINKED, d, old[d].name) for d in unlinked]
    changes += [DeviceChange(DeviceChangeKind.RENAMED, entry.device_id, entry.name) for entry in renamed]
    changes += [  # "Send history now" (linking.md §4.6)
        DeviceChange(DeviceChangeKind.PROBATION_ENDED, entry.device_id, entry.name)
        for entry in new_list.devices
        if entry.probation_until is None and old[entry.device_id].probation_until is not None
    ]
    if not changes:  # the same devices re-signed: companions must see the newer list (idle logout, §4.5)
        primary = new_list.primary
        changes = [DeviceChange(DeviceChangeKind.REFRESHED, primary.device_id, primary.name)]
    for device_change in changes:
        await services.hub.push(kept, DevicesChanged(list_json, device_change).to_json())
    return {"unlinked": unlinked, "renamed": [entry.device_id for entry in renamed]}
