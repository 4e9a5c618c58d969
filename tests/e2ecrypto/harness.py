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

    def olm_encrypt(self, session: str, plaintexts: list[bytes]) -> list[tuple[int, str]]:
        """Encrypt with the browser's Olm session kept as ``O[session]``: (message type, body) each."""
        out = self.run(OLM_ENCRYPT, {"session": session, "plaintexts": [b64(p) for p in plaintexts]})
        return [(message_type, body) for message_type, body in out]


OLM_ENCRYPT = """
const s = O.get(arg.session);
const out = [];
for (const p of arg.plaintexts) {
  const m = await s.encrypt(E.decodeBase64(p));
  out.push([m.type, E.encodeBase64(m.body)]);
}
return out;
"""


def b64(data: bytes) -> str:
    """Unpadded standard base64, as Olm and vodozemac write it."""
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))
