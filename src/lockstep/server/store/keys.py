"""End-to-end key directory: device bundles, one-time keys handed out at most once, fallback keys."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from lockstep.server.store.records import ClaimedKeys
from lockstep.server.store.sql import Work, execute, json_text, marks, query, query_one


def put_device_keys(
    device_id: str,
    bundle: dict[str, Any],
    fallback_key: dict[str, Any] | None,
    one_time_keys: list[dict[str, Any]],
    now: int,
) -> Work[int]:
    """Store a device's bundle (a changed identity drops its old one-time keys) and new keys.

    Returns how many one-time keys the device now has.
    """
    bundle_json = json_text(bundle)
    row = yield from query_one("SELECT bundle FROM device_keys WHERE device_id = ? FOR UPDATE", device_id)
    if row is not None and row[0] != bundle_json:
        yield from execute("DELETE FROM one_time_keys WHERE device_id = ?", device_id)
    yield from execute(
        "INSERT INTO device_keys (device_id, bundle, fallback_key, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (device_id) DO UPDATE SET bundle = excluded.bundle, "
        "fallback_key = coalesce(excluded.fallback_key, device_keys.fallback_key), "
        "updated_at = excluded.updated_at",
        device_id,
        bundle_json,
        json_text(fallback_key) if fallback_key else None,
        now,
    )
    if one_time_keys:
        values = ", ".join(["(?, ?, ?)"] * len(one_time_keys))
        yield from execute(
            f"INSERT INTO one_time_keys (device_id, key_id, one_time_key) VALUES {values} "  # noqa: S608
            "ON CONFLICT DO NOTHING",
            *[arg for key in one_time_keys for arg in (device_id, key["key_id"], json_text(key))],
        )
    return (yield from count_one_time_keys(device_id))


def count_one_time_keys(device_id: str) -> Work[int]:
    row = yield from query_one("SELECT count(*) FROM one_time_keys WHERE device_id = ?", device_id)
    assert row is not None
    return int(row[0])


def device_bundles(device_ids: list[str]) -> Work[dict[str, dict[str, Any]]]:
    if not device_ids:
        return {}
    rows = yield from query(
        f"SELECT device_id, bundle FROM device_keys WHERE device_id IN ({marks(len(device_ids))})",  # noqa: S608
        *device_ids,
    )
    return {device_id: json.loads(bundle) for device_id, bundle in rows}


def one_time_keys_left(device_id: str) -> Work[int | None]:
    """How many one-time keys a device has left; None if it never published keys."""
    if (yield from query_one("SELECT 1 FROM device_keys WHERE device_id = ?", device_id)) is None:
        return None
    return (yield from count_one_time_keys(device_id))


def claim_keys(
    device_ids: list[str], one_time_allowed: Collection[str] | None
) -> Work[dict[str, ClaimedKeys]]:
    """Take one one-time key per device (the fallback key when none are left).

    Devices not in ``one_time_allowed`` (when given) get the fallback key and keep their one-time
    keys: the caller used up its share of them (SECURITY.md, one-time key drain).

    ``DELETE … RETURNING`` hands each one-time key to one claimer only; ``SKIP LOCKED`` lets
    concurrent claimers on PostgreSQL take the next key instead of waiting for (and then missing)
    the one another transaction is taking.
    """
    claimed: dict[str, ClaimedKeys] = {}
    for device_id in device_ids:
        row = yield from query_one(
            "SELECT bundle, fallback_key FROM device_keys WHERE device_id = ?", device_id
        )
        if row is None:
            claimed[device_id] = ClaimedKeys(None, None, 0)
            continue
        key = None
        if one_time_allowed is None or device_id in one_time_allowed:
            key = yield from query_one(
                "DELETE FROM one_time_keys WHERE device_id = ? AND key_id = (SELECT key_id FROM "
                "one_time_keys WHERE device_id = ? ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                "RETURNING one_time_key",
                device_id,
                device_id,
            )
        left = yield from count_one_time_keys(device_id)
        one_time_key = key[0] if key is not None else row[1]
        claimed[device_id] = ClaimedKeys(
            json.loads(row[0]), json.loads(one_time_key) if one_time_key else None, left
        )
    return claimed
