"""Encrypted media over HTTP (messaging.md §7.4): short-lived bearer tokens from the WebSocket API,
``POST /media`` to upload a blob (streamed to disk, size-limited), ``GET /media/{id}`` to download it.

The server stores only the encrypted blob, under a random 256-bit id; the key and the hashes travel in
the end-to-end message. The upload answer carries the blob's SHA-256 so the sender can check it.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import FileResponse, JSONResponse, Response

from lockstep.e2e.media import human_size
from lockstep.link.encoding import b64u_encode
from lockstep.server.api_accounts import require_device
from lockstep.server.connection import Connection
from lockstep.server.errors import (
    ApiError,
    ErrorCode,
    MediaQuotaExceeded,
    StorageFull,
    Unavailable,
    storage_refusal,
)
from lockstep.server.frames import Request
from lockstep.server.media_uploads import TooManyUploads, UploadPace
from lockstep.server.services import Services

log = logging.getLogger(__name__)

TOKEN_LIFETIME_MS = 10 * 60_000
MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{43}")


async def token(services: Services, connection: Connection, request: Request) -> dict[str, Any]:
    """``media.token``: a bearer token for this device's uploads and downloads, valid 10 minutes."""
    identity = require_device(connection)
    now = services.clock()
    if not await services.limits.sends.allow(identity.device_id, now):
        raise ApiError(ErrorCode.RATE_LIMITED, "too many media requests from this device; wait a minute")
    value = await services.media_tokens.issue(identity.device_id, now, TOKEN_LIFETIME_MS)
    return {"token": value, "expires_at": now + TOKEN_LIFETIME_MS, "max_bytes": services.media_max_bytes}


async def _bearer(services: Services, request: HttpRequest) -> str | None:
    """The device a request's bearer token belongs to, if the token is live and the device still linked."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    device_id = await services.media_tokens.device(value, services.clock())
    if device_id is None or await services.store.device(device_id) is None:
        return None
    return device_id


def _error(status: int, code: ErrorCode, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def refused(error: StorageFull | Unavailable) -> JSONResponse:
    """The answer when the disk or the database refuses (nothing of the request is kept)."""
    log.warning("a media request failed: %s", error)
    status, refusal = storage_refusal(error)
    return _error(status, refusal.code, refusal.message)


async def upload(services: Services, request: HttpRequest) -> Response:
    device_id = await _bearer(services, request)
    if device_id is None:
        return _error(401, ErrorCode.NOT_AUTHENTICATED, "a live media token is required (media.token)")
    limit = services.media_max_bytes
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return _error(413, ErrorCode.TOO_LARGE, f"media is limited to {human_size(limit)}")
    try:
        return await _receive(services, request, device_id, int(length) if length else None)
    except (StorageFull, Unavailable) as error:
        return refused(error)
    except OSError as error:  # the media folder: full, read-only, gone
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        return refused(StorageFull(str(error)) if full else Unavailable(str(error)))


def _quota_error(error: MediaQuotaExceeded) -> JSONResponse:
    what = "a day" if error.daily else "kept at once"
    then = "try again tomorrow" if error.daily else "older files must expire first (30 days)"
    return _error(
        429,
        ErrorCode.QUOTA_EXCEEDED,
        f"this device may upload {human_size(error.limit_bytes)} of media {what}; {then}",
    )


async def _receive(services: Services, request: HttpRequest, device_id: str, length: int | None) -> Response:
    """Stream the body to a partial file within the size limit and the device's quota, then index it.

    Each upload holds its declared length of the device's quota from the start, and whatever its
    device's other uploads in flight hold counts too, so parallel uploads cannot each take all of it.
    At most ``media_uploads_per_device`` stream at once, and a body slower than ``media_pace`` is cut
    off: a stalled upload's partial file must not sit on the disk every account shares.
    """
    limit, quota, now = services.media_max_bytes, services.media_quota, services.clock()
    root = services.media_root
    for expired in await services.store.expire_media(now - services.media_retention_ms):
        (root / expired).unlink(missing_ok=True)  # first, so expired blobs no longer count
    stored = await services.store.media_usage(device_id, now)
    uploads, pace, per_device = (
        services.media_uploads,
        services.media_pace,
        services.storage_limits.media_uploads_per_device,
    )
    try:
        upload, others = await uploads.start(device_id, length or 0, per_device, now, pace.lease_ms(0))
    except TooManyUploads as error:
        return _error(
            429,
            ErrorCode.RATE_LIMITED,
            f"this device may upload {error.limit} files at once; wait for one to finish",
        )
    media_id = b64u_encode(secrets.token_bytes(32))
    partial, blob = root / f"{media_id}.part", root / media_id
    digest, size = hashlib.sha256(), 0
    disk = services.disk
    try:
        stored.plus(others).check(length or 0, quota)
        if disk is not None:
            disk.check(length or 0)
        root.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as output:
            async for chunk in _paced(request, pace):
                size += len(chunk)
                if size > limit:
                    return _error(413, ErrorCode.TOO_LARGE, f"media is limited to {human_size(limit)}")
                others = await uploads.grow(device_id, upload, size, services.clock(), pace.lease_ms(size))
                stored.plus(others).check(max(size, length or 0), quota)
                if disk is not None:
                    disk.check(len(chunk))
                digest.update(chunk)
                await asyncio.to_thread(output.write, chunk)
        if size == 0:
            return _error(400, ErrorCode.BAD_REQUEST, "an empty upload")
        partial.replace(blob)
        try:
            await services.store.add_media(media_id, device_id, size, digest.digest(), now, quota)
        except BaseException:
            blob.unlink(missing_ok=True)
            raise
    except MediaQuotaExceeded as error:
        return _quota_error(error)
    except TooSlow:
        log.info("a media upload was cut off: its body arrived too slowly")
        return _error(408, ErrorCode.BAD_REQUEST, "the upload arrived too slowly and was cut off")
    except ClientDisconnect:
        log.info("a media upload ended early: the client went away")
        return Response(status_code=400)  # nobody is left to read it
    finally:
        await uploads.finish(device_id, upload)
        partial.unlink(missing_ok=True)
    return JSONResponse(
        {"media_id": media_id, "size": size, "sha256": b64u_encode(digest.digest())}, status_code=201
    )


class TooSlow(Exception):
    """An upload body fell behind its :class:`UploadPace`."""


async def _paced(request: HttpRequest, pace: UploadPace) -> AsyncIterator[bytes]:
    """The request body's chunks, :class:`TooSlow` as soon as one is late for ``pace``."""
    loop = asyncio.get_running_loop()
    started, received = loop.time(), 0
    chunks = request.stream()
    while True:
        try:
            async with asyncio.timeout_at(pace.deadline(started, received)):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError as error:
            raise TooSlow from error
        received += len(chunk)
        yield chunk


async def download(services: Services, request: HttpRequest) -> Response:
    if await _bearer(services, request) is None:
        return _error(401, ErrorCode.NOT_AUTHENTICATED, "a live media token is required (media.token)")
    media_id = request.path_params["media_id"]
    path = services.media_root / media_id
    if (
        not MEDIA_ID.fullmatch(media_id)
        or not path.is_file()
        or not await services.store.media_exists(media_id)
    ):
        return _error(404, ErrorCode.MEDIA_UNKNOWN, "no such media (blobs are kept 30 days)")
    return FileResponse(path, media_type="application/octet-stream", headers={"cache-control": "no-store"})
