"""The index of encrypted media blobs (the blobs themselves are files in the media folder)."""

from __future__ import annotations

from lockstep.server.store.records import MediaQuota, MediaUsage
from lockstep.server.store.sql import Work, execute, query, query_one

DAY_MS = 86_400_000


def media_usage(device_id: str, now: int) -> Work[MediaUsage]:
    row = yield from query_one(
        "SELECT CAST(coalesce(sum(size), 0) AS BIGINT), "
        "CAST(coalesce(sum(CASE WHEN created_at > ? THEN size ELSE 0 END), 0) AS BIGINT) "
        "FROM media WHERE device_id = ?",
        now - DAY_MS,
        device_id,
    )
    assert row is not None
    return MediaUsage(int(row[0]), int(row[1]))


def add_media(
    media_id: str, device_id: str, size: int, sha256: bytes, now: int, quota: MediaQuota | None
) -> Work[None]:
    """Index an uploaded blob; :class:`MediaQuotaExceeded` (nothing indexed) if over ``quota``.

    The device's row is locked first, so uploads of one device finishing on several instances at
    once are checked against the quota one after the other.
    """
    if quota is not None:
        yield from query("SELECT device_id FROM devices WHERE device_id = ? FOR NO KEY UPDATE", device_id)
        usage = yield from media_usage(device_id, now)
        usage.check(size, quota)
    yield from execute(
        "INSERT INTO media (media_id, device_id, size, sha256, created_at) VALUES (?, ?, ?, ?, ?)",
        media_id,
        device_id,
        size,
        sha256,
        now,
    )


def expire_media(created_before: int) -> Work[list[str]]:
    """Forget blobs uploaded before a time; returns their ids so their files can be deleted."""
    rows = yield from query("DELETE FROM media WHERE created_at < ? RETURNING media_id", created_before)
    return [str(row[0]) for row in rows]


def media_exists(media_id: str) -> Work[bool]:
    return (yield from query_one("SELECT 1 FROM media WHERE media_id = ?", media_id)) is not None
