"""The primary app (app.html) against a scripted /ws, with a fake camera, in real Chromium.

The test plays the server (conftest.FakeServer) and the companion: it makes link codes with the Python
code (lockstep.link), shows them to the phone's camera, and opens the grants the browser seals, so the
browser's primary side is checked against the Python implementation.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fake_camera import Phone
from lockstep.link.devices import DeviceCertificate, DeviceList, Role
from lockstep.link.encoding import key_id
from lockstep.link.envelope import Context, Envelope, auth_message, verify
from lockstep.link.grant import SealedGrant, open_grant
from lockstep.link.matching import matching_number
from lockstep.link.qr import LinkCode
from lockstep.link.wording import relay_text
from phone_linking import open_settings

from .fake_lockstep import FakeConnection, FakeServer, now_ms

pytestmark = pytest.mark.browser


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Companion:
    """A companion's side of one code: what it shows and the ephemeral key that opens the grant."""

    code: LinkCode
    ephemeral: X25519PrivateKey

    @classmethod
    def make(cls, origin: str) -> Companion:
        ephemeral = X25519PrivateKey.generate()
        device = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        code = LinkCode(
            origin, os.urandom(32), ephemeral.public_key().public_bytes_raw(), device, os.urandom(32)
        )
        return cls(code, ephemeral)


@dataclass
class Account:
    """The server's view of the one account, enough to answer the app's requests (linking.md §7)."""

    origin: str
    key: bytes = b""
    device_list: dict[str, str] = field(default_factory=dict)
    inspect: dict[str, Any] = field(default_factory=dict)
    inspect_error: tuple[str, str] | None = None
    approvals: list[dict[str, Any]] = field(default_factory=list)

    def install(self, server: FakeServer) -> None:
        server.replies.update(
            {
                "account.register": self.register,
                "devices.list": self.devices,
                "link.inspect": self.link_inspect,
                "link.approve": self.approve,
                "link.decline": lambda conn, req: {},
                "devices.update": self.update,
            }
        )

    def register(self, conn: FakeConnection, request: dict[str, Any]) -> Any:
        self.key = unb64u(request["account_key"])
        device_key = unb64u(request["device_key"])
        verify(
            device_key, Context.AUTH, auth_message(conn.challenge, self.origin), unb64u(request["signature"])
        )
        devices = self.verified(request["device_list"])
        assert devices.version == 1
        assert [(d.device_key, d.role) for d in devices.devices] == [(device_key, Role.PRIMARY)]
        self.device_list = request["device_list"]
        return {"account_id": key_id(self.key), "device_id": key_id(device_key)}

    def verified(self, envelope: dict[str, str]) -> DeviceList:
        return DeviceList.verify(Envelope.from_json(envelope), self.key)

    def devices(self, conn: FakeConnection, request: dict[str, Any]) -> Any:
        listed = self.verified(self.device_list).devices
        return {
            "device_list": self.device_list,
            "devices": [{"device_id": d.device_id, "last_active": now_ms(), "online": False} for d in listed],
        }

    def link_inspect(self, conn: FakeConnection, request: dict[str, Any]) -> Any:
        return self.inspect_error or {"ref": request["ref"], **self.inspect}

    def approve(self, conn: FakeConnection, request: dict[str, Any]) -> Any:
        new = self.verified(request["device_list"])
        assert new.version == self.verified(self.device_list).version + 1
        self.approvals.append(request)
        self.device_list = request["device_list"]
        return {"device_id": new.devices[-1].device_id}

    def update(self, conn: FakeConnection, request: dict[str, Any]) -> Any:
        new = self.verified(request["device_list"])
        assert new.version == self.verified(self.device_list).version + 1
        self.device_list = request["device_list"]
        return {"unlinked": [], "renamed": []}


def context_reply(same_network: bool, age_ms: int = 4000) -> dict[str, Any]:
    now = now_ms()
    return {
        "issued_at": now - age_ms,
        "expires_at": now + 56_000,
        "server_time": now,
        "age_ms": age_ms,
        "companion": {
            "description": "Firefox 140 on Windows",
            "client": "browser",
            "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0",
            "address": "127.0.0.1" if same_network else "203.0.113.9",
            "network": {"kind": "loopback", "prefix": "127.0.0.0/8"}
            if same_network
            else {"kind": "public", "prefix": "203.0.113.0/24"},
        },
        "network": {"primary_address": "127.0.0.1", "same_network": same_network},
    }


@pytest.fixture
def setup(phone: Phone, static_origin: str, product_build: None) -> tuple[Phone, FakeServer, Account]:
    """A phone with a new account @alice, talking to the scripted server."""
    server = FakeServer(phone.page, static_origin)
    account = Account(static_origin, inspect=context_reply(same_network=True))
    account.install(server)
    page = phone.page
    page.goto(f"{static_origin}/app")
    page.get_by_test_id("handle").fill("alice")
    page.get_by_test_id("display-name").fill("Alice Liddell")
    page.get_by_test_id("create-account").click()
    page.get_by_test_id("account").wait_for()
    assert "@alice" in page.get_by_test_id("account").inner_text()
    return phone, server, account


def scan(phone: Phone, text: str) -> None:
    phone.camera.show_qr(text)
    open_settings(phone.page)
    phone.page.get_by_test_id("link-device").click()


def link(phone: Phone, companion: Companion, name: str) -> None:
    scan(phone, companion.code.to_text())
    phone.page.get_by_test_id("link-context").wait_for()
    phone.page.get_by_test_id("device-name-input").fill(name)
    phone.page.get_by_test_id("link-approve").click()
    phone.page.get_by_test_id("link-success").wait_for()
    phone.page.get_by_test_id("link-done").click()


def test_context_before_consent_then_a_grant_python_opens(setup: Any, static_origin: str) -> None:
    phone, server, account = setup
    page = phone.page
    account.inspect = context_reply(same_network=False, age_ms=4000)
    companion = Companion.make(static_origin)
    scan(phone, companion.code.to_text())

    # Another network: first the full-screen warning and the companion's number (linking.md §6.5).
    page.get_by_test_id("relay-warning").wait_for()
    assert relay_text("warning", address="203.0.113.9") == page.get_by_test_id("relay-text").inner_text()
    page.get_by_test_id("relay-number").fill(matching_number(companion.code))
    page.get_by_test_id("relay-continue").click()
    page.get_by_test_id("link-context").wait_for()
    assert page.get_by_test_id("scanner").is_hidden()  # camera view closed
    description = page.get_by_test_id("context-description").inner_text()
    assert description == "Firefox 140 on Windows — as the computer describes itself"
    address = page.get_by_test_id("context-address").inner_text()
    assert address == "203.0.113.9 — public internet, network 203.0.113.0/24"
    assert "different network" in page.get_by_test_id("context-network").inner_text().lower()
    assert "different network" in page.get_by_test_id("context-warning").inner_text()
    assert re.fullmatch(r"[45] seconds ago", page.get_by_test_id("context-age").inner_text())
    assert page.get_by_test_id("device-name-input").input_value() == "Firefox 140 on Windows"
    link_box = page.get_by_test_id("link-approve").bounding_box()
    decline_box = page.get_by_test_id("link-decline").bounding_box()
    assert (link_box["width"], link_box["height"]) == (decline_box["width"], decline_box["height"])
    assert page.get_by_test_id("link-approve").get_attribute("class") == page.get_by_test_id(
        "link-decline"
    ).get_attribute("class")
    inspect = next(r for r in server.last.requests if r["op"] == "link.inspect")
    assert unb64u(inspect["ref"]) == companion.code.ref
    assert account.approvals == []  # nothing links before consent

    page.get_by_test_id("device-name-input").fill("Den PC")
    page.get_by_test_id("link-approve").click()
    page.get_by_test_id("link-success").wait_for()
    assert "Den PC" in page.get_by_test_id("link-success").inner_text()

    [request] = account.approvals
    assert unb64u(request["ref"]) == companion.code.ref
    grant = open_grant(
        companion.code,
        companion.ephemeral,
        SealedGrant(unb64u(request["enc"]), unb64u(request["ciphertext"])),
    )
    assert (grant.account.handle, grant.account.display_name) == ("alice", "Alice Liddell")
    assert grant.account.account_key == account.key
    assert grant.device_name == "Den PC"
    assert grant.devices.version == 2
    assert grant.device_list.to_json() == request["device_list"]
    assert grant.certificate.to_json() == request["certificate"]
    certificate = DeviceCertificate.verify(grant.certificate, account.key)
    assert certificate.device_key == companion.code.device_key

    page.get_by_test_id("link-done").click()
    rows = page.get_by_test_id("device-row")
    rows.nth(1).wait_for()
    assert rows.count() == 2
    assert rows.nth(1).get_attribute("data-device-id") == key_id(companion.code.device_key)
    assert rows.nth(1).get_by_test_id("device-name").inner_text() == "Den PC"


def test_decline_links_nothing(setup: Any, static_origin: str) -> None:
    phone, server, account = setup
    page = phone.page
    companion = Companion.make(static_origin)
    scan(phone, companion.code.to_text())
    page.get_by_test_id("link-context").wait_for()
    assert page.get_by_test_id("context-network").inner_text() == "Same network as this phone"
    assert page.get_by_test_id("context-warning").is_hidden()
    page.get_by_test_id("link-decline").click()
    page.get_by_test_id("link-context").wait_for(state="hidden")
    server.wait_until(lambda: "link.decline" in server.last.ops(), what="link.decline")
    decline = next(r for r in server.last.requests if r["op"] == "link.decline")
    assert unb64u(decline["ref"]) == companion.code.ref
    assert account.approvals == []
    assert page.get_by_test_id("device-row").count() == 1


REFUSALS = [
    # (what the camera shows, the server's inspect error or None, words the user must read)
    ("https://example.com/", None, "not a Lockstep linking code"),
    ("FOREIGN", None, "not from your server"),
    ("TRUNCATED", None, "could not be read"),
    ("CODE", ("ref_expired", "expired"), "expired"),
    ("CODE", ("ref_used", "used"), "already used"),
    ("CODE", ("ref_unknown", "unknown"), "does not know this code"),
    ("CODE", ("rate_limited", "slow down"), "Too many attempts"),
]


def test_every_refusal_in_plain_words(setup: Any, static_origin: str) -> None:
    phone, server, account = setup
    page = phone.page
    for shown, inspect_error, words in REFUSALS:
        code = Companion.make(static_origin).code.to_text()
        text = {
            "FOREIGN": code.replace(static_origin, "https://lockstep-verify.example"),
            "TRUNCATED": code[:-20],
            "CODE": code,
        }.get(shown, shown)
        inspects_before = server.last.ops().count("link.inspect")
        account.inspect_error = inspect_error
        scan(phone, text)
        error = page.get_by_test_id("link-error")
        error.wait_for()
        assert words in error.inner_text(), (shown, error.inner_text())
        assert page.get_by_test_id("link-context").is_hidden()
        # Codes refused on the phone never reach the server.
        assert server.last.ops().count("link.inspect") == inspects_before + (inspect_error is not None)
        page.get_by_test_id("link-done").click()
    assert account.approvals == []


def test_a_fifth_companion_is_refused_on_the_phone(setup: Any, static_origin: str) -> None:
    phone, server, account = setup
    page = phone.page
    for i in range(4):
        link(phone, Companion.make(static_origin), f"Computer {i}")
    assert len(account.approvals) == 4
    scan(phone, Companion.make(static_origin).code.to_text())
    page.get_by_test_id("link-context").wait_for()
    page.get_by_test_id("link-approve").click()
    error = page.get_by_test_id("link-error")
    error.wait_for()
    assert "4 linked devices" in error.inner_text()
    assert len(account.approvals) == 4  # never asked the server
    assert server.last.ops().count("link.approve") == 4


def test_rename_and_unlink_publish_signed_lists(setup: Any, static_origin: str) -> None:
    phone, server, account = setup
    page = phone.page
    companion = Companion.make(static_origin)
    link(phone, companion, "Den PC")
    device_id = key_id(companion.code.device_key)
    row = page.locator(f'[data-testid="device-row"][data-device-id="{device_id}"]')

    row.get_by_test_id("rename").click()
    row.get_by_test_id("rename-input").fill("Office PC")
    row.get_by_test_id("rename-save").click()
    row.get_by_test_id("device-name").filter(has_text="Office PC").wait_for()
    renamed = account.verified(account.device_list)
    assert renamed.version == 3
    assert renamed.find(device_id).name == "Office PC"

    row.get_by_test_id("unlink").click()
    assert account.verified(account.device_list).version == 3  # asks first, in the page
    row.get_by_test_id("unlink-confirm").click()
    row.wait_for(state="detached")
    unlinked = account.verified(account.device_list)
    assert unlinked.version == 4
    assert unlinked.find(device_id) is None and len(unlinked.devices) == 1

    server.last.send(
        {
            "event": "devices.changed",
            "device_list": account.device_list,
            "change": {"kind": "linked", "device_id": "X" * 43, "name": "X"},
        }
    )
    notice = page.get_by_test_id("notice")
    notice.filter(has_text="New device linked: X").wait_for()


def test_primary_keys_are_stored_wrapped_and_survive_reload(setup: Any, static_origin: str) -> None:
    phone, server, account = setup
    page = phone.page

    def answer_auth(conn: FakeConnection, request: dict[str, Any]) -> Any:
        primary = account.verified(account.device_list).primary
        assert request["device_id"] == primary.device_id
        verify(
            primary.device_key,
            Context.AUTH,
            auth_message(conn.challenge, static_origin),
            unb64u(request["signature"]),
        )
        return {
            "account": {},
            "device_id": primary.device_id,
            "role": "primary",
            "device_list": account.device_list,
        }

    server.replies["auth"] = answer_auth
    keys = page.evaluate(
        """() => new Promise((resolve) => {
          const open = indexedDB.open("lockstep-primary");
          open.onsuccess = () => {
            const get = open.result.transaction("state").objectStore("state").get("current");
            get.onsuccess = () => {
              const s = get.result;
              open.result.close();
              const clearPrivateKeys = s.clearKeys.filter((k) => k.type === "private").length;
              resolve({ sealed: s.sealed, clearPrivateKeys });
            };
          };
        })"""
    )
    assert keys == {"sealed": 1, "clearPrivateKeys": 0}  # sealed; the keys are stored wrapped only
    page.reload()
    page.get_by_test_id("account").wait_for()
    server.wait_until(lambda: "auth" in server.last.ops(), what="auth after reload")
    assert "@alice" in page.get_by_test_id("account").inner_text()
    assert page.get_by_test_id("onboarding").is_hidden()
