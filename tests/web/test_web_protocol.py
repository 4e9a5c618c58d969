"""The browser and the server share one protocol vocabulary.

Error codes: ``ErrorCode`` in src/lockstep/server/errors.py and ``ERROR_CODES`` in
web/src/net/errorCodes.ts list the same codes (read from the built module in Chromium, not by parsing
TypeScript), every code is named in the protocol docs, and the linking wording shared with the terminal
names only real codes. A code added on one side only fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lockstep.link.wording import SERVER_REFUSALS
from lockstep.server.errors import ErrorCode

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_DOCS = ("docs/protocol/linking.md", "docs/protocol/messaging.md")


@pytest.mark.browser
def test_the_browser_knows_exactly_the_servers_error_codes(harness: Any) -> None:
    browser = harness.evaluate("() => [...window.lockstep.errorCodes.ERROR_CODES]")
    assert len(browser) == len(set(browser)), "a code is listed twice in errorCodes.ts"
    assert set(browser) == {code.value for code in ErrorCode}


@pytest.mark.browser
def test_a_code_the_browser_does_not_know_reads_as_the_servers_message(harness: Any) -> None:
    out = harness.evaluate(
        """() => {
          const { socket, refusals } = window.lockstep;
          const unknown = new socket.ServerError("newer_code", "a reason from a newer server");
          const known = new socket.ServerError("stranger_limit", "ignored: there is a sentence");
          return {
            code: unknown.code,
            received: unknown.received,
            text: refusals.describeRefusal(unknown, "messaging"),
            known: refusals.describeRefusal(known, "messaging"),
          };
        }"""
    )
    assert out["code"] == "unrecognised"
    assert out["received"] == "newer_code"
    assert out["text"] == "The server refused: a reason from a newer server."
    assert out["known"].startswith("They have not written to you yet")


@pytest.mark.browser
def test_linking_refusals_read_as_the_terminal_says_them(harness: Any) -> None:
    texts = harness.evaluate(
        """(codes) => Object.fromEntries(codes.map((code) => [code, window.lockstep.refusals.refusalText(code, "linking")]))""",
        list(SERVER_REFUSALS),
    )
    assert texts == dict(SERVER_REFUSALS)


def test_every_error_code_is_documented() -> None:
    docs = "".join((ROOT / name).read_text(encoding="utf-8") for name in PROTOCOL_DOCS)
    assert [code.value for code in ErrorCode if f"`{code}`" not in docs] == []


def test_the_shared_linking_wording_names_only_real_codes() -> None:
    assert set(SERVER_REFUSALS) - {code.value for code in ErrorCode} == set()
