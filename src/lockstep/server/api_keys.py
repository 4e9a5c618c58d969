"""End-to-end key directory: keys.upload, keys.claim, accounts.lookup (docs/protocol/messaging.md §7).

The server checks what it stores (a bundle signed by the uploading device's key, one-time keys signed by
the bundle's signing key) so garbage is refused early, but clients never rely on that: they verify every
bundle against the account's primary-signed device list themselves.
"""

from __future__ import annotations

from typing import Any

from lockstep.e2e.errors import KeyBundleError
from lockstep.e2e.keys import DeviceKeys, OneTimeKey
from lockstep.link.errors import SignatureError
from lockstep.server.api_accounts import HANDLE, load_account, require_device
from lockstep.server.connection import Connection
from lockstep.server.errors import ApiError, ErrorCode
from lockstep.server.events import KeysLow
from lockstep.server.frames import Request, bad_request
from lockstep.server.services import Services

MAX_KEYS_PER_UPLOAD = 100
MAX_CLAIM = 256
MAX_LOOKUP = 128
"""Accounts per ``accounts.lookup`` with ``account_ids``: about 3 KB each, so an answer stays well under
the 1 MiB a client's WebSocket takes in one frame."""
LOW_ONE_TIME_KEYS = 10
"""Below this many unclaimed one-time keys the device is told to upload more (``keys.low``)."""
MAX_STORED_ONE_TIME_KEYS = 200
"""Unclaimed one-time keys the server keeps per device (clients keep about 50 published): so what a
device can store is bounded, and ``keys.upload`` may use the disk's reserve (disk.py)."""
"""Below this many unclaimed one-time keys the device is told to upload more (``keys.low``)."""


def _one_time_key(value: object, signing_key: bytes, *, fallback: bool) -> dict[str, Any]:
    try:
        key = OneTimeKey.from_json(value)
        key.verify(signing_key)
    except KeyBundleError as error:
        raise ApiError(ErrorCode.BAD_SIGNATURE, f"one-time key: {error}") from error
    if key.fallback != fallback:
        raise bad_request("'fallback' must be true exactly for the fallback key")
    return key.to_json()


async def upload(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_device(connection)
    record = await load_account(services, identity.account_id)
    try:
        bundle = DeviceKeys.verify(request.envelope("bundle"), record.devices(), identity.device_id)
    except (KeyBundleError, SignatureError) as error:
        raise ApiError(ErrorCode.BAD_SIGNATURE, f"key bundle: {error}") from error
    keys = request.fields.get("one_time_keys", [])
    if not isinstance(keys, list) or len(keys) > MAX_KEYS_PER_UPLOAD:
        raise bad_request(f"'one_time_keys' must be a list of at most {MAX_KEYS_PER_UPLOAD}")
    one_time_keys = [_one_time_key(key, bundle.signing_key, fallback=False) for key in keys]
    if one_time_keys:
        stored = await services.store.one_time_keys_left(identity.device_id) or 0
        if stored + len(one_time_keys) > MAX_STORED_ONE_TIME_KEYS:
            raise bad_request(f"a device keeps at most {MAX_STORED_ONE_TIME_KEYS} unclaimed one-time keys")
    fallback = request.fields.get("fallback_key")
    fallback_key = None if fallback is None else _one_time_key(fallback, bundle.signing_key, fallback=True)
    left = await services.store.put_device_keys(
        identity.device_id,
        request.envelope("bundle").to_json(),
        fallback_key,
        one_time_keys,
        services.clock(),
    )
    return {"one_time_keys_left": left}


async def claim(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    identity = require_device(connection)
    wanted = _ids(request, "device_ids", MAX_CLAIM)
    now = services.clock()
    if not await services.limits.key_claims.allow(identity.device_id, now):
        raise ApiError(ErrorCode.RATE_LIMITED, "too many key claims; wait a minute")
    # One-time keys are a finite pool: past its share, a claimer gets the fallback key (still enough
    # to start a session) and the owner's one-time keys stay for others (SECURITY.md).
    # The share is spent before the claim, in one atomic step per device (nothing is refunded), so
    # claims racing on several sockets cannot all pass a check made before any of them spent.
    share = services.limits.one_time_keys
    allowed = {d for d in wanted if await share.allow(f"{identity.account_id} {d}", now)}
    claimed = await services.store.claim_keys(wanted, allowed)
    for device_id, keys in claimed.items():
        if keys.bundle is not None and keys.one_time_keys_left < LOW_ONE_TIME_KEYS:
            await services.hub.push([device_id], KeysLow(keys.one_time_keys_left).to_json())
    return {
        "devices": {
            device_id: {"bundle": keys.bundle, "one_time_key": keys.one_time_key}
            for device_id, keys in claimed.items()
        }
    }


async def warn_if_low(services: Services, connection: Connection, device_id: str) -> None:
    """Tell a device that just signed in to replenish, if its keys ran low while it was away."""
    left = await services.store.one_time_keys_left(device_id)
    if left is not None and left < LOW_ONE_TIME_KEYS:
        connection.push(KeysLow(left).to_json())


async def lookup(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    """An account by ``handle`` or ``account_id``: its info, signed device list and device key bundles;
    with ``account_ids`` or ``handles``, up to :data:`MAX_LOOKUP` accounts at once (a large group's
    members), keyed as asked."""
    identity = require_device(connection)
    if not await services.limits.key_claims.allow(identity.device_id, services.clock()):
        raise ApiError(ErrorCode.RATE_LIMITED, "too many look-ups; wait a minute")
    if "account_ids" in request.fields:
        return {"accounts": await _accounts(services, _ids(request, "account_ids", MAX_LOOKUP))}
    if "handles" in request.fields:
        return {"accounts": await _accounts_by_handle(services, _ids(request, "handles", MAX_LOOKUP))}
    if "handle" in request.fields:
        handle = request.text("handle", max_length=32).lower()
        account_id = await services.store.account_by_handle(handle) if HANDLE.fullmatch(handle) else None
    else:
        account_id = request.text("account_id", max_length=64)
    found = {} if account_id is None else await _accounts(services, [account_id])
    if account_id not in found:
        raise ApiError(ErrorCode.ACCOUNT_UNKNOWN, "no account has that handle")
    result = found[account_id]
    if "former_device" in request.fields:  # a device unlinked recently, for what it sent before (§3.1)
        former = request.text("former_device", max_length=64)
        result["former_device"] = await services.store.former_device(account_id, former, services.clock())
    return result


def _ids(request: Request, name: str, most: int) -> list[str]:
    """The list of ids in field ``name`` (1 to ``most`` ids of up to 64 characters), repeats dropped."""
    ids = request.fields.get(name)
    if (
        not isinstance(ids, list)
        or not 1 <= len(ids) <= most
        or not all(isinstance(i, str) and len(i) <= 64 for i in ids)
    ):
        raise bad_request(f"'{name}' must list 1 to {most} {name.removesuffix('s').replace('_', ' ')}s")
    return list(dict.fromkeys(ids))


async def _accounts_by_handle(services: Services, handles: list[str]) -> dict[str, dict[str, Any]]:
    """:func:`_accounts` by handle (lower case, without "@"); unknown or malformed handles are left out."""
    account_ids: dict[str, str] = {}
    for handle in dict.fromkeys(h.lower() for h in handles):
        account_id = await services.store.account_by_handle(handle) if HANDLE.fullmatch(handle) else None
        if account_id is not None:
            account_ids[account_id] = handle
    found = await _accounts(services, list(account_ids))
    return {account_ids[account_id]: result for account_id, result in found.items()}


async def _accounts(services: Services, account_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each known account's info, signed device list and device key bundles; unknown ids are left out."""
    records = [r for r in [await services.store.account(a) for a in account_ids] if r is not None]
    devices = {r.info.account_id: [e.device_id for e in r.devices().devices] for r in records}
    bundles = await services.store.device_bundles([d for ids in devices.values() for d in ids])
    return {
        r.info.account_id: {
            "account": r.info.to_json(),
            "device_list": r.device_list.to_json(),
            "device_keys": {d: bundles[d] for d in devices[r.info.account_id] if d in bundles},
        }
        for r in records
    }
