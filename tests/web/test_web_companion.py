"""The companion page (index.html) against a scripted server, in real Chromium.

The page's /ws is answered by the test (fake_lockstep.FakeServer; the phone's side is fake_linking.py), so
rotation, idle, decline and dropped connections can be driven precisely; grants are made by the Python
primary code (lockstep.link), so this also checks the browser and Python implementations against each
other.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chromium import wait_for_no_databases
from lockstep.link.devices import DeviceEntry, Role
from lockstep.link.encoding import key_id
from lockstep.link.qr import LinkCode

from .fake_linking import Primary, answer_auth, link_page, scan, send_ref, show_and_scan, start_linking
from .fake_lockstep import FakeServer, now_ms

pytestmark = pytest.mark.browser


def test_codes_rotate_with_fresh_secrets_then_idle(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    start_linking(fake_server)
    page.goto(f"{static_origin}/")
    fake_server.wait_until(
        lambda: fake_server.connections and "link.start" in fake_server.last.ops(), what="link.start"
    )
    conn = fake_server.last
    assert next(r for r in conn.requests if r["op"] == "link.start")["client"] == "browser"

    refs = [bytes([i]) * 32 for i in range(1, 4)]
    send_ref(conn, refs[0])
    first = scan(page, static_origin, refs[0])
    assert first.origin == static_origin
    assert re.fullmatch(r"New code in (59|60) s", page.get_by_test_id("countdown").inner_text())
    assert (
        page.get_by_test_id("link-instructions")
        .inner_text()
        .startswith(
            "Open Lockstep on your phone → Linked devices → Link a device → point your phone at this screen"
        )
    )

    send_ref(conn, refs[1], index=1, ttl_ms=20_000)
    second = scan(page, static_origin, refs[1])
    assert second.link_secret != first.link_secret  # a fresh secret for every ref
    assert (second.ephemeral_key, second.device_key) == (first.ephemeral_key, first.device_key)

    send_ref(conn, refs[2], index=5, ttl_ms=20_000, last=True)
    scan(page, static_origin, refs[2])
    assert page.get_by_test_id("countdown").inner_text().startswith("This code expires in")

    conn.send({"event": "link.idle"})
    page.get_by_test_id("qr").wait_for(state="hidden")
    new_code = page.get_by_test_id("new-code")
    new_code.wait_for(state="visible")
    assert new_code.inner_text() == "Click to get a new code"
    new_code.click()
    fake_server.wait_until(lambda: conn.ops().count("link.start") == 2, what="a second link.start")
    send_ref(conn, bytes([9]) * 32)
    fresh = scan(page, static_origin, bytes([9]) * 32)
    assert fresh.device_key != first.device_key and fresh.link_secret != first.link_secret


def test_countdown_and_clock_warning_follow_the_server_clock(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    """With the server's clock an hour ahead, codes still count down from 60 s and the user is told."""
    fake_server.clock_offset_ms = 3_600_000
    start_linking(fake_server)
    page.goto(f"{static_origin}/")
    fake_server.wait_until(
        lambda: fake_server.connections and "link.start" in fake_server.last.ops(), what="link.start"
    )
    fake_server.wait_until(
        lambda: fake_server.last.ops(with_time_sync=True).count("time.sync") >= 2, what="time.sync"
    )
    send_ref(fake_server.last, bytes([1]) * 32)
    scan(page, static_origin)
    assert re.fullmatch(r"New code in (59|60) s", page.get_by_test_id("countdown").inner_text())
    warning = page.get_by_test_id("clock-warning")
    warning.wait_for()
    assert "60 minutes behind the server's" in warning.inner_text()


def test_declined_offers_a_new_code(page: Any, fake_server: FakeServer, static_origin: str) -> None:
    start_linking(fake_server)
    show_and_scan(page, fake_server, static_origin, bytes([1]) * 32)
    fake_server.last.send({"event": "link.declined"})
    page.get_by_test_id("qr").wait_for(state="hidden")
    assert "declined" in page.get_by_test_id("link-status").inner_text()
    assert page.get_by_test_id("new-code").is_visible()


def test_dropped_socket_hides_code_and_starts_a_new_session(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    start_linking(fake_server)
    old = show_and_scan(page, fake_server, static_origin, bytes([1]) * 32)

    fake_server.last.close()
    page.get_by_test_id("qr").wait_for(state="hidden", timeout=1000)
    assert page.get_by_test_id("link-status").inner_text() == "Reconnecting…"

    fake_server.wait_until(lambda: len(fake_server.connections) == 2, what="a reconnect")
    fake_server.wait_until(lambda: "link.start" in fake_server.last.ops(), what="link.start after reconnect")
    assert page.get_by_test_id("qr").is_hidden()  # nothing shown until the new session's first ref
    send_ref(fake_server.last, bytes([2]) * 32)
    new = scan(page, static_origin, bytes([2]) * 32)
    assert new.link_secret != old.link_secret and new.ephemeral_key != old.ephemeral_key


# The stored state is sealed (web/src/store/atRest.ts) and holds no private key as a CryptoKey (wrapped only).
STORED_STATE = """
() => new Promise((resolve) => {
  const open = indexedDB.open("lockstep-companion");
  open.onsuccess = () => {
    const get = open.result.transaction("state").objectStore("state").get("current");
    get.onsuccess = () => {
      const s = get.result;
      open.result.close();
      const clearPrivateKeys = s && s.clearKeys.filter((k) => k.type === "private").length;
      resolve(s && { sealed: s.sealed, clearPrivateKeys });
    };
  };
})
"""


def test_links_with_a_python_grant_stays_linked_then_is_unlinked(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    primary, code = link_page(page, fake_server, static_origin)
    linked = page.get_by_test_id("linked-account")
    linked.wait_for(state="visible")
    assert "Linked to @alice (Alice Liddell) as Work laptop" in linked.inner_text()
    assert fake_server.last.ops()[:2] == ["link.start", "auth"]  # then the messenger's keys.upload
    assert page.evaluate(STORED_STATE) == {"sealed": 1, "clearPrivateKeys": 0}

    page.reload()  # stays linked: re-authenticates with the stored key
    linked.wait_for(state="visible")
    fake_server.wait_until(lambda: fake_server.last.ops()[:1] == ["auth"], what="auth after reload")
    assert "as Work laptop" in linked.inner_text()

    other = DeviceEntry.new(
        Ed25519PrivateKey.generate().public_key().public_bytes_raw(), Role.COMPANION, "Den PC", 1
    )
    with_other = primary.devices.with_companion(other, now_ms())
    fake_server.last.send(
        {
            "event": "devices.changed",
            "device_list": primary.publish(with_other),
            "change": {"kind": "linked", "device_id": other.device_id, "name": "Den PC"},
        }
    )
    page.get_by_test_id("notice").wait_for(state="visible")
    assert page.get_by_test_id("notice").inner_text() == "New device linked: Den PC"

    without_me = primary.devices.without(key_id(code.device_key), now_ms())
    fake_server.last.send(
        {
            "event": "devices.changed",
            "device_list": primary.publish(without_me),
            "change": {"kind": "unlinked", "device_id": key_id(code.device_key), "name": "Work laptop"},
        }
    )
    page.get_by_test_id("logged-out").wait_for(state="visible")
    assert linked.is_hidden()
    assert page.evaluate("indexedDB.databases().then((dbs) => dbs.map((d) => d.name))") == []
    assert page.get_by_test_id("link-again").is_visible()


def test_unlinked_by_close_code_4001(page: Any, fake_server: FakeServer, static_origin: str) -> None:
    link_page(page, fake_server, static_origin)
    page.get_by_test_id("linked-account").wait_for(state="visible")

    fake_server.last.close(code=4001)
    page.get_by_test_id("logged-out").wait_for(state="visible")
    assert page.evaluate("indexedDB.databases().then((dbs) => dbs.length)") == 0
    page.wait_for_timeout(1500)
    assert len(fake_server.connections) == 1  # no reconnect once logged out


def test_auth_device_unknown_logs_out(page: Any, fake_server: FakeServer, static_origin: str) -> None:
    link_page(page, fake_server, static_origin)
    page.get_by_test_id("linked-account").wait_for(state="visible")

    fake_server.replies["auth"] = lambda conn, req: ("device_unknown", "no such device")
    page.reload()
    page.get_by_test_id("logged-out").wait_for(state="visible")
    assert page.evaluate("indexedDB.databases().then((dbs) => dbs.length)") == 0


def test_grant_naming_another_device_is_refused(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    """A grant that opens (right secret) but certifies someone else's device key stores nothing."""
    start_linking(fake_server)
    primary = Primary()
    code = show_and_scan(page, fake_server, static_origin)
    intruder = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    swapped = LinkCode(code.origin, code.ref, code.ephemeral_key, intruder, code.link_secret)
    fake_server.last.send({"event": "link.granted", **primary.approve(swapped, "Intruder")})

    page.get_by_test_id("new-code").wait_for(state="visible")
    assert "refused" in page.get_by_test_id("link-status").inner_text()
    assert page.get_by_test_id("linked-account").is_hidden()
    assert "auth" not in fake_server.connections[0].ops()
    # Nothing stored: only the origin's store key (web/src/store/atRest.ts), which holds no data.
    names = page.evaluate("indexedDB.databases().then((dbs) => dbs.map((d) => d.name))")
    assert names == ["lockstep-at-rest"]


# Counts, per page, the opens of a messenger database that succeeded. One tab at a time runs the messenger;
# a tab that opens its database while or after another tab wipes it blocks that wipe (the records stay after
# "logged out") or makes the database afresh (a new device's keys and records in a logged-out browser).
COUNT_MESSENGER_OPENS = """
window.messengerOpens = 0;
const open = IDBFactory.prototype.open;
IDBFactory.prototype.open = function (name, ...rest) {
  const request = open.call(this, name, ...rest);
  if (name.startsWith("lockstep-messenger-"))
    request.addEventListener("success", () => (window.messengerOpens += 1));
  return request;
};
"""


def test_other_tabs_follow_link_and_unlink(page: Any, fake_server: FakeServer, static_origin: str) -> None:
    """Tabs in one browser share the stored keys: linking one links both; unlinking logs both out, and the
    tab that waits for the messenger's lock does not open its database while or after the other wipes it."""
    page.context.add_init_script(COUNT_MESSENGER_OPENS)
    start_linking(fake_server)
    primary = Primary()
    other_tab = page.context.new_page()
    other_server = FakeServer(other_tab, static_origin)
    start_linking(other_server)
    other_tab.goto(f"{static_origin}/")
    code = show_and_scan(page, fake_server, static_origin)
    fake_server.replies["auth"] = other_server.replies["auth"] = answer_auth(primary, code, static_origin)
    fake_server.last.send({"event": "link.granted", **primary.approve(code, "Work laptop")})

    for tab in (page, other_tab):
        tab.get_by_test_id("linked-account").filter(has_text="as Work laptop").wait_for()
    fake_server.last.close(code=4001)
    for tab in (page, other_tab):
        tab.get_by_test_id("logged-out").wait_for()
    # Chromium deletes a database another tab still had open once that tab lets go: wait for it (bounded).
    wait_for_no_databases(page)
    opens = [tab.evaluate("window.messengerOpens") for tab in (page, other_tab)]
    assert sorted(opens) == [0, 1], f"messenger database opens per tab: {opens} (the tab waiting opens none)"


def test_linked_page_reauthenticates_after_a_dropped_socket(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    link_page(page, fake_server, static_origin)
    linked = page.get_by_test_id("linked-account")
    linked.wait_for()

    fake_server.last.close(code=1012)  # server restart
    page.get_by_test_id("connection-status").filter(has_text="Reconnecting").wait_for()
    assert linked.is_visible()  # still linked while away
    fake_server.wait_until(lambda: len(fake_server.connections) == 2, what="a reconnect")
    fake_server.wait_until(lambda: fake_server.last.ops()[:1] == ["auth"], what="auth on the new socket")
    page.wait_for_function("document.querySelector('[data-testid=connection-status]').textContent === ''")
    assert "as Work laptop" in linked.inner_text()
    assert page.get_by_test_id("qr").is_hidden()
