"""Unfinished media uploads (SECURITY.md "Server, network and disk"): one device cannot hold many
partial files open on the disk every account shares, stalled bodies are cut off and deleted, a declared
length holds its share of the quota from the start, and a client that goes away is not an error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from helpers_linking import primary

from lockstep.server.media_uploads import UploadPace
from lockstep.server.settings import KIB, StorageLimits

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def open_upload(
    url: str, token: str, length: int | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A ``POST /media`` whose headers are sent and whose body the test writes (chunked if no length)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    head = f"POST /media HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n{framing}"
    writer.write(f"{head}\r\n\r\n".encode())
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, object]]:
    """Status and JSON body of the server's answer, within 5 s."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status = int(head.split(b" ", 2)[1])
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:"))
    body = await asyncio.wait_for(reader.readexactly(length), 5)
    return status, json.loads(body) if body else {}


def partial_files(live_server) -> list[str]:
    root = live_server.services.media_root
    return [p.name for p in root.iterdir() if p.name.endswith(".part")] if root.exists() else []


async def until(condition: Callable[[], bool]) -> None:
    """Wait (at most 5 s) for ``condition``."""
    for _ in range(250):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting")


async def test_one_device_cannot_hold_many_stalled_uploads_open(live_server, tmp_path) -> None:
    live_server.services.storage_limits = StorageLimits(media_uploads_per_device=3)
    live_server.services.media_pace = UploadPace(grace_s=0.5, min_bytes_per_s=1024 * 1024)
    async with primary(live_server.url, tmp_path / "m", "mallory") as mallory:
        token = (await mallory.connection.request("media.token"))["token"]
        async with contextlib.AsyncExitStack() as stack:
            uploads = [await stack.enter_async_context(open_upload(live_server.url, token)) for _ in range(3)]
            for _, writer in uploads:
                writer.write(chunk(b"x" * 10 * KIB))  # then nothing more: stalled
                await writer.drain()
            await until(lambda: len(partial_files(live_server)) == 3)
            uploads.append(await stack.enter_async_context(open_upload(live_server.url, token)))
            status, body = await answer(uploads[3][0])  # the fourth at once is refused
            assert status == 429 and body["error"]["code"] == "rate_limited"  # type: ignore[index]
            assert "3 files at once" in body["error"]["message"]  # type: ignore[index]

            # The stalled ones are cut off once behind their pace, and their partial files deleted.
            for reader, _ in uploads[:3]:
                status, body = await answer(reader)
                assert status == 408 and "too slowly" in body["error"]["message"]  # type: ignore[index]
            assert partial_files(live_server) == []

        async with open_upload(live_server.url, token, 1000) as (reader, writer):  # slots are free again
            writer.write(b"y" * 1000)
            assert (await answer(reader))[0] == 201


async def test_a_declared_length_holds_its_quota_from_the_start(live_server, tmp_path, caplog) -> None:
    live_server.services.storage_limits = StorageLimits(
        media_daily_bytes=64 * KIB, media_stored_bytes=64 * KIB
    )
    caplog.set_level(logging.INFO)
    async with primary(live_server.url, tmp_path / "a", "alice") as alice:
        token = (await alice.connection.request("media.token"))["token"]
        async with open_upload(live_server.url, token, 48 * KIB) as (_, slow):
            slow.write(b"x" * KIB)  # 48 KiB announced, 1 KiB sent so far
            await slow.drain()
            await until(lambda: bool(partial_files(live_server)))  # the server has started on it
            async with open_upload(live_server.url, token, 32 * KIB) as (reader, writer):
                writer.write(b"y" * 32 * KIB)
                status, body = await answer(reader)
            assert status == 429 and body["error"]["code"] == "quota_exceeded"  # type: ignore[index]
        # The slow client went away: its partial file goes, and that is one line in the log, no traceback.
        await until(lambda: not partial_files(live_server))
        assert not [r for r in caplog.records if r.exc_info], "a client going away is not an error"
        assert "the client went away" in caplog.text


async def test_a_device_cannot_pass_its_cap_or_quota_by_spreading_uploads_over_instances(
    redis_pair, tmp_path
) -> None:
    a, b = redis_pair
    for instance in (a, b):
        instance.services.storage_limits = StorageLimits(
            media_uploads_per_device=2, media_daily_bytes=64 * KIB, media_stored_bytes=64 * KIB
        )
        instance.services.media_pace = UploadPace(grace_s=30, min_bytes_per_s=1)
    async with primary(a.url, tmp_path / "m", "mallory") as mallory:
        token = (await mallory.connection.request("media.token"))["token"]  # good on every instance
        async with contextlib.AsyncExitStack() as stack:
            # One upload in flight on each instance, 40 KiB announced on a, 1 KiB sent on b so far.
            on_a = await stack.enter_async_context(open_upload(a.url, token, 40 * KIB))
            on_b = await stack.enter_async_context(open_upload(b.url, token))
            on_a[1].write(b"x" * KIB)
            on_b[1].write(chunk(b"x" * KIB))
            await until(lambda: len(partial_files(a)) == 2)  # both instances share the media folder

            async with open_upload(a.url, token, 1000) as (reader, writer):  # a third, on either
                status, body = await answer(reader)
            assert status == 429 and "2 files at once" in body["error"]["message"]  # type: ignore[index]

            on_b[1].write(chunk(b""))  # b's upload is done: one slot is free again, on a too
            assert (await answer(on_b[0]))[0] == 201
            async with open_upload(b.url, token, 32 * KIB) as (reader, writer):
                writer.write(b"y" * 32 * KIB)  # but a's 40 KiB announced leaves only 23 KiB of quota
                status, body = await answer(reader)
            assert status == 429 and body["error"]["code"] == "quota_exceeded"  # type: ignore[index]
