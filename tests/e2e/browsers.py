"""What the end-to-end tests hold on to for each browser."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Phone:
    """A phone-sized browser page with a camera the test controls."""

    page: Any
    camera: Path
