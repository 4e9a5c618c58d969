"""A fake camera for Chromium (--use-file-for-fake-video-capture): one looping YUV4MPEG2 frame.

Chromium reopens the file whenever a page starts the camera, so a test swaps the picture (atomically)
between scans, while no stream is live.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segno
from PIL import Image

WIDTH, HEIGHT = 640, 480


class FakeCamera:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.show_frame(Image.new("L", (WIDTH, HEIGHT), 200))

    def show_qr(self, text: str) -> None:
        """A QR code of `text` (byte mode), black on white with its quiet zone, filling most of the frame."""
        png = io.BytesIO()
        segno.make_qr(text, mode="byte").save(png, kind="png", scale=5, border=4)
        picture = Image.open(io.BytesIO(png.getvalue())).convert("L")
        frame = Image.new("L", (WIDTH, HEIGHT), 255)
        frame.paste(picture, ((WIDTH - picture.width) // 2, (HEIGHT - picture.height) // 2))
        self.show_frame(frame)

    def show_frame(self, frame: Image.Image) -> None:
        header = f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F30:1 Ip A1:1 C420jpeg\n".encode()
        chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(header + b"FRAME\n" + frame.tobytes() + chroma + chroma)
        os.replace(tmp, self.path)


@dataclass
class Phone:
    """A phone-sized page whose camera shows what the test puts on `camera`."""

    page: Any
    camera: FakeCamera
