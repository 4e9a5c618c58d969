"""What a phone's camera sees of a linking code on a computer's screen: 20 distorted frames of a real code.

The code is a fresh ``LinkCode`` (real X25519 and Ed25519 keys, a random ref and secret) drawn as the
companion page draws it (byte mode, error correction M, 4-module quiet zone, whole-pixel modules),
inside a screen-like surround, then photographed badly: rotated, tilted in perspective, blurred (focus
and motion), down-scaled, low in contrast, unevenly lit, noisy, JPEG-compressed, and combinations of
these. Everything is seeded, so the set is the same on every run and machine.

    code, frames = make_frames()          # code.to_text() is what a decoder must read
    for frame in frames: frame.name, frame.image  # 640x480 greyscale PIL images

Used by tests/web/test_web_scanner.py (the decoders in Chromium) and bench/scanner_decoders.py.
"""

from __future__ import annotations

import base64
import io
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from lockstep.link.qr import LinkCode

WIDTH, HEIGHT = 640, 480
"""The camera frame (what tests/fake_camera.py feeds Chromium, and a common low camera resolution)."""

ORIGIN = "https://192.168.1.20:8443"


@dataclass(frozen=True)
class Frame:
    name: str
    image: Image.Image

    def png(self) -> bytes:
        out = io.BytesIO()
        self.image.save(out, format="PNG")
        return out.getvalue()


def fresh_code(seed: int = 13) -> LinkCode:
    """A linking code as a companion makes one: its keys are real key pairs' public halves."""
    rng = random.Random(seed)
    raw = Encoding.Raw, PublicFormat.Raw
    ephemeral = X25519PrivateKey.from_private_bytes(rng.randbytes(32)).public_key().public_bytes(*raw)
    device = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)).public_key().public_bytes(*raw)
    return LinkCode(ORIGIN, rng.randbytes(32), ephemeral, device, rng.randbytes(32))


def screen_shot(text: str, *, qr_pixels: int = 420) -> Image.Image:
    """The companion page's code box (as web/src/ui/qrcode.ts draws it) on a grey page, 1000x750."""
    code = segno.make_qr(text, mode="byte", error="m", boost_error=False)
    modules = code.symbol_size(scale=1, border=4)[0]
    scale = max(2, qr_pixels // modules)
    qr = Image.open(io.BytesIO(_png(code, scale))).convert("L")
    screen = Image.new("L", (1000, 750), 236)
    draw = ImageDraw.Draw(screen)
    draw.rectangle((40, 40, 440, 70), fill=60)  # a heading's worth of dark text to the left of the code
    for line in range(6):
        draw.rectangle((40, 110 + 34 * line, 400 - 25 * line, 122 + 34 * line), fill=110)
    screen.paste(qr, (1000 - qr.width - 60, (750 - qr.height) // 2))
    return screen


def _png(code: segno.QRCode, scale: int) -> bytes:
    out = io.BytesIO()
    code.save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def _camera(screen: Image.Image, *, fill: float = 0.9, background: int = 40) -> Image.Image:
    """The screen framed by the camera: scaled so its height is ``fill`` of the frame, centred on the code."""
    scale = HEIGHT * fill / screen.height * 1.6
    size = (round(screen.width * scale), round(screen.height * scale))
    shot = screen.resize(size, Image.Resampling.BILINEAR)
    frame = Image.new("L", (WIDTH, HEIGHT), background)
    # The code sits right of centre on the screen: aim the camera at it.
    frame.paste(shot, (WIDTH // 2 - round(size[0] * 0.72), (HEIGHT - size[1]) // 2))
    return frame


def _rotate(image: Image.Image, degrees: float, background: int = 40) -> Image.Image:
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=background)


def _tilt(
    image: Image.Image, *, left: float = 1.0, right: float = 1.0, top: float = 1.0, bottom: float = 1.0
) -> Image.Image:
    """A perspective view: each edge shortened to the given fraction (a screen seen from one side)."""
    w, h = image.size
    # The quad in the output where the frame's corners land: top-left, bottom-left, bottom-right, top-right.
    dy_l, dy_r = (1 - left) * h / 2, (1 - right) * h / 2
    dx_t, dx_b = (1 - top) * w / 2, (1 - bottom) * w / 2
    quad = [(dx_t, dy_l), (dx_b, h - dy_l), (w - dx_b, h - dy_r), (w - dx_t, dy_r)]
    coefficients = _perspective_coefficients(quad, [(0, 0), (0, h), (w, h), (w, 0)])
    perspective, bicubic = Image.Transform.PERSPECTIVE, Image.Resampling.BICUBIC
    return image.transform((w, h), perspective, coefficients, bicubic, fillcolor=40)


def _perspective_coefficients(
    output: list[tuple[float, float]], source: list[tuple[float, float]]
) -> tuple[float, ...]:
    """Pillow's PERSPECTIVE maps an output pixel (x, y) to a source pixel; solve the 8 unknowns."""
    rows: list[list[float]] = []
    rhs: list[float] = []
    for (x, y), (u, v) in zip(output, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return tuple(_solve(rows, rhs))


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (8x8: no need for numpy)."""
    n = len(rhs)
    a = [[*row, value] for row, value in zip(matrix, rhs, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(n):
            if r != col:
                factor = a[r][col] / a[col][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col], strict=True)]
    return [a[r][n] / a[r][r] for r in range(n)]


def _contrast(image: Image.Image, black: int, white: int) -> Image.Image:
    return image.point(lambda p: round(black + (white - black) * p / 255))


def _noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    """Gaussian sensor noise (the sum of 4 uniforms: close enough, and fast without numpy)."""
    rng = random.Random(seed)
    n = image.width * image.height
    spread = math.sqrt(4 * 255 * 255 / 12)  # the standard deviation of the sum of 4 uniform bytes
    planes = [rng.randbytes(n) for _ in range(4)]
    pixels = image.tobytes()
    out = bytearray(n)
    for i in range(n):
        total = planes[0][i] + planes[1][i] + planes[2][i] + planes[3][i] - 510  # mean 0
        value = pixels[i] + total * sigma / spread
        out[i] = 0 if value < 0 else 255 if value > 255 else int(value)
    return Image.frombytes("L", image.size, bytes(out))


def _lighting(image: Image.Image, *, dark: int, bright: int, horizontal: bool = True) -> Image.Image:
    """Uneven light (a lamp's glare on one side, shade on the other): multiply by a gradient."""
    w, h = image.size
    steps = w if horizontal else h
    line = Image.linear_gradient("L").resize((1, 256)).resize((1, steps))
    gradient = line.transpose(Image.Transpose.ROTATE_90) if horizontal else line
    gradient = gradient.resize((w, h)).point(lambda p: dark + (bright - dark) * p // 255)
    return ImageChops.multiply(image, gradient.point(lambda p: min(255, p)))


def _motion_blur(image: Image.Image) -> Image.Image:
    kernel = [0.0] * 25
    for i in range(5):
        kernel[10 + i] = 1 / 5
    return image.filter(ImageFilter.Kernel((5, 5), kernel, scale=1))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("L")


def _small(screen: Image.Image, fill: float) -> Image.Image:
    return _camera(screen, fill=fill)


def make_frames(code: LinkCode | None = None) -> tuple[LinkCode, list[Frame]]:
    code = code or fresh_code()
    screen = screen_shot(code.to_text())
    camera = _camera(screen)
    blur = ImageFilter.GaussianBlur
    steps: list[tuple[str, Callable[[], Image.Image]]] = [
        ("straight", lambda: camera),
        ("rotated 12°", lambda: _rotate(camera, 12)),
        ("rotated 45°", lambda: _rotate(camera, 45)),
        ("upside down, 170°", lambda: _rotate(camera, 170)),
        ("tilted sideways (right edge 75%)", lambda: _tilt(camera, right=0.75)),
        ("tilted sideways hard (left edge 60%)", lambda: _tilt(camera, left=0.6)),
        ("tilted back (top edge 70%)", lambda: _tilt(camera, top=0.7)),
        ("out of focus (blur 1.5 px)", lambda: camera.filter(blur(1.5))),
        ("out of focus (blur 2.2 px)", lambda: camera.filter(blur(2.2))),
        ("hand shake (motion blur 5 px)", lambda: _motion_blur(camera)),
        ("far away (code 1/3 of frame height)", lambda: _small(screen, 0.33)),
        ("far away and soft (1/3 height, blur 0.8)", lambda: _small(screen, 0.33).filter(blur(0.8))),
        ("low contrast (grey 90-160)", lambda: _contrast(camera, 90, 160)),
        ("dim room (grey 20-75)", lambda: _contrast(camera, 20, 75)),
        ("sensor noise (sigma 18)", lambda: _noise(camera, 18, 1)),
        ("heavy sensor noise (sigma 40)", lambda: _noise(camera, 40, 2)),
        ("glare and shade across the screen", lambda: _lighting(camera, dark=70, bright=255)),
        ("JPEG quality 15, far away", lambda: _jpeg(_small(screen, 0.45), 15)),
        (
            "tilted, rotated, blurred and noisy",
            lambda: _noise(_rotate(_tilt(camera, left=0.72), 20).filter(blur(1.2)), 22, 3),
        ),
        (
            "rotated, low contrast, noisy, dim",
            lambda: _noise(_contrast(_rotate(camera, -30), 40, 120), 14, 4),
        ),
    ]
    return code, [Frame(name, make()) for name, make in steps]


@dataclass(frozen=True)
class Reading:
    """One frame through one decoder in Chromium: what it read (None: nothing), the median and the
    fastest of its decodes (other work on the machine only ever adds time)."""

    text: str | None
    ms: float
    best_ms: float


def decode_in_page(page: Any, decoder: str, frames: list[Frame], *, repeats: int = 3) -> list[Reading]:
    """Runs the phone scanner's decoder named ``decoder`` (web/src/pages/primary/qrDecoders.ts) over
    ``frames`` in ``page``, which shows web/tests/scanner-harness.html."""
    pngs = [base64.b64encode(frame.png()).decode() for frame in frames]
    run = "([name, pngs, repeats]) => window.scannerBench.run(name, pngs, repeats)"
    results = page.evaluate(run, [decoder, pngs, repeats])
    return [Reading(result["text"], result["ms"], result["bestMs"]) for result in results]


if __name__ == "__main__":  # writes the set to a folder, to look at: python tests/scanner_frames.py OUT
    import sys
    from pathlib import Path

    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    made, frames = make_frames()
    for number, frame in enumerate(frames):
        frame.image.save(folder / f"{number:02d}.png")
    print(made.to_text())
