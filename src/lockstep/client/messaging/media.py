"""Files in and out of the server, encrypted end to end (messaging.md §9): each file under its own
key, which travels only inside the message; the server stores an opaque blob."""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from typing import Any

from lockstep.client import mediahttp
from lockstep.client.errors import ClientError
from lockstep.client.messaging.device import Device
from lockstep.client.messaging.records import Progress, no_progress
from lockstep.e2e.media import MediaRef, human_size, kind_for_mimetype, new_media_key


def safe_name(name: str) -> str:
    """A file name that stays inside the folder it is written to, whatever a sender called it."""
    cleaned = re.sub(r"[^A-Za-z0-9._ -]", "_", Path(name).name).strip(" .")
    return cleaned[:100] or "file"


class MediaTransfer:
    def __init__(self, device: Device) -> None:
        self.device = device

    async def upload(
        self, path: Path, progress: Progress = no_progress, *, mimetype: str | None = None
    ) -> dict[str, Any]:
        """Encrypt and upload ``path``; the ``media`` object a media message carries. The MIME type is
        guessed from the name unless given."""
        if not path.is_file():
            raise ClientError(f"no such file: {path}")
        return await self._upload(path, path.stat().st_size, path.name, progress, mimetype)

    async def upload_bytes(self, data: bytes, name: str, *, mimetype: str | None = None) -> dict[str, Any]:
        """As :meth:`upload`, for contents made in memory (a history bundle: never written to disk)."""
        return await self._upload(data, len(data), name, no_progress, mimetype)

    async def _upload(
        self, source: Path | bytes, size: int, name: str, progress: Progress, mimetype: str | None
    ) -> dict[str, Any]:
        token = await self.device.request("media.token")
        if mediahttp.encrypted_size(size) > int(token["max_bytes"]):
            raise ClientError(
                f"{name} is too large: this server accepts up to {human_size(int(token['max_bytes']))}"
            )
        mimetype = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        media = await mediahttp.upload(
            self.device.session.state.server_url,
            token["token"],
            source,
            kind_for_mimetype(mimetype),
            new_media_key(),
            progress,
            self.device.ca_file,
        )
        return {**media.to_json(), "mimetype": mimetype, "name": safe_name(name)}

    async def download(
        self, media: dict[str, Any], progress: Progress = no_progress, *, folder: Path | None = None
    ) -> Path:
        """Fetch, check and decrypt a media message's blob into ``folder`` (default: the state
        folder's downloads/)."""
        ref = MediaRef.from_json(media)
        downloads = folder or self.device.session.state.directory / "downloads"
        downloads.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = safe_name(str(media.get("name", "file")))
        target = downloads / name
        counter = 1
        while target.exists():
            target = downloads / f"{Path(name).stem}-{counter}{Path(name).suffix}"
            counter += 1
        token = await self.device.request("media.token")
        await mediahttp.download(
            self.device.session.state.server_url, token["token"], ref, target, progress, self.device.ca_file
        )
        return target
