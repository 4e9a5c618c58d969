"""A fake camera for Chromium: one YUV4MPEG2 frame that Chromium loops as its video capture.

Chromium reopens the file each time a page starts the camera, so a test swaps the picture (atomically)
between scans while no stream is live.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

WIDTH, HEIGHT = 640, 480


def show_picture(camera: Path, picture: bytes | Path, *, fill: float = 0.8) -> None:
    """Put ``picture`` (PNG bytes or a file) centred on white, as the camera's only frame."""
    source = Image.open(io.BytesIO(picture) if isinstance(picture, bytes) else picture).convert("L")
    scale = min(WIDTH * fill / source.width, HEIGHT * fill / source.height)
    size = (max(2, int(source.width * scale)), max(2, int(source.height * scale)))
    frame = Image.new("L", (WIDTH, HEIGHT), 255)
    frame.paste(
        source.resize(size, Image.Resampling.NEAREST), ((WIDTH - size[0]) // 2, (HEIGHT - size[1]) // 2)
    )
    show_frame(camera, frame)


def show_blank(camera: Path) -> None:
    show_frame(camera, Image.new("L", (WIDTH, HEIGHT), 200))


def show_frame(camera: Path, frame: Image.Image) -> None:
    header = f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F30:1 Ip A1:1 C420jpeg\n".encode()
    chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
    tmp = camera.with_name(camera.name + ".tmp")
    tmp.write_bytes(header + b"FRAME\n" + frame.tobytes() + chroma + chroma)
    os.replace(tmp, camera)
