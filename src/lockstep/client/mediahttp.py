"""Uploading and downloading encrypted media over HTTP (messaging.md §7.4), streaming both ways.

Encryption happens while uploading (the blob's size is known in advance: PKCS#7 pads to whole blocks,
plus the 10-byte MAC), and decryption while downloading, into a hidden file that becomes the download
only once hashes and MAC check out. Blocking urllib runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from lockstep.client.connection import USER_AGENT
from lockstep.client.errors import ClientError, ServerRefused
from lockstep.e2e.media import (
    BLOCK_SIZE,
    MAC_SIZE,
    MediaDecryptor,
    MediaEncryptor,
    MediaKind,
    MediaRef,
)
from lockstep.link.encoding import b64u_decode

CHUNK = 256 * 1024
Progress = Callable[[int, int], None]


def encrypted_size(plain_size: int) -> int:
    return (plain_size // BLOCK_SIZE + 1) * BLOCK_SIZE + MAC_SIZE


def _context(url: str, ca_file: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca_file) if url.startswith("https://") else None


def _refusal(error: urllib.error.HTTPError) -> ServerRefused:
    try:
        body = json.loads(error.read())["error"]
        return ServerRefused(str(body["code"]), str(body["message"]))
    except (ValueError, KeyError, TypeError):
        return ServerRefused("http_error", f"the server answered HTTP {error.code}")


def _upload(
    server_url: str,
    token: str,
    path: Path | bytes,
    kind: MediaKind,
    media_key: bytes,
    progress: Progress,
    ca_file: str | None,
) -> MediaRef:
    size = len(path) if isinstance(path, bytes) else path.stat().st_size
    total = encrypted_size(size)
    encryptor = MediaEncryptor(media_key, kind)

    def body() -> Iterator[bytes]:
        sent = 0
        with io.BytesIO(path) if isinstance(path, bytes) else path.open("rb") as source:
            while chunk := source.read(CHUNK):
                data = encryptor.update(chunk)
                sent += len(data)
                progress(sent, total)
                yield data
        tail = encryptor.finalize()
        progress(sent + len(tail), total)
        yield tail

    url = server_url.rstrip("/") + "/media"
    request = urllib.request.Request(  # noqa: S310 - the server URL is the account's own http(s) server
        url,
        data=body(),
        method="POST",
        headers={
            "authorization": f"Bearer {token}",
            "content-type": "application/octet-stream",
            "content-length": str(total),
            "user-agent": USER_AGENT,
        },
    )
    try:
        with urllib.request.urlopen(request, context=_context(url, ca_file), timeout=60) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise _refusal(error) from error
    except OSError as error:
        raise ClientError(f"media upload failed: {error}") from error
    digest = encryptor.digest
    if b64u_decode(answer["sha256"]) != digest.file_enc_sha256 or answer["size"] != digest.enc_length:
        raise ClientError("the server stored something else than what was uploaded")
    return MediaRef(str(answer["media_id"]), kind, media_key, digest)


def _download(
    server_url: str, token: str, media: MediaRef, target: Path, progress: Progress, ca_file: str | None
) -> None:
    url = f"{server_url.rstrip('/')}/media/{media.media_id}"
    request = urllib.request.Request(  # noqa: S310
        url, headers={"authorization": f"Bearer {token}", "user-agent": USER_AGENT}
    )
    expected = media.digest
    decryptor = MediaDecryptor(media.media_key, media.kind, expected)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with (
            urllib.request.urlopen(request, context=_context(url, ca_file), timeout=60) as response,  # noqa: S310
            partial.open("wb") as output,
        ):
            received = 0
            while chunk := response.read(CHUNK):
                received += len(chunk)
                output.write(decryptor.update(chunk))
                progress(received, expected.enc_length)
            output.write(decryptor.finalize())  # raises unless hashes and MAC match
        partial.replace(target)
    except urllib.error.HTTPError as error:
        raise _refusal(error) from error
    except OSError as error:
        raise ClientError(f"media download failed: {error}") from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


async def upload(
    server_url: str,
    token: str,
    path: Path | bytes,
    kind: MediaKind,
    media_key: bytes,
    progress: Progress = lambda done, total: None,
    ca_file: str | None = None,
) -> MediaRef:
    """Encrypt ``path`` (a file, or the bytes themselves) under ``media_key`` while uploading it; where
    it went and how to open it."""
    return await asyncio.to_thread(_upload, server_url, token, path, kind, media_key, progress, ca_file)


async def download(
    server_url: str,
    token: str,
    media: MediaRef,
    target: Path,
    progress: Progress = lambda done, total: None,
    ca_file: str | None = None,
) -> None:
    """Fetch ``media``'s blob and decrypt it into ``target``, which appears only once it checks out."""
    await asyncio.to_thread(_download, server_url, token, media, target, progress, ca_file)
