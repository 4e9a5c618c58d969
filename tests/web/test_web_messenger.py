"""The browser messenger against a lying server (the companion page, /ws scripted by the test).

Contacts come from `accounts.lookup`; the messenger must refuse, before anything is sent, a device whose
key bundle is not signed by its entry in the primary-signed device list, a look-up answered with another
account than the pinned one (trust on first use), and a device list older than one it has seen
(rollback). Accounts and bundles are made by the Python code (lockstep.link, lockstep.e2e.keys), and
what the browser publishes is checked by it, so both implementations agree on the key formats.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.e2e.envelope import Kind, MessageEnvelope
from lockstep.e2e.keys import DeviceKeys, OneTimeKey
from lockstep.e2e.olm import OlmCiphertext, OlmDevice, OlmType
from lockstep.link.devices import DeviceEntry, DeviceList, Role
from lockstep.link.encoding import b64u_decode, b64u_encode, key_id
from lockstep.link.envelope import Envelope
from lockstep.link.grant import AccountInfo

from .fake_linking import Primary, link_page
from .fake_lockstep import FakeServer, now_ms

pytestmark = pytest.mark.browser


class Contact:
    """Another account, as accounts.lookup describes it (one keyed primary device)."""

    def __init__(self, handle: str) -> None:
        self.account_key = Ed25519PrivateKey.generate()
        self.device_key = Ed25519PrivateKey.generate()
        public = self.account_key.public_key().public_bytes_raw()
        self.account = AccountInfo(key_id(public), handle, handle.title(), public)
        entry = DeviceEntry.new(
            self.device_key.public_key().public_bytes_raw(), Role.PRIMARY, "Phone", now_ms()
        )
        self.devices = DeviceList(self.account.account_id, 1, now_ms(), (entry,))

    def lookup(self, *, bundle_signer: Ed25519PrivateKey | None = None) -> dict[str, Any]:
        device_id = self.devices.primary.device_id
        keys = DeviceKeys(
            self.account.account_id, device_id, secrets.token_bytes(32), secrets.token_bytes(32), now_ms()
        )
        return {
            "account": self.account.to_json(),
            "device_list": self.devices.sign(self.account_key).to_json(),
            "device_keys": {device_id: keys.seal(bundle_signer or self.device_key).to_json()},
        }


def linked_companion(page: Any, fake_server: FakeServer, static_origin: str) -> Primary:
    fake_server.replies.setdefault("keys.upload", lambda conn, req: {"one_time_keys_left": 50})
    fake_server.replies["messages.fetch"] = lambda conn, req: {"messages": [], "more": False}
    fake_server.replies["groups.list"] = lambda conn, req: {"groups": []}
    primary, _code = link_page(page, fake_server, static_origin)
    page.get_by_test_id("messenger").wait_for(state="visible")
    fake_server.wait_until(lambda: "messages.fetch" in fake_server.last.ops(), what="the messenger's fetch")
    return primary


def new_chat(page: Any, handle: str) -> None:
    if not page.get_by_test_id("new-chat-handle").is_visible():  # still open after a refusal
        page.get_by_test_id("new-chat").click()
    page.get_by_test_id("new-chat-handle").fill(handle)
    page.get_by_test_id("new-chat-start").click()


def refused(page: Any, words: str) -> None:
    page.get_by_test_id("messenger-error").filter(has_text=words).wait_for(state="visible")


def test_the_messenger_refuses_forged_keys_swapped_accounts_and_rollback(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    linked_companion(page, fake_server, static_origin)
    bob = Contact("bob")

    # A bundle signed by a key that is not bob's listed device key: refused, no chat.
    forger = Ed25519PrivateKey.generate()
    fake_server.replies["accounts.lookup"] = lambda conn, req: bob.lookup(bundle_signer=forger)
    new_chat(page, "bob")
    refused(page, "has keys that do not verify")
    assert page.get_by_test_id("chat-row").count() == 0

    # The genuine account: the chat opens, and @bob is pinned to this account.
    fake_server.replies["accounts.lookup"] = lambda conn, req: bob.lookup()
    new_chat(page, "bob")
    page.get_by_test_id("conversation").wait_for(state="visible")
    assert "@bob" in page.get_by_test_id("chat-row").inner_text()

    # The server now answers for @bob (pinned: looked up by account id) with another account: refused.
    impostor = Contact("bob")
    fake_server.replies["accounts.lookup"] = lambda conn, req: impostor.lookup()
    new_chat(page, "bob")
    refused(page, "answered a look-up with another account")
    lookups = [r for r in fake_server.last.requests if r["op"] == "accounts.lookup"]
    assert lookups[-1]["account_id"] == bob.account.account_id

    # Bob's list moved to version 2; a server that later serves version 1 again is refused.
    bob.devices = DeviceList(bob.account.account_id, 2, now_ms(), bob.devices.devices)
    fake_server.replies["accounts.lookup"] = lambda conn, req: bob.lookup()
    new_chat(page, "bob")
    page.get_by_test_id("new-chat-handle").wait_for(state="hidden")  # accepted: the form closes
    assert page.get_by_test_id("messenger-error").is_hidden()
    bob.devices = DeviceList(bob.account.account_id, 1, now_ms(), bob.devices.devices)
    new_chat(page, "bob")
    refused(page, "older device list")

    assert "messages.send" not in fake_server.last.ops()
    assert page.get_by_test_id("chat-row").count() == 1


def test_the_browser_publishes_a_signed_bundle_and_replenishes_one_time_keys(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    """What the browser uploads verifies with the Python code: its bundle under the device list, every
    one-time key under the bundle's signing key; `keys.low` makes it top the server up to 50."""
    primary = linked_companion(page, fake_server, static_origin)
    first = next(r for r in fake_server.last.requests if r["op"] == "keys.upload")
    fake_server.replies["keys.upload"] = lambda conn, req: {
        "one_time_keys_left": 5 + len(req.get("one_time_keys", []))
    }
    fake_server.last.send({"event": "keys.low", "one_time_keys_left": 5})
    fake_server.wait_until(
        lambda: any(r["op"] == "keys.upload" and r.get("one_time_keys") for r in fake_server.last.requests),
        what="new one-time keys",
    )
    uploads = [r for r in fake_server.last.requests if r["op"] == "keys.upload"]
    fresh = next(r for r in uploads if r.get("one_time_keys"))
    assert all(r["bundle"] == first["bundle"] for r in uploads)  # the same bundle bytes every time

    devices = primary.devices
    device_id = next(d.device_id for d in devices.devices if d.role is Role.COMPANION)
    keys = DeviceKeys.verify(Envelope.from_json(first["bundle"]), devices, device_id)
    fallback = OneTimeKey.from_json(first["fallback_key"])
    assert fallback.fallback
    fallback.verify(keys.signing_key)
    one_time = [OneTimeKey.from_json(k) for k in fresh["one_time_keys"]]
    assert len(one_time) == 45 and len({k.key_id for k in one_time}) == 45
    for key in one_time:
        assert not key.fallback
        key.verify(keys.signing_key)


def test_garbled_copies_are_shown_as_undecryptable_and_the_queue_moves_on(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    linked_companion(page, fake_server, static_origin)
    acks: list[int] = []

    def ack(conn: Any, request: dict[str, Any]) -> dict[str, Any]:
        acks.append(request["up_to"])
        return {"deleted": 1}

    fake_server.replies["messages.ack"] = ack
    stranger = {"account_id": "A" * 22, "device_id": "B" * 22}
    for seq, payload in (
        (1, {"type": "olm", "olm_type": 0, "sender_key": "not base64url!", "ciphertext": "AAAA"}),
        (2, {"type": "megolm", "session_id": "nope", "ciphertext": "AAAA"}),
    ):
        fake_server.last.send(
            {
                "event": "message",
                "seq": seq,
                "message_id": f"garbled-message-{seq:04d}",
                "sender": stranger,
                "group_id": "G" * 22 if payload["type"] == "megolm" else None,
                "payload": payload,
                "server_time": now_ms(),
            }
        )
    fake_server.wait_until(lambda: acks and acks[-1] == 2, what="both copies acknowledged")
    rows = page.get_by_test_id("chat-row")
    rows.first.wait_for()
    assert rows.count() == 2
    assert "could not be decrypted" in rows.first.inner_text()

    # The same message id again (a re-offer under a new sequence number) is dropped before decrypting;
    # a live copy past a gap makes the device fetch its queue from the start instead.
    fetches = fake_server.last.ops().count("messages.fetch")
    again = {"type": "olm", "olm_type": 0, "sender_key": "not base64url!", "ciphertext": "AAAA"}
    fake_server.last.send(
        {
            "event": "message",
            "seq": 3,
            "message_id": "garbled-message-0001",
            "sender": stranger,
            "group_id": None,
            "payload": again,
            "server_time": now_ms(),
        }
    )
    fake_server.wait_until(lambda: acks[-1] == 3, what="the duplicate acknowledged")
    fake_server.last.send(
        {
            "event": "message",
            "seq": 9,
            "message_id": "after-a-gap-00001",
            "sender": stranger,
            "group_id": None,
            "payload": again,
            "server_time": now_ms(),
        }
    )
    fake_server.wait_until(lambda: fake_server.last.ops().count("messages.fetch") > fetches, what="a fetch")
    assert acks[-1] == 3  # nothing past the gap was handled from the live event
    page.reload()
    direct = page.locator('[data-testid="chat-row"][data-conversation-id^="direct:"]')
    direct.wait_for()
    direct.click()
    page.get_by_test_id("message").first.wait_for()
    ids = [m.get_attribute("data-message-id") for m in page.get_by_test_id("message").all()]
    assert ids == ["garbled-message-0001"]  # once, after a reload too


def test_a_file_over_the_servers_limit_is_refused_before_upload(
    page: Any, fake_server: FakeServer, static_origin: str, tmp_path: Any
) -> None:
    linked_companion(page, fake_server, static_origin)
    bob = Contact("bob")
    fake_server.replies["accounts.lookup"] = lambda conn, req: bob.lookup()
    fake_server.replies["media.token"] = lambda conn, req: {
        "token": "t" * 43,
        "expires_at": now_ms() + 600_000,
        "max_bytes": 4096,
    }
    uploads: list[str] = []
    page.on("request", lambda request: request.url.endswith("/media") and uploads.append(request.method))
    new_chat(page, "bob")
    page.get_by_test_id("conversation").wait_for(state="visible")
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(5000))
    page.get_by_test_id("attach").set_input_files(str(big))
    page.get_by_test_id("draft-send").click()
    refused(page, "big.bin is too large: this server accepts up to 4 KB")
    assert uploads == [] and page.get_by_test_id("message").count() == 0
    assert page.get_by_test_id("upload-progress").is_hidden()


def test_an_older_list_of_its_own_devices_is_refused(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    """The server replays the account's list from before this companion was linked (version 1)."""
    primary = linked_companion(page, fake_server, static_origin)
    old = DeviceList(primary.account.account_id, 1, now_ms(), (primary.devices.primary,))
    assert primary.devices.version == 2
    fake_server.replies["accounts.lookup"] = lambda conn, req: {
        "account": primary.account.to_json(),
        "device_list": old.sign(primary.account_key).to_json(),
        "device_keys": {},
    }
    new_chat(page, "alice")
    refused(page, "older device list for this account")


class OlmContact(Contact):
    """A contact whose device really speaks Olm (vodozemac, through lockstep.e2e.olm.OlmDevice)."""

    def __init__(self, handle: str) -> None:
        super().__init__(handle)
        self.olm = OlmDevice.create()
        self.device_id = self.devices.primary.device_id

    def lookup(self, *, bundle_signer: Ed25519PrivateKey | None = None) -> dict[str, Any]:
        keys = self.olm.device_keys(self.account.account_id, self.device_id, now_ms())
        return {
            "account": self.account.to_json(),
            "device_list": self.devices.sign(self.account_key).to_json(),
            "device_keys": {self.device_id: keys.seal(bundle_signer or self.device_key).to_json()},
        }

    def message(self, seq: int, to: bytes, envelope: MessageEnvelope) -> dict[str, Any]:
        """A `message` event carrying ``envelope`` encrypted by this device for the key ``to``."""
        ciphertext = self.olm.encrypt(to, envelope.encode())
        return {
            "event": "message",
            "seq": seq,
            "message_id": envelope.message_id,
            "sender": {"account_id": self.account.account_id, "device_id": self.device_id},
            "group_id": None,
            "payload": {
                "type": "olm",
                "olm_type": int(ciphertext.type),
                "sender_key": b64u_encode(self.olm.identity_key),
                "ciphertext": b64u_encode(ciphertext.body),
            },
            "server_time": now_ms(),
        }


def answer_for(fake_server: FakeServer, primary: Primary, bob: OlmContact) -> None:
    """The server's look-ups (our own account: no other keyed device; bob: one) and a claim of bob's key."""
    own = {
        "account": primary.account.to_json(),
        "device_list": primary.publish(primary.devices),
        "device_keys": {},
    }
    fake_server.replies["accounts.lookup"] = lambda conn, req: (
        own if req.get("account_id") == primary.account.account_id else bob.lookup()
    )
    [one_time_key] = bob.olm.new_one_time_keys(1)
    fake_server.replies["keys.claim"] = lambda conn, req: {
        "devices": {bob.device_id: {"one_time_key": one_time_key.to_json()}}
    }


def test_a_sent_message_cannot_be_replaced_by_the_server_or_by_a_peer_reusing_its_id(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    """Issue 14 B.14: the server delivers garbage under the id of a message this browser sent, then the
    peer sends a valid message reusing that id. The sent text stays, also after a reload; before the fix
    it became "could not be decrypted", then the peer's words."""
    primary = linked_companion(page, fake_server, static_origin)
    bob = OlmContact("bob")
    answer_for(fake_server, primary, bob)
    sent: list[dict[str, Any]] = []
    fake_server.replies["messages.send"] = lambda conn, req: sent.append(req) or {"server_time": now_ms()}
    acks: list[int] = []
    fake_server.replies["messages.ack"] = lambda conn, req: acks.append(req["up_to"]) or {"deleted": 1}

    new_chat(page, "bob")
    page.get_by_test_id("composer").fill("I will pay you on Friday")
    page.get_by_test_id("composer-send").click()
    # Typing the text also sends a "composing" signal (messaging.md §15.5): open Alice's sends in order
    # (one Olm session) until the message itself.
    opened_sends: list[tuple[str, MessageEnvelope]] = []

    def open_next_sends() -> bool:
        for request in sent[len(opened_sends) :]:
            [payload] = request["payloads"]
            ciphertext = OlmCiphertext(OlmType(payload["olm_type"]), b64u_decode(payload["ciphertext"]))
            envelope = MessageEnvelope.decode(bob.olm.decrypt(b64u_decode(payload["sender_key"]), ciphertext))
            opened_sends.append((request["message_id"], envelope))
        return any(envelope.kind is Kind.TEXT for _, envelope in opened_sends)

    fake_server.wait_until(open_next_sends, what="the message sent")
    alice_key = b64u_decode(sent[0]["payloads"][0]["sender_key"])
    [(message_id, opened)] = [(i, envelope) for i, envelope in opened_sends if envelope.kind is Kind.TEXT]
    assert opened.body == {"text": "I will pay you on Friday"}

    def bobs(text: str, identifier: str) -> MessageEnvelope:
        return MessageEnvelope(
            Kind.TEXT,
            identifier,
            opened.conversation,
            bob.account.account_id,
            bob.device_id,
            now_ms(),
            {"text": text},
        )

    # 1. The server delivers garbage under the sent message's id.
    garbage = bob.message(1, alice_key, bobs("x", message_id))
    garbage["payload"]["ciphertext"] = b64u_encode(secrets.token_bytes(80))
    fake_server.last.send(garbage)
    # 2. Bob's device sends a valid message that reuses the id; 3. then one of its own.
    fake_server.last.send(bob.message(2, alice_key, bobs("I will never pay you", message_id)))
    fake_server.last.send(bob.message(3, alice_key, bobs("see you on Friday", "bobs-own-message-01")))
    fake_server.wait_until(lambda: acks and acks[-1] == 3, what="the three copies acknowledged")

    for _ in range(2):  # as shown now, and after a reload (what IndexedDB kept)
        page.locator('[data-testid="message"][data-message-id="bobs-own-message-01"]').wait_for()
        texts = {
            m.get_attribute("data-message-id"): m.get_by_test_id("message-text").inner_text()
            for m in page.get_by_test_id("message").all()
        }
        assert texts == {message_id: "I will pay you on Friday", "bobs-own-message-01": "see you on Friday"}
        page.reload()
        page.locator('[data-testid="chat-row"]').first.click()


def test_on_a_full_server_disk_the_browser_still_fetches_and_says_why_a_send_failed(
    page: Any, fake_server: FakeServer, static_origin: str
) -> None:
    """Issue 14 A.12: keys.upload refused with storage_full does not stop the fetch of what is waiting
    (linked_companion waits for it); a refused send shows the plain-words reason; the automatic
    receipt is marked as one, so the server does not take it for a conversation (SECURITY.md)."""
    full = ("storage_full", "the server's disk is full, so nothing new can be saved now; try again later")
    fake_server.replies["keys.upload"] = lambda conn, req: full
    primary = linked_companion(page, fake_server, static_origin)
    bob = OlmContact("bob")
    answer_for(fake_server, primary, bob)
    sent: list[dict[str, Any]] = []
    fake_server.replies["messages.send"] = lambda conn, req: sent.append(req) or full
    fake_server.replies["messages.ack"] = lambda conn, req: {"deleted": 1}

    new_chat(page, "bob")
    page.get_by_test_id("composer").fill("hello")
    page.get_by_test_id("composer-send").click()
    failed = page.locator('[data-testid="message"][data-status="failed"]')
    failed.wait_for()
    assert "The server's disk is full" in (failed.get_by_test_id("ticks").get_attribute("title") or "")
    assert "receipt" not in sent[0]

    [payload] = sent[0]["payloads"]
    alice_key = b64u_decode(payload["sender_key"])
    opened = MessageEnvelope.decode(
        bob.olm.decrypt(
            alice_key, OlmCiphertext(OlmType(payload["olm_type"]), b64u_decode(payload["ciphertext"]))
        )
    )
    reply = MessageEnvelope(
        Kind.TEXT,
        "bobs-reply-000001",
        opened.conversation,
        bob.account.account_id,
        bob.device_id,
        now_ms(),
        {"text": "hi"},
    )
    fake_server.last.send(bob.message(1, alice_key, reply))
    fake_server.wait_until(lambda: any(r.get("receipt") is True for r in sent), what="a receipt")
