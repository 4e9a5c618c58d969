"""QR codes as pictures and terminal art: segno draws them, zxing-cpp reads them."""

from __future__ import annotations

import os
from pathlib import Path

import segno

from lockstep.client.errors import ClientError


def terminal_art(text: str) -> str:
    """The QR as text for a terminal, two modules per character cell, dark on light."""
    code = segno.make_qr(text, error="m")
    rows = [[bool(cell) for cell in row] for row in code.matrix_iter(scale=1, border=2)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    glyphs = {(False, False): "\u2588", (True, False): "\u2584", (False, True): "\u2580", (True, True): " "}
    lines = [
        "".join(glyphs[(top, bottom)] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[::2], rows[1::2], strict=True)
    ]
    return "\n".join(lines)


def save_png(text: str, path: Path, *, scale: int = 8) -> None:
    """Write the QR as a PNG, atomically (a watcher never reads half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    segno.make_qr(text, error="m").save(str(tmp), kind="png", scale=scale, border=4)
    os.replace(tmp, path)


def read_image(path: Path) -> str:
    """The text of the QR code in a picture (PNG, JPEG, ...)."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            results = zxingcpp.read_barcodes(
                image.convert("L"), formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
            )
    except (OSError, UnidentifiedImageError) as error:
        raise ClientError(f"cannot read {path}: {error}") from error
    if not results:
        raise ClientError(f"no QR code found in {path}")
    text: str = results[0].text
    return text


def read_camera(timeout_s: float = 60.0) -> str:
    """Scan with the default camera (needs the optional OpenCV extra: pip install 'lockstep[camera]')."""
    import time

    try:
        import cv2
    except ImportError as error:
        raise ClientError("--camera needs OpenCV: pip install 'lockstep[camera]'") from error
    import zxingcpp

    capture = cv2.VideoCapture(0)
    if not capture.isOpened():
        raise ClientError("no camera found")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ok, frame = capture.read()
            if not ok:
                continue
            results = zxingcpp.read_barcodes(
                frame, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
            )
            if results:
                text: str = results[0].text
                return text
    finally:
        capture.release()
    raise ClientError(f"no QR code seen in {timeout_s:.0f} s")
