"""The page object the Olm/Megolm tests drive."""

from __future__ import annotations

import base64
from typing import Any


class Harness:
    """The e2e harness page: `run(body, arg)` evaluates an async function body with E = window.e2e
    (the module), T = window.e2eTest (helpers) and O = T.objects (state kept between calls)."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def run(self, body: str, arg: Any = None) -> Any:
        script = f"async (arg) => {{ const E = window.e2e, T = window.e2eTest, O = T.objects;\n{body}\n}}"
        return self.page.evaluate(script, arg)


def b64(data: bytes) -> str:
    """Unpadded standard base64, as Olm and vodozemac write it."""
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))
