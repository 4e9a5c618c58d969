"""The browser and the server share one protocol vocabulary.

Error codes: ``ErrorCode`` in src/lockstep/server/errors.py and ``ERROR_CODES`` in
web/src/net/errorCodes.ts list the same codes (read from the built module in Chromium, not by parsing
TypeScript), every code is named in the protocol docs, and the linking wording shared with the terminal
names only real codes. A code added on one side only fails here.

Events: the event classes of src/lockstep/server/events.py and the shapes of web/src/net/events.ts
have the same names and fields, every Python event (each enum member in it included) passes the
browser's check, and a frame missing a field the server always sends does not.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, get_args

import pytest

from lockstep.link.wording import SERVER_REFUSALS
from lockstep.server.connection import CLOSE_UNLINKED
from lockstep.server.errors import ErrorCode
from lockstep.server.events import (
    DeclineReason,
    DeviceChange,
    DeviceChangeKind,
    DevicesChanged,
    DeviceUnlinked,
    GroupChange,
    GroupChangeKind,
    GroupMember,
    GroupRole,
    GroupsChanged,
    Hello,
    KeysLow,
    LinkCodeAnswer,
    LinkCodeOffer,
    LinkDeclined,
    LinkGranted,
    LinkIdle,
    LinkRef,
    LinkScanned,
    Message,
    Sender,
    ServerEvent,
    ServerInfo,
)

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
        """(codes) => Object.fromEntries(
          codes.map((code) => [code, window.lockstep.refusals.refusalText(code, "linking")])
        )""",
        list(SERVER_REFUSALS),
    )
    assert texts == dict(SERVER_REFUSALS)


@pytest.mark.browser
def test_the_unlinked_close_code_is_the_servers(harness: Any) -> None:
    assert harness.evaluate("() => window.lockstep.socket.CLOSE_UNLINKED") == CLOSE_UNLINKED


def test_every_error_code_is_documented() -> None:
    docs = "".join((ROOT / name).read_text(encoding="utf-8") for name in PROTOCOL_DOCS)
    assert [code.value for code in ErrorCode if f"`{code}`" not in docs] == []


def test_the_shared_linking_wording_names_only_real_codes() -> None:
    assert set(SERVER_REFUSALS) - {code.value for code in ErrorCode} == set()


ID = "A" * 43
NOW = 1_764_000_000_000
OLM = {"device_id": ID, "type": "olm", "olm_type": 0, "sender_key": ID, "ciphertext": "AAAA"}
SAMPLES: list[ServerEvent] = [
    Hello(ServerInfo("http://127.0.0.1:8000", "Lockstep", "0.1.0"), ID, NOW),
    LinkRef(ID, NOW, NOW + 60_000, NOW, 0, False),
    LinkRef(ID, NOW, NOW + 20_000, NOW, 5, True),
    LinkScanned(),
    LinkIdle(),
    *(LinkDeclined(reason) for reason in DeclineReason),
    LinkGranted(ID, ID, "B" * 300),
    LinkCodeOffer("s" * 22, ID),
    LinkCodeAnswer("K7P", ID, "C" * 194),
    *(
        DevicesChanged({"payload": "e30", "signature": ID}, DeviceChange(kind, ID, "Work laptop"))
        for kind in DeviceChangeKind
    ),
    DeviceUnlinked(ID),
    Message(7, "m" * 22, Sender(ID, ID), None, OLM, NOW),
    Message(8, "n" * 22, Sender(ID, ID), "g" * 22, {"session_id": ID, "ciphertext": "AAAA"}, NOW),
    *(
        GroupsChanged(
            "g" * 22,
            ID,
            2,
            [GroupMember(ID, role) for role in GroupRole],
            GroupChange(kind, ID, ID, None if kind is GroupChangeKind.CREATED else "C" * 43),
        )
        for kind in GroupChangeKind
    ),
    KeysLow(3),
]
OPTIONAL = {("link.declined", "reason")}
"""Fields a client must do without: an unknown or missing decline reason reads as a decline (§7.3)."""

PARSE = "(frames) => frames.map((frame) => window.lockstep.events.parseServerEvent(frame)?.event ?? null)"


def test_there_is_a_sample_of_every_event() -> None:
    assert {type(event) for event in SAMPLES} == set(get_args(ServerEvent))


@pytest.mark.browser
def test_the_browser_knows_every_event_with_the_servers_fields(harness: Any) -> None:
    browser = harness.evaluate("() => window.lockstep.events.EVENT_FIELDS")
    server = {cls.EVENT: [field.name for field in dataclasses.fields(cls)] for cls in get_args(ServerEvent)}
    assert browser == server


@pytest.mark.browser
def test_the_browser_accepts_every_event_the_server_sends(harness: Any) -> None:
    frames = [event.to_json() for event in SAMPLES]
    assert harness.evaluate(PARSE, frames) == [frame["event"] for frame in frames]


@pytest.mark.browser
def test_the_browser_drops_an_event_missing_a_field(harness: Any) -> None:
    frames, names = [], []
    for event in SAMPLES:
        frame = event.to_json()
        for name in frame:
            if name != "event" and (frame["event"], name) not in OPTIONAL:
                frames.append({k: v for k, v in frame.items() if k != name})
                names.append(f"{frame['event']} without {name}")
    frames.append({"event": "link.granted", "ref": ID, "enc": 7, "ciphertext": ID})
    names.append("link.granted with a number for enc")
    frames.append({"event": "no.such.event"})
    names.append("an unknown event")
    parsed = harness.evaluate(PARSE, frames)
    assert [name for name, event in zip(names, parsed, strict=True) if event is not None] == []
