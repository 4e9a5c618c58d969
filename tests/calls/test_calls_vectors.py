"""The call core on the vectors shared with the browser's twin (vectors/call-signals.json, read also by
web/tests/unit/callVectors.test.ts): which signal bodies parse and the exact reason for each refusal,
which call wins a glare, and step-by-step what one device's calls do (messaging.md §14.2-14.5, §14.9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lockstep.calls.book import CallBook, glare_winner
from lockstep.calls.errors import SignalError
from lockstep.calls.machine import (
    Action,
    AnswerAtOnce,
    Ended,
    Ignored,
    Party,
    RemoteCandidates,
    RemoteDescription,
    Send,
)
from lockstep.calls.signals import Hangup, Media, parse, signal_type, to_body

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "call-signals.json").read_text())
DEVICES = {name: Party(*pair) for name, pair in VECTORS["devices"].items()}
ME = DEVICES["me"]


@pytest.mark.parametrize("case", VECTORS["signals"], ids=lambda case: case["name"])
def test_signal_bodies_parse_or_are_refused_with_the_reason(case: dict[str, Any]) -> None:
    if case["error"] is None:
        assert to_body(parse(case["body"])) == case["body"]  # and round-trips exactly
    else:
        with pytest.raises(SignalError) as refused:
            parse(case["body"])
        assert str(refused.value) == case["error"]


@pytest.mark.parametrize(
    "case", VECTORS["glare"], ids=lambda case: f"{case['ours'][:3]}-{case['theirs'][:3]}"
)
def test_the_lower_call_id_wins_a_glare(case: dict[str, str]) -> None:
    assert glare_winner(case["ours"], case["theirs"]) == case["winner"]


def rendered(action: Action) -> str:
    """An action as the vectors write it."""
    if isinstance(action, Send):
        reason = f" {action.signal.reason.value}" if isinstance(action.signal, Hangup) else ""
        return f"send {signal_type(action.signal).value}{reason}"
    if isinstance(action, Ended):
        return f"ended {action.record.summary()}"
    if isinstance(action, RemoteDescription):
        return f"remote-description {action.kind}"
    if isinstance(action, RemoteCandidates):
        return f"remote-candidates {len(action.candidates)}"
    if isinstance(action, AnswerAtOnce):
        return f"answer-at-once {action.replacing}"
    assert isinstance(action, Ignored)
    return "ignored"


def step(book: CallBook, step: dict[str, Any]) -> list[Action]:
    at, what = step["at"], step["do"]
    if what == "dial":
        return book.dial(step["call_id"], Media.AUDIO, "v=0", VECTORS["peer"], at)[1]
    if what == "arrive":
        sender = DEVICES[step["from"]]
        peer = VECTORS["peer"] if sender.account_id == ME.account_id else sender.account_id
        conversation = f"direct:{':'.join(sorted((ME.account_id, peer)))}"
        return book.arrived(step["body"], sender, conversation, step.get("sent_at", at), at)[1]
    if what == "timer":
        return [a for call in list(book.calls.values()) for a in call.handle_timer(at)]
    call = book.calls[step["call_id"]]
    if what == "answer":
        return call.answer("v=0", at)
    actions: list[Action] = getattr(call, what)(at)
    return actions


@pytest.mark.parametrize("scenario", VECTORS["scenarios"], ids=lambda scenario: scenario["name"])
def test_one_devices_calls_step_by_step(scenario: dict[str, Any]) -> None:
    book = CallBook(ME)
    for number, one in enumerate(scenario["steps"]):
        actions = step(book, one)
        assert [rendered(a) for a in actions] == one["expect"]["actions"], number
        assert {c.call_id: c.state.value for c in book.calls.values()} == one["expect"]["states"], number
