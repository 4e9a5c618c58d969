"""Every device of the callee rings, and how a ringing call ends, in real Chromium with real media
(docs/protocol/messaging.md §14.3-14.6): the first answer wins, a decline on one device declines on all,
a callee in a call answers "busy", and nobody answering for 45 s leaves a missed call on every device.

The module shares one server, four linked pages and their accounts: alice's laptop, bob's laptop and
tablet, carol's laptop. Each test starts from idle call screens and leaves them idle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from call_pages import (
    assert_audio_both_ways,
    call_status,
    dismiss_call_screen,
    linked_browser,
    on_loopback,
    record_states,
    shown_states,
    when,
)
from webmsg_helpers import TIMEOUT, cli_primary, open_chat, start_chat

from lockstep_cli import lockstep_ok
from lockstep_servers import ServerProcess

pytestmark = pytest.mark.browser


@dataclass(frozen=True)
class People:
    server: ServerProcess
    alice: Any
    """Alice's laptop, on Playwright's clock (real speed until a test moves it)."""
    bob_laptop: Any
    bob_tablet: Any
    carol: Any
    bob_primary: Any

    @property
    def pages(self) -> tuple[Any, ...]:
        return (self.alice, self.bob_laptop, self.bob_tablet, self.carol)


@pytest.fixture(scope="module")
def people(
    module_server: ServerProcess,
    calling_browser: Any,
    module_page_errors: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> People:
    folder = tmp_path_factory.mktemp("people")
    url = module_server.url
    alice, bob, carol = (cli_primary(url, folder / h, h, h.title()) for h in ("alice", "bob", "carol"))

    def linked(primary: Any, name: str, *, fake_clock: bool = False) -> Any:
        return linked_browser(
            calling_browser, module_page_errors, url, primary, folder / f"{name}.png", fake_clock=fake_clock
        )

    people = People(
        module_server,
        linked(alice.primary, "alice", fake_clock=True),
        linked(bob.primary, "bob-laptop"),
        linked(bob.primary, "bob-tablet"),
        linked(carol.primary, "carol"),
        bob.primary,
    )
    start_chat(people.alice, "bob")
    start_chat(people.carol, "bob")
    return people


@pytest.fixture(autouse=True)
def idle(people: People) -> Iterator[People]:
    record_states(*people.pages)
    yield people
    dismiss_call_screen(*people.pages)


def entry_on_every_device(pages: tuple[Any, ...], peer_names: tuple[str, ...], text: str) -> None:
    """The call's line is in the conversation on each page (each opened on the chat with its peer)."""
    for page, peer in zip(pages, peer_names, strict=True):
        open_chat(page, peer)
        page.get_by_test_id("message").filter(has_text=text).first.wait_for(timeout=TIMEOUT)


def test_every_device_of_the_callee_rings_the_first_answer_wins_and_video_flows_both_ways(
    people: People,
) -> None:
    alice, bob_laptop, bob_tablet = people.alice, people.bob_laptop, people.bob_tablet
    alice.get_by_test_id("call-video").click()
    for page in (bob_laptop, bob_tablet):  # both of bob's browsers ring, with who is calling
        when(page, "ringing-in")
        assert page.get_by_test_id("call-peer").inner_text() == "Alice"
        assert call_status(page) == "Incoming video call"
    # A second press while the microphone starts is ignored.
    bob_laptop.get_by_test_id("call-answer").dblclick()
    answered = when(alice, "connecting")  # the answer reached the caller ...
    stopped = when(bob_tablet, "elsewhere")  # ... and, through the same fan-out, bob's other browser
    assert stopped - answered < 1000
    assert call_status(bob_tablet) == "Answered on another device"
    for page in (alice, bob_laptop):
        when(page, "connected")
    alice.wait_for_timeout(3000)
    for page in (alice, bob_laptop):
        measured = assert_audio_both_ways(page)
        for kind in ("audio", "video"):
            assert measured["outbound"][kind]["packets"] > 20, measured
            assert measured["inbound"][kind]["packets"] > 20, measured
        assert measured["inbound"]["video"]["frames"] > 10, measured
        assert measured["inbound"]["video"]["width"] > 0, measured
        assert on_loopback(measured["pair"]), measured
    assert alice.get_by_test_id("call-peer").inner_text() == "Bob"

    alice.get_by_test_id("call-hangup").click()
    for page in (alice, bob_laptop, bob_tablet):
        when(page, "ended")
    entry_on_every_device((alice, bob_laptop, bob_tablet), ("Bob", "Alice", "Alice"), "video call, ")
    assert "video call, " in lockstep_ok("receive", "--state", str(people.bob_primary), "--wait", "3")


def test_a_decline_on_one_device_declines_on_every_device_and_the_caller_hears_declined(
    people: People,
) -> None:
    alice, bob_laptop, bob_tablet = people.alice, people.bob_laptop, people.bob_tablet
    alice.get_by_test_id("call-voice").click()
    for page in (bob_laptop, bob_tablet):
        when(page, "ringing-in")
    bob_tablet.get_by_test_id("call-decline").click()
    for page in (alice, bob_laptop, bob_tablet):
        when(page, "ended")
    assert call_status(alice) == "Bob: voice call, declined"
    assert call_status(bob_laptop) == call_status(bob_tablet) == "Alice: voice call, declined"
    assert "connecting" not in shown_states(alice) + shown_states(bob_laptop)
    entry_on_every_device((alice, bob_laptop, bob_tablet), ("Bob", "Alice", "Alice"), "voice call, declined")


def test_a_callee_already_in_a_call_answers_busy_and_the_caller_sees_it(people: People) -> None:
    alice, bob_laptop, bob_tablet, carol = people.alice, people.bob_laptop, people.bob_tablet, people.carol
    alice.get_by_test_id("call-voice").click()
    when(bob_laptop, "ringing-in")
    bob_laptop.get_by_test_id("call-answer").click()
    when(bob_laptop, "connected")
    when(bob_tablet, "elsewhere")

    carol.get_by_test_id("call-voice").click()  # bob's laptop is in a call: it answers busy
    when(carol, "ended")
    assert call_status(carol) == "Bob: voice call, busy"
    assert "connecting" not in shown_states(carol)
    # Alice's call goes on undisturbed, and carol's chat keeps the busy call.
    assert bob_laptop.get_by_test_id("call-screen").get_attribute("data-state") == "connected"
    assert_audio_both_ways(bob_laptop)
    entry_on_every_device((carol,), ("Bob",), "voice call, busy")
    alice.get_by_test_id("call-hangup").click()
    for page in (alice, bob_laptop, bob_tablet):
        when(page, "ended")


def call_entries(page: Any, handle: str) -> list[str]:
    start_chat(page, handle)  # opens the chat, whether or not an earlier test left one
    entries = page.get_by_test_id("message").filter(has_text="call")
    return [str(text) for text in entries.all_inner_texts()]


def test_both_dial_each_other_at_the_same_moment_and_end_up_in_one_call(people: People) -> None:
    """Glare (§14.9): each press is timed by the page itself, 300 ms after the test asks, so both
    offers leave before either arrives; the call with the lower id goes on, the other gives way."""
    alice, bob_laptop, bob_tablet = people.alice, people.bob_laptop, people.bob_tablet
    before = {
        page: len(call_entries(page, handle)) for page, handle in ((alice, "bob"), (bob_laptop, "alice"))
    }
    press = "() => setTimeout(() => document.querySelector('[data-testid=call-voice]').click(), 300)"
    alice.evaluate(press)
    bob_laptop.evaluate(press)
    for page in (alice, bob_laptop):
        when(page, "connected")
    when(bob_tablet, "elsewhere")
    alice.wait_for_timeout(1500)
    for page in (alice, bob_laptop):
        assert_audio_both_ways(page)
        assert "ended" not in shown_states(page), shown_states(page)  # no call failed, busy or declined
    bob_laptop.get_by_test_id("call-hangup").click()
    for page in (alice, bob_laptop, bob_tablet):
        when(page, "ended")
    for page, handle in ((alice, "bob"), (bob_laptop, "alice")):  # one entry for the one call
        start_chat(page, handle)
        page.get_by_test_id("message").filter(has_text="call").nth(before[page]).wait_for()
        added = call_entries(page, handle)[before[page] :]
        assert len(added) == 1 and "voice call, " in added[0] and "replaced" not in added[0], added


def test_a_call_nobody_answers_for_45_seconds_is_a_missed_call_on_every_device(people: People) -> None:
    """Alice's laptop runs on Playwright's clock: moving it 46 s on fires the caller's own ring timer,
    which sends the hang-up ``no-answer`` over the real server that ends the ringing everywhere."""
    alice, bob_laptop, bob_tablet = people.alice, people.bob_laptop, people.bob_tablet
    alice.get_by_test_id("call-voice").click()
    for page in (bob_laptop, bob_tablet):
        when(page, "ringing-in")
    alice.wait_for_timeout(500)
    assert "ended" not in shown_states(alice) + shown_states(bob_laptop)  # still ringing: no early end
    alice.clock.fast_forward(46_000)
    for page in (alice, bob_laptop, bob_tablet):
        when(page, "ended")
    assert call_status(alice) == "Bob: voice call, no answer"
    assert call_status(bob_laptop) == call_status(bob_tablet) == "Alice: missed voice call"
    entry_on_every_device((alice,), ("Bob",), "voice call, no answer")
    entry_on_every_device((bob_laptop, bob_tablet), ("Alice", "Alice"), "missed voice call")
