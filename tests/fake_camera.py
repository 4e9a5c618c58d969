"""A fake camera for Chromium (``--use-file-for-fake-video-capture``, see chromium.camera_args): one
looping YUV4MPEG2 frame. Chromium reopens the file whenever a page starts the camera, so a test swaps
the picture (atomically) between scans, while no stream is live.

    camera = FakeCamera(tmp_path / "camera.y4m")   # blank to begin with
    camera.show_picture(screenshot)                 # PNG bytes or a file, scaled to fill the frame
    camera.show_qr("https://…/link#…")             # a QR code of any text, at its own size
    camera.show_blank()
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segno
from PIL import Image

from chromium import VirtualAuthenticator

WIDTH, HEIGHT = 640, 480


class FakeCamera:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.show_blank()

    def show_picture(self, picture: bytes | Path, *, fill: float | None = 0.8) -> None:
        """Put ``picture`` centred on white as the camera's only frame, scaled to ``fill`` of it (None:
        at its own size)."""
        source = Image.open(io.BytesIO(picture) if isinstance(picture, bytes) else picture).convert("L")
        if fill is not None:
            scale = min(WIDTH * fill / source.width, HEIGHT * fill / source.height)
            size = (max(2, int(source.width * scale)), max(2, int(source.height * scale)))
            source = source.resize(size, Image.Resampling.NEAREST)
        frame = Image.new("L", (WIDTH, HEIGHT), 255)
        frame.paste(source, ((WIDTH - source.width) // 2, (HEIGHT - source.height) // 2))
        self.show_frame(frame)

    def show_qr(self, text: str) -> None:
        """A QR code of ``text`` (byte mode), black on white with its quiet zone."""
        png = io.BytesIO()
        segno.make_qr(text, mode="byte").save(png, kind="png", scale=5, border=4)
        self.show_picture(png.getvalue(), fill=None)

    def show_blank(self) -> None:
        self.show_frame(Image.new("L", (WIDTH, HEIGHT), 200))

    def show_frame(self, frame: Image.Image) -> None:
        header = f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F30:1 Ip A1:1 C420jpeg\n".encode()
        chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(header + b"FRAME\n" + frame.tobytes() + chroma + chroma)
        os.replace(tmp, self.path)


@dataclass
class Phone:
    """A phone-sized browser page whose camera shows what the test puts on ``camera``, with a screen
    lock WebAuthn can use (``authenticator``, chromium.add_platform_authenticator) unless None."""

    page: Any
    camera: FakeCamera
    authenticator: VirtualAuthenticator | None = None
