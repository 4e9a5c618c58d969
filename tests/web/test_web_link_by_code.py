"""The browser's typed-code linking (web/src/link/byCode.ts) against the Python one (lockstep.link.bycode),
in real Chromium: the same parser verdicts, and CPace runs across the two languages in both directions."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from lockstep.link import bycode
from lockstep.link.encoding import b64u_decode, b64u_encode
from lockstep.link.qr import LinkCode

pytestmark = pytest.mark.browser

ORIGIN = "https://chat.example:8443"
DEVICE_KEY = bytes.fromhex(
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
)  # RFC 8032 test 2
TYPED = ["k7pm-2qxd", "OIL0 1LIO", "K7PM-2QXU", "K7PM2QX", "K7PM-2QXDA", "", "é1234567", "ZZZZ-ZZZZ"]


def test_the_browser_parses_typed_codes_as_python_does(harness: Any) -> None:
    browser = harness.evaluate(
        """(texts) => texts.map((t) => {
             try { return { code: window.lockstep.byCode.parseCode(t) }; }
             catch (e) { return { error: e.name, message: e.message }; } })""",
        TYPED,
    )
    for text, result in zip(TYPED, browser, strict=True):
        try:
            expected = {"code": bycode.parse_code(text)}
        except bycode.TypedCodeInvalid as error:
            expected = {"error": "TypedCodeInvalid", "message": str(error)}
        assert result == expected, text


BROWSER_ANSWERS = """
async ([code, origin, sid, share, payload]) => {
  const { byCode, b64u, qr } = window.lockstep;
  const decoded = qr.decodePayload(b64u.b64uDecode(payload));
  const out = await byCode.answer(code, origin, b64u.b64uDecode(sid), b64u.b64uDecode(share), decoded);
  return [b64u.b64uEncode(out.share), b64u.b64uEncode(out.sealed)];
}
"""

BROWSER_OFFERS = """
async ([code, origin]) => {
  const { byCode, b64u } = window.lockstep;
  window.run = await byCode.startPrimary(code, origin);
  const offer = window.run.offer;
  return [offer.codeId, b64u.b64uEncode(offer.sid), b64u.b64uEncode(offer.share)];
}
"""

BROWSER_OPENS = """
async ([share, sealed]) => {
  const { byCode, b64u, qr } = window.lockstep;
  try {
    const code = await byCode.openAnswer(window.run, b64u.b64uDecode(share), b64u.b64uDecode(sealed));
    return { origin: code.origin, payload: b64u.b64uEncode(qr.encodePayload(code)) };
  } catch (e) { return { error: e.name }; }
}
"""


def shown() -> LinkCode:
    return LinkCode(
        ORIGIN, secrets.token_bytes(32), secrets.token_bytes(32), DEVICE_KEY, secrets.token_bytes(32)
    )


@pytest.mark.parametrize("typed_right", [True, False])
def test_a_python_primary_and_a_browser_companion_agree_only_on_the_same_code(
    harness: Any, typed_right: bool
) -> None:
    code, companion = "K7PM2QXD", shown()
    typed = code if typed_right else "K7PM2QXE"
    primary = bycode.PrimaryRun.start(
        typed, ORIGIN, scalar=secrets.token_bytes(32), sid=secrets.token_bytes(16)
    )
    offer = primary.offer.to_json()
    share, sealed = harness.evaluate(
        BROWSER_ANSWERS, [code, ORIGIN, offer["sid"], offer["share"], b64u_encode(companion.payload())]
    )
    answer = bycode.Answer(b64u_decode(share), b64u_decode(sealed))
    if typed_right:
        assert primary.open(answer) == companion
    else:
        with pytest.raises(bycode.WrongCode):
            primary.open(answer)


@pytest.mark.parametrize("typed_right", [True, False])
def test_a_browser_primary_and_a_python_companion_agree_only_on_the_same_code(
    harness: Any, typed_right: bool
) -> None:
    code, companion = "K7PM2QXD", shown()
    typed = code if typed_right else "K7PM2QXE"
    code_id, sid, share = harness.evaluate(BROWSER_OFFERS, [typed, ORIGIN])
    assert code_id == "K7P"
    answer = bycode.answer(
        code, ORIGIN, b64u_decode(sid), b64u_decode(share), companion, scalar=secrets.token_bytes(32)
    )
    opened = harness.evaluate(BROWSER_OPENS, [b64u_encode(answer.share), b64u_encode(answer.sealed)])
    if typed_right:
        assert opened == {"origin": ORIGIN, "payload": b64u_encode(companion.payload())}
    else:
        assert opened == {"error": "WrongCode"}
