"""Accounts and devices: registration, the signed device list under its version guard, activity times.

An account's devices change only through :func:`change_device_list`, whose ``UPDATE … WHERE
device_list_version = ?`` lets exactly one of two concurrent changes of the same version win (on
PostgreSQL the row lock makes the second wait, then find the version gone, then fail).
"""

from __future__ import annotations

import json
from typing import Any

from lockstep.link.devices import DeviceList, Role
from lockstep.link.envelope import Envelope
from lockstep.link.grant import AccountInfo
from lockstep.server.errors import HandleTaken, StaleDeviceList, StorageError
from lockstep.server.store.records import AccountRecord, DeviceListChange, DeviceRecord
from lockstep.server.store.sql import Work, chunks, execute, json_text, marks, query, query_one

INSERT_DEVICE = (
    "INSERT INTO devices (device_id, account_id, device_key, role, certificate, linked_at, last_active) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


def envelope_json(envelope: Envelope) -> str:
    return json_text(envelope.to_json())


def create_account(info: AccountInfo, envelope: Envelope, devices: DeviceList, now: int) -> Work[None]:
    """A new account with its primary device; :class:`HandleTaken` if the handle (or ids) are in use."""
    primary = devices.primary
    added = yield from execute(
        "INSERT INTO accounts (account_id, handle, display_name, account_key, device_list, "
        "device_list_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        info.account_id,
        info.handle,
        info.display_name,
        info.account_key,
        envelope_json(envelope),
        devices.version,
        now,
    )
    if added == 1:
        added = yield from execute(
            INSERT_DEVICE,
            primary.device_id,
            info.account_id,
            primary.device_key,
            primary.role.value,
            None,
            now,
            now,
        )
    if added != 1:
        raise HandleTaken(info.handle)


def account(account_id: str) -> Work[AccountRecord | None]:
    row = yield from query_one(
        "SELECT account_id, handle, display_name, account_key, device_list, device_list_version "
        "FROM accounts WHERE account_id = ?",
        account_id,
    )
    if row is None:
        return None
    info = AccountInfo(row[0], row[1], row[2], bytes(row[3]))
    return AccountRecord(info, Envelope.from_json(json.loads(row[4])), row[5])


def account_by_handle(handle: str) -> Work[str | None]:
    row = yield from query_one("SELECT account_id FROM accounts WHERE handle = ?", handle)
    return None if row is None else str(row[0])


def device(device_id: str) -> Work[DeviceRecord | None]:
    row = yield from query_one(
        "SELECT device_id, account_id, device_key, role, last_active FROM devices WHERE device_id = ?",
        device_id,
    )
    return None if row is None else DeviceRecord(row[0], row[1], bytes(row[2]), Role(row[3]), row[4])


def former_device(account_id: str, device_id: str, now: int) -> Work[dict[str, Any] | None]:
    """An unlinked device of ``account_id`` as `accounts.lookup` reports it (§3.1), while it is kept."""
    row = yield from query_one(
        "SELECT bundle, listed_in, removed_by FROM former_devices "
        "WHERE account_id = ? AND device_id = ? AND removed_at >= ?",
        account_id,
        device_id,
        now - FORMER_DEVICE_DAYS * 86_400_000,
    )
    if row is None:
        return None
    bundle, listed_in, removed_by = (json.loads(value) for value in row)
    return {"device_id": device_id, "bundle": bundle, "listed_in": listed_in, "removed_by": removed_by}


def devices_of(account_ids: list[str], with_keys: bool) -> Work[dict[str, set[str]]]:
    """The devices of some accounts; ``with_keys``: only those that published E2E keys."""
    found: dict[str, set[str]] = {account_id: set() for account_id in account_ids}
    if not account_ids:
        return found
    join = "JOIN device_keys USING (device_id)" if with_keys else ""
    rows = yield from query(
        f"SELECT account_id, device_id FROM devices {join} "  # noqa: S608 - only placeholders
        f"WHERE account_id IN ({marks(len(account_ids))})",
        *account_ids,
    )
    for account_id, device_id in rows:
        found[account_id].add(device_id)
    return found


def last_active(account_id: str) -> Work[dict[str, int | None]]:
    rows = yield from query("SELECT device_id, last_active FROM devices WHERE account_id = ?", account_id)
    return {device_id: active for device_id, active in rows}


def touch(touches: list[tuple[str, int]]) -> Work[list[None]]:
    """Note when each device was last active (``(device id, now)``; a device's latest time wins),
    ``ROWS_PER_STATEMENT`` devices to a statement.

    The rows are locked in device id order first (``ORDER BY … FOR NO KEY UPDATE``, the lock the
    UPDATE takes anyway, so inserts that refer to a device are not held up), as
    ``change_device_list`` deletes them: the UPDATE alone locks them in whatever order its scan finds
    them, and a touch holding a higher device while waiting for a lower one deadlocks against a
    device-list change that holds the lower one (PostgreSQL then runs one of them again)."""
    latest: dict[str, int] = {}
    for device_id, now in touches:
        latest[device_id] = max(now, latest.get(device_id, now))
    devices = sorted(latest.items())
    for chunk in chunks(devices):
        times = " ".join(["WHEN ? THEN CAST(? AS BIGINT)"] * len(chunk))
        yield from execute(
            f"WITH locked AS (SELECT device_id FROM devices WHERE device_id IN ({marks(len(chunk))}) "  # noqa: S608 - only placeholders
            "ORDER BY device_id FOR NO KEY UPDATE) "
            f"UPDATE devices SET last_active = CASE device_id {times} END "
            "WHERE device_id IN (SELECT device_id FROM locked)",
            *(device_id for device_id, _ in chunk),
            *(value for device in chunk for value in device),
        )
    return [None] * len(touches)


FORMER_DEVICE_DAYS = 30
"""How long an unlinked device's last keys and lists are kept for messages it sent before (§3.1)."""


def change_device_list(change: DeviceListChange, now: int) -> Work[None]:
    """Apply ``change``; :class:`StaleDeviceList` if another update got there first.

    A device the change removes is remembered as a former device (its last key bundle, the list that
    had it, the list that removed it), so messages it sent while listed stay readable (§3.1).
    """
    previous = yield from query_one(
        "SELECT device_list FROM accounts WHERE account_id = ?", change.account_id
    )
    updated = yield from execute(
        "UPDATE accounts SET device_list = ?, device_list_version = ? "
        "WHERE account_id = ? AND device_list_version = ?",
        envelope_json(change.envelope),
        change.new_list.version,
        change.account_id,
        change.expected_version,
    )
    if updated != 1:
        raise StaleDeviceList(change.account_id)
    rows = yield from query("SELECT device_id FROM devices WHERE account_id = ?", change.account_id)
    stored = {row[0] for row in rows}
    new_ids = {entry.device_id for entry in change.new_list.devices}
    yield from execute(
        "DELETE FROM former_devices WHERE account_id = ? AND removed_at < ?",
        change.account_id,
        now - FORMER_DEVICE_DAYS * 86_400_000,
    )
    for device_id in sorted(stored - new_ids):
        bundle = yield from query_one("SELECT bundle FROM device_keys WHERE device_id = ?", device_id)
        if bundle is not None and previous is not None:  # a device without keys never sent anything
            yield from execute(
                "INSERT INTO former_devices "
                "(device_id, account_id, bundle, listed_in, removed_by, removed_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                "bundle = excluded.bundle, listed_in = excluded.listed_in, "
                "removed_by = excluded.removed_by, removed_at = excluded.removed_at",
                device_id,
                change.account_id,
                bundle[0],
                previous[0],
                envelope_json(change.envelope),
                now,
            )
        yield from execute("DELETE FROM devices WHERE device_id = ?", device_id)
    certificate = envelope_json(change.added_certificate) if change.added_certificate else None
    for entry in change.new_list.devices:
        if entry.device_id not in stored:
            added = yield from execute(
                INSERT_DEVICE,
                entry.device_id,
                change.account_id,
                entry.device_key,
                entry.role.value,
                certificate,
                now,
                now,
            )
            if added != 1:  # another account's device has this id: nothing of the change is kept
                raise StorageError(f"device {entry.device_id} belongs to another account")
