"""An incoming call while the app is in the background (issue 13): on the phone app a notification
through the service worker says who calls, with Answer and Decline buttons; on a computer the page's
own `Notification` does; either goes away as soon as the call stops ringing there. The caller is a
terminal (`lockstep call`, aiortc); the permission, `showNotification` and `getNotifications()` are
Chromium's own (headless Chromium shows every page as visible, so the test hides the page as HIDEABLE
explains)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from call_pages import linked_browser
from webmsg_helpers import HIDEABLE, TIMEOUT, cli_primary, send_text, shown_once, start_chat

from fake_camera import Phone
from lockstep_cli import IN_A_CALL, running
from phone_linking import app_url, create_account

pytestmark = pytest.mark.browser

CALL_NOTIFICATIONS = """
async () => {
  const registration = await navigator.serviceWorker.ready;
  return (await registration.getNotifications())
    .filter((n) => n.tag.startsWith("call:"))
    .map((n) => ({ title: n.title, body: n.body, actions: n.actions.map((a) => a.action),
                   sticky: n.requireInteraction }));
}
"""


def test_an_incoming_call_in_the_background_notifies_and_the_notification_goes_when_it_stops_ringing(
    server_process, small_phone: Phone, tmp_path: Path
) -> None:
    url = server_process.url
    phone = small_phone.page
    phone.context.grant_permissions(["notifications"], origin=app_url(url).removesuffix("/app"))
    phone.add_init_script(HIDEABLE)
    create_account(small_phone, url, "alice", "Alice")
    phone.wait_for_function("navigator.serviceWorker.controller !== null", timeout=TIMEOUT)
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    start_chat(phone, "@bob")
    send_text(phone, "call me")

    # Bob calls while Alice's app is in the background.
    phone.evaluate("window.lockstepTestSetHidden(true)")
    with running("call", "alice", "--state", str(bob.primary), env=IN_A_CALL) as calling:
        [shown] = shown_once(phone, CALL_NOTIFICATIONS, lambda shown: len(shown) == 1)
        assert shown == {
            "title": "Incoming voice call",
            "body": "Bob",
            "actions": ["answer", "decline"],
            "sticky": True,
        }, shown
        # Alice comes back and declines on the ringing screen: the notification goes with the ringing.
        phone.evaluate("window.lockstepTestSetHidden(false)")
        phone.get_by_test_id("call-decline").click()
        shown_once(phone, CALL_NOTIFICATIONS, lambda shown: shown == [])
        out, err = calling.communicate(timeout=30)
    assert "declined" in (out + err).lower(), (out, err)


# A computer's page has no service worker: it notifies with the page's own `Notification`, which keeps
# no list to read back, so the test records what the page made of it (and the real one still shows).
RECORD_PAGE_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.lockstepTestNotifications = [];
  window.Notification = class extends Real {
    constructor(title, options = {}) {
      super(title, options);
      this.entry = { title, body: options.body ?? "", tag: options.tag ?? "", open: true };
      window.lockstepTestNotifications.push(this.entry);
    }
    close() {
      this.entry.open = false;
      super.close();
    }
  };
})();
"""


def test_a_computer_notifies_an_incoming_call_with_the_pages_notification_and_closes_it_when_declined(
    server_process, call_browser: Any, page_errors: Any, tmp_path: Path
) -> None:
    url = server_process.url
    alice = cli_primary(url, tmp_path / "alice", "alice", "Alice")
    bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
    laptop = linked_browser(call_browser, page_errors, url, alice.primary, tmp_path / "qr.png")
    laptop.context.grant_permissions(["notifications"], origin=url)
    laptop.context.add_init_script(HIDEABLE)
    laptop.context.add_init_script(RECORD_PAGE_NOTIFICATIONS)
    laptop.reload()
    start_chat(laptop, "bob")
    send_text(laptop, "call me")

    laptop.evaluate("window.lockstepTestSetHidden(true)")
    with running("call", "alice", "--state", str(bob.primary), env=IN_A_CALL) as calling:
        [shown] = shown_once(laptop, "window.lockstepTestNotifications", lambda shown: len(shown) == 1)
        assert (shown["title"], shown["body"], shown["open"]) == ("Incoming voice call", "Bob", True)
        assert shown["tag"].startswith("call:")
        laptop.evaluate("window.lockstepTestSetHidden(false)")
        laptop.get_by_test_id("call-decline").click()
        shown_once(laptop, "window.lockstepTestNotifications", lambda shown: not shown[0]["open"])
        out, err = calling.communicate(timeout=30)
    assert "declined" in (out + err).lower(), (out, err)
