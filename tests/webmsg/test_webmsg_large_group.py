"""A group of 300 Python devices and a browser companion (issue 15): the key share no longer fits one
request, so it goes in several, and one-time keys are claimed per request (messaging.md §6.3).

The group is made by the account whose laptop is the browser. The first message (with the key share), a
rotation after a member's laptop is unlinked, and a message after the browser removed a member each reach
every device exactly once, the browser included; then the browser sends its own key share and message to
every Python device, removes another member and sends again under a new group session. The server's send
limit refuses some requests of each sender on the way: each refusal leaves the rest to a retry that
duplicates nothing, and no one-time key is spent on a refused request. The browser's member list shows
MEMBER_ROWS of the 260 members and finds the others by search.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from webmsg_helpers import message, open_chat

from group_of_devices import (
    Devices,
    LoopThread,
    Person,
    approve_browser,
    limits,
    load,
    make_people,
    opened,
)
from lockstep.client.errors import ServerRefused
from lockstep.client.messaging.records import Received, new_message_id
from lockstep.client.messenger import Kind, Messenger
from lockstep.client.primary import PrimarySession
from lockstep.server.errors import ErrorCode
from lockstep.server.services import Services
from lockstep.server.store import Store, sqlite_url
from lockstep_servers import FakeClock, serving
from phone_linking import TIMEOUT, open_companion

pytestmark = pytest.mark.browser

GROUP_DEVICES = 300
"""Python devices in the group, the sender's phone included; the browser comes on top."""
LAPTOPS = 40
MEMBERS = GROUP_DEVICES - LAPTOPS - 1  # 259 accounts besides the sender's: over the old limit of 256
SENDS_PER_MINUTE = 4
"""The server's send limit here: a key share to 300 devices takes 7 requests, so some are refused."""
NAME = "Everyone"
MEMBER_ROWS = 50
"""Members the browser's group panel lists at once (web/src/messenger/groupPanel.ts)."""
T = TypeVar("T")


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()


def copies(received: list[Received], message_id: str) -> int:
    return sum(1 for m in received if m.message_id == message_id)


class Group:
    """The server, the sender and 299 other Python devices, driven from the loop thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clock = FakeClock()
        self.services = Services(
            origin="",
            store=Store.for_url(sqlite_url(root / "lockstep.sqlite3")),
            media_dir=root / "media",
            limits=limits(registrations=100_000, link_start=100_000, sends=SENDS_PER_MINUTE),
        )
        self.services.clock, self.services.sleep = self.clock, self.clock.sleep
        self.stack = contextlib.AsyncExitStack()
        self.refused = 0
        self.group_id = ""

    async def start(self) -> str:
        url = await self.stack.enter_async_context(serving(self.services))
        (self.alice,) = await make_people(url, self.root, ["alice"], laptops=0)
        self.members = await make_people(url, self.root, [f"member{i}" for i in range(MEMBERS)], LAPTOPS)
        return url

    async def link_browser(self, person: Person, qr: Path) -> None:
        await approve_browser(person.phone, qr, self.services.origin)

    async def open_devices(self) -> None:
        self.receivers = [d for m in self.members for d in m.devices]
        assert len(self.receivers) + 1 == GROUP_DEVICES
        self.devices: Devices = await self.stack.enter_async_context(
            opened([self.alice.phone, *self.receivers])
        )
        self.sender: Messenger = self.devices.open[self.alice.phone]
        await self.devices.receive_until(self.receivers, lambda got: True, wait=0)  # laptops get history

    async def keys_left(self) -> dict[str, int | None]:
        """One-time keys left on the server for each device of every member, the browser's included."""
        accounts = [load(m.phone).account.account_id for m in self.members]
        devices = await self.services.store.devices_of(accounts, with_keys=True)
        return {d: await self.services.store.one_time_keys_left(d) for ids in devices.values() for d in ids}

    async def retrying(self, send: Callable[[], Awaitable[T]]) -> T:
        """Send; while the server says the sender sent too much, wait a (fake) minute and retry."""
        while True:
            try:
                return await send()
            except ServerRefused as error:
                if error.code != ErrorCode.RATE_LIMITED:
                    raise
                self.refused += 1
                self.clock.advance(60_000)

    async def send(self, kind: Kind, body: dict[str, Any]) -> str:
        message_id = new_message_id()  # one logical message, however many attempts it takes
        await self.retrying(lambda: self.sender.send_group(self.group_id, kind, body, message_id=message_id))
        return message_id

    async def everyone_gets_once(self, message_id: str, text: str | None, left: Sequence[Path] = ()) -> None:
        """Every receiving device gets the message exactly once; devices in ``left`` not at all."""
        got = await self.devices.receive_until(self.receivers, lambda got: copies(got, message_id) > 0)
        assert all(copies(got[d], message_id) == 1 for d in self.receivers), "each device, once"
        assert all(m.text == text for d in self.receivers for m in got[d] if m.message_id == message_id)
        if left:
            late = await self.devices.receive_until(left, lambda got: False, wait=1)
            assert all(copies(late[d], message_id) == 0 for d in left)

    async def first_message(self) -> str:
        """The browser's account makes the group (so the browser may remove members); Alice writes first."""
        admin = self.devices.open[self.members[LAPTOPS].phone]
        others = [self.alice, *(m for m in self.members if m is not self.members[LAPTOPS])]
        accounts = [load(m.phone).account.account_id for m in others]
        created = await self.retrying(
            lambda: admin.session.connection.request("groups.create", members=accounts)
        )
        self.group_id = created["group_id"]
        self.sender.store.group_names[self.group_id] = NAME
        before = await self.keys_left()
        info = await self.send(Kind.GROUP_INFO, {"group_id": self.group_id, "name": NAME})
        assert self.refused, "the key share should have met the send limit"
        got = await self.devices.receive_until(self.receivers, lambda got: copies(got, info) > 0)
        assert all(copies(got[d], info) == 1 for d in self.receivers), (
            "each device gets the first message once"
        )
        after = await self.keys_left()
        assert len(before) == GROUP_DEVICES  # 299 Python devices and the browser
        spent = {d: (before[d] or 0) - (after[d] or 0) for d in before}
        assert set(spent.values()) == {1}, f"one key per device, none spent on a refused request: {spent}"
        first = "the first message"
        await self.everyone_gets_once(await self.send(Kind.TEXT, {"text": first}), first)
        return first

    async def rotation(self) -> str:
        unlinked = self.members[0]
        assert unlinked.laptop is not None
        laptop_id = load(unlinked.laptop).device_id
        await self.devices.close(unlinked.laptop)
        primary = await PrimarySession.open(load(unlinked.phone))
        await primary.unlink(laptop_id)
        await primary.close()
        self.receivers.remove(unlinked.laptop)
        session = self.sender.store.groups.session_id(self.group_id)
        text = "after the rotation"
        await self.everyone_gets_once(await self.send(Kind.TEXT, {"text": text}), text)
        assert self.sender.store.groups.session_id(self.group_id) != session
        return text

    async def removed_in_the_browser(self, removed: Person) -> str:
        """The browser removed ``removed``: Alice's next message reaches everyone else once, not them."""
        self.receivers = [d for d in self.receivers if d not in removed.devices]
        text = "after the removal"
        await self.everyone_gets_once(await self.send(Kind.TEXT, {"text": text}), text, left=removed.devices)
        return text

    async def advance_a_minute(self) -> None:
        self.clock.advance(60_000)

    async def python_keys_left(self) -> dict[Path, int | None]:
        devices = [self.alice.phone, *self.receivers]
        return {d: await self.services.store.one_time_keys_left(load(d).device_id) for d in devices}

    async def everyone_gets_from_the_browser(
        self,
        text: str,
        before: dict[Path, int | None],
        *,
        left: Sequence[Path] = (),
        new_sessions: bool = True,
    ) -> None:
        """Every Python device gets ``text`` from the browser once (``left`` not at all); one-time keys are
        spent only for devices the browser begins a session with, one each, and none on a refused request."""
        devices = [self.alice.phone, *self.receivers]
        got = await self.devices.receive_until(devices, lambda got: any(m.text == text for m in got))
        assert all(sum(1 for m in got[d] if m.text == text) == 1 for d in devices), "each device, once"
        if left:
            late = await self.devices.receive_until(left, lambda got: False, wait=1)
            assert not any(m.text == text for d in left for m in late[d])
        after = await self.python_keys_left()
        spent = {d: (before[d] or 0) - (after[d] or 0) for d in devices}
        # One key for each device the browser had no Olm session with: not the sender's phone nor its own
        # account's phone, whose messages it has read (their sessions serve it back).
        answered = {self.alice.phone, self.members[LAPTOPS].phone}
        assert {spent[d] for d in devices if d in answered or not new_sessions} == {0}
        if new_sessions:
            assert {spent[d] for d in devices if d not in answered} == {1}, "none spent on a refused request"

    def browser_sessions(self, devices: Sequence[Path]) -> dict[Path, int]:
        """How many group sessions each device holds from the browser (from anyone but Alice's phone)."""
        alice = load(self.alice.phone).device_id
        return {
            d: len({s for sender, s in self.devices.open[d].store.groups.inbound if sender != alice})
            for d in devices
        }


def remove_in_the_panel(page: Any, person: Person, members: int) -> None:
    """Remove ``person`` in the group panel: MEMBER_ROWS of the ``members`` are listed; a search finds any."""
    panel = page.get_by_test_id("group-panel")
    if not panel.locator("details").evaluate("(details) => details.open"):
        panel.locator("summary").click()
    panel.get_by_test_id("group-member-search").fill("")
    panel.get_by_test_id("group-members-more").filter(has_text=f"{members - MEMBER_ROWS} more").wait_for()
    assert panel.get_by_test_id("group-member").count() == MEMBER_ROWS
    panel.get_by_test_id("group-member-search").fill(f"@{person.handle}")
    member = panel.get_by_test_id("group-member").filter(has_text=f"(@{person.handle})")
    member.get_by_test_id("group-remove").click(timeout=TIMEOUT)
    member.wait_for(state="detached", timeout=TIMEOUT)


def send_from_the_browser(page: Any, group: Group, loop: LoopThread, text: str) -> int:
    """Send ``text`` from the browser's composer; while the server refuses (its send limit), let a (fake)
    minute pass and click Retry. How many times it was refused."""
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer-send").click()
    sent = message(page, text)
    settled = 'xpath=self::*[@data-status="sent" or @data-status="delivered" or @data-status="read"]'
    refused = 0
    for _ in range(20):  # sent, or failed with Retry offered (a Retry clicked leaves it failed meanwhile)
        sent.locator(f'{settled} | self::*[.//*[@data-testid="retry"]]').wait_for(timeout=TIMEOUT)
        if sent.get_attribute("data-status") != "failed":
            break
        refused += 1
        loop.run(group.advance_a_minute())
        sent.get_by_test_id("retry").click()
    assert sent.get_attribute("data-status") in ("sent", "delivered", "read")
    return refused


def shown_once(page: Any, text: str) -> None:
    """The browser shows ``text`` in the open chat, once (also a moment later)."""
    message(page, text).wait_for(timeout=TIMEOUT)
    page.wait_for_timeout(500)
    assert message(page, text).count() == 1


@pytest.mark.timeout(900)  # 260 accounts, 40 links, 300 open devices and a browser: 1-6 min on 2 shared cores
def test_a_group_of_300_devices_and_a_browser_get_each_message_exactly_once(
    loop: LoopThread, computer: Any, tmp_path: Path
) -> None:
    group = Group(tmp_path)
    try:
        url = loop.run(group.start())
        browser = open_companion(computer, url)
        browser.get_by_test_id("qr").screenshot(path=str(tmp_path / "qr.png"))
        loop.run(group.link_browser(group.members[LAPTOPS], tmp_path / "qr.png"))  # a phone-only member
        browser.get_by_test_id("messenger").wait_for(timeout=TIMEOUT)
        loop.run(group.open_devices())

        first = loop.run(group.first_message())
        open_chat(browser, NAME)
        shown_once(browser, first)
        shown_once(browser, loop.run(group.rotation()))
        members = len(group.members) + 1  # and Alice
        remove_in_the_panel(browser, group.members[1], members)
        shown_once(browser, loop.run(group.removed_in_the_browser(group.members[1])))

        # The browser sends: its own key share to every Python device, past the same send limit.
        before = loop.run(group.python_keys_left())
        assert send_from_the_browser(browser, group, loop, "from the browser")
        loop.run(group.everyone_gets_from_the_browser("from the browser", before))

        # The browser removes another member: its next message goes under a new session, to the rest only.
        removed = group.members[2]
        remove_in_the_panel(browser, removed, members - 1)
        group.receivers = [d for d in group.receivers if d not in removed.devices]
        before = loop.run(group.python_keys_left())
        send_from_the_browser(browser, group, loop, "after the browser removed a member")
        loop.run(
            group.everyone_gets_from_the_browser(
                "after the browser removed a member", before, left=removed.devices, new_sessions=False
            )
        )
        assert set(group.browser_sessions([group.alice.phone, *group.receivers]).values()) == {2}
        assert set(group.browser_sessions(removed.devices).values()) == {1}
        assert [message(browser, t).count() for t in (first, "after the rotation")] == [1, 1]
    finally:
        loop.run(group.stack.aclose())
