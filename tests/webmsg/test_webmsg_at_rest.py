"""Data at rest in the browser (web/src/store/atRest.ts, SECURITY.md "Data at rest on devices"): a phone
app with a persistent Chromium profile sends and receives a message with a unique plaintext; then every
file of the profile folder is searched for those plaintexts and for the private keys and ratchet secrets
the app holds. None may be found: IndexedDB holds sealed records and wrapped keys only.

The secrets to look for are read the way the app reads them, by code running in the page's origin: the
store key opens each sealed record, and wrapped keys are unwrapped as extractable to learn their bytes.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webmsg_helpers import (
    HIDEABLE,
    SHOWN_NOTIFICATIONS,
    TIMEOUT,
    cli_primary,
    message,
    open_chat,
    receive_json,
    send_cli,
    send_text,
    shown_once,
    start_chat,
)

from chromium import CHROMIUM, CHROMIUM_ARGS, PHONE, add_platform_authenticator
from fake_camera import FakeCamera, Phone
from phone_linking import app_url, create_account, open_settings

pytestmark = pytest.mark.browser

# Every sealed record of the origin, opened with the store key as messaging.md §11 describes it; returns
# the private keys (unwrapped as extractable, PKCS#8's last 32 bytes) and the ratchet secrets in them.
SECRETS = """
async () => {
  const open = (name) => new Promise((ok, fail) => {
    const r = indexedDB.open(name);
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
  const all = (db, store) => new Promise((ok, fail) => {
    const tx = db.transaction(store), s = tx.objectStore(store);
    const keys = s.getAllKeys(), values = s.getAll();
    tx.oncomplete = () => ok(keys.result.map((k, i) => [k, values.result[i]]));
    tx.onerror = () => fail(tx.error);
  });
  const b64u = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");
  const keysDb = await open("lockstep-at-rest");
  const stored = keysDb.objectStoreNames.contains("keys") ? await all(keysDb, "keys") : [];
  const storeKey = stored.length ? stored[0][1] : undefined;
  const out = { privateKeys: [], ratchetSecrets: [], sealedRecords: 0, unsealedRecords: 0 };
  out.clearPrivateKeys = 0;
  const SECRET_FIELDS = new Set(["rootKey", "chainKey", "key", "ratchet", "initialRatchet", "latestRatchet"]);
  const walk = async (value, name) => {
    if (Array.isArray(value)) { for (const item of value) await walk(item, name); return; }
    const secret = typeof value === "string" && SECRET_FIELDS.has(name) && value.length >= 40;
    if (secret) out.ratchetSecrets.push(value);
    if (typeof value !== "object" || value === null) return;
    if (value.$key) {
      const w = value.$key;
      const gcm = { name: "AES-GCM", iv: b64u(w.iv) };
      const wrapped = b64u(w.wrapped);
      const key = await crypto.subtle.unwrapKey("pkcs8", wrapped, storeKey, gcm, w.algorithm, true, w.usages);
      out.privateKeys.push(hex((await crypto.subtle.exportKey("pkcs8", key)).slice(-32)));
      return;
    }
    for (const [k, v] of Object.entries(value)) await walk(v, k);
  };
  for (const { name } of await indexedDB.databases()) {
    if (name === "lockstep-at-rest") continue;
    const db = await open(name);
    for (const store of db.objectStoreNames) {
      for (const [key, record] of await all(db, store)) {
        const sealed = record && record.sealed === 1 ? record : record && record.sealed;
        if (!sealed || sealed.sealed !== 1) { out.unsealedRecords += 1; continue; }
        out.sealedRecords += 1;
        out.clearPrivateKeys += sealed.clearKeys.filter((k) => k.type === "private").length;
        const aad = new TextEncoder().encode(`${name}/${store}/${key}`);
        const gcm = { name: "AES-GCM", iv: sealed.iv, additionalData: aad };
        const plain = await crypto.subtle.decrypt(gcm, storeKey, sealed.data);
        await walk(JSON.parse(new TextDecoder().decode(plain)), "");
      }
    }
    db.close();
  }
  return out;
}
"""


def encodings(secret: bytes) -> list[bytes]:
    """The forms a secret could take in a file: raw, hex, base64 and base64url (with and without padding)."""
    b64 = base64.b64encode(secret)
    url = base64.urlsafe_b64encode(secret)
    return [secret, secret.hex().encode(), b64, b64.rstrip(b"="), url.rstrip(b"=")]


def unbase64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (Olm pickles use the first, Lockstep the second)."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def found_in(folder: Path, needles: dict[str, list[bytes]]) -> list[str]:
    """Where each needle is, as "what in FILE at OFFSET" (the first offset of each form found)."""
    hits = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        hits.extend(
            f"{what} in {path.relative_to(folder)} at {offset}"
            for what, forms in needles.items()
            for offset in (data.find(form) for form in forms)
            if offset >= 0
        )
    return hits


def text_forms(text: str) -> list[bytes]:
    """How a text may be written in a file: UTF-8 (JSON, SQLite) or UTF-16 (Chromium's pickles)."""
    return [text.encode(), text.encode("utf-16-le")]


@contextlib.contextmanager
def phone_with_profile(playwright: Any, tmp_path: Path) -> Iterator[tuple[Phone, Path]]:
    """The phone app in a Chromium that keeps its profile in a folder: (the phone, the folder). When the
    block ends Chromium closes and writes everything out: the folder is then what a thief would copy."""
    profile = tmp_path / "profile"
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, **PHONE
    )
    try:
        page = context.pages[0] if context.pages else context.new_page()
        camera = FakeCamera(tmp_path / "unused-camera.y4m")
        yield Phone(page, camera, add_platform_authenticator(page)), profile
    finally:
        context.close()


def test_a_copied_browser_profile_holds_no_plaintext_and_no_private_key(
    server_process: Any, playwright: Any, tmp_path: Path
) -> None:
    url = server_process.url
    with phone_with_profile(playwright, tmp_path) as (phone, profile):
        page = phone.page
        create_account(phone, url, "alice", "Alice")
        bob = cli_primary(url, tmp_path / "bob", "bob", "Bob")
        sent = f"pay on friday {secrets.token_hex(12)}"
        received = f"bob says {secrets.token_hex(12)}"
        draft = f"not sent yet {secrets.token_hex(12)}"
        group_name = f"surprise party {secrets.token_hex(12)}"
        start_chat(page, "bob")
        send_text(page, sent)
        assert [m["body"].get("text") for m in receive_json(bob.primary) if m["kind"] == "text"] == [sent]
        send_cli(bob.primary, "alice", received)
        message(page, received).wait_for(timeout=TIMEOUT)
        page.reload()  # what the app shows comes back from the sealed store
        page.get_by_test_id("chat-row").filter(has_text="@bob").click()
        message(page, sent).wait_for(timeout=TIMEOUT)
        message(page, received).wait_for(timeout=TIMEOUT)
        held = page.evaluate(SECRETS)
        # Chromium keeps a page's form fields in the tab's session history (session restore, Back) and
        # writes them to Sessions/ a few seconds after a change, and at once when the page is left: a
        # composer that held the sent text ~4 s before Send (a busy machine) leaked it there once. Leaving
        # the page with an unsent draft and a group's name typed checks no field is kept, every time.
        page.get_by_test_id("back").click()
        page.get_by_test_id("new-group").click()
        page.get_by_test_id("group-name").fill(group_name)
        open_chat(page, "@bob")
        page.get_by_test_id("composer").fill(draft)
        page.goto("about:blank")

    needles: dict[str, list[bytes]] = {
        "the sent plaintext": text_forms(sent),
        "the received plaintext": text_forms(received),
        "the unsent draft": text_forms(draft),
        "the group name being typed": text_forms(group_name),
    }
    for index, key in enumerate(held["privateKeys"]):
        needles[f"private key {index}"] = encodings(bytes.fromhex(key))
    for index, secret in enumerate(held["ratchetSecrets"]):
        needles[f"ratchet secret {index}"] = [secret.encode(), *encodings(unbase64(secret))]
    hits = found_in(profile, needles)
    assert hits == [], "\n".join(hits)
    assert held["unsealedRecords"] == 0 and held["sealedRecords"] >= 3
    assert held["clearPrivateKeys"] == 0  # every private key is wrapped, none stored as a CryptoKey
    # The device key, the Olm identity and signing keys, one-time and fallback keys, ratchet keys.
    assert len(held["privateKeys"]) >= 5
    assert held["ratchetSecrets"]


# The switch once its state is drawn: after a reload, when the device's choices are read back.
UNCHECKED = "(box) => !box.checked && !box.disabled"


def test_notifications_without_names_or_text_leave_neither_in_the_profile(
    server_process: Any, playwright: Any, tmp_path: Path
) -> None:
    """Chromium keeps the phone app's notifications in the profile, in the clear (SECURITY.md): with
    "Show names and message text" off, a notification says only "New message", so none is kept."""
    url = server_process.url
    bob_name = f"Bob {secrets.token_hex(6)}"
    text = f"meet me at the pier {secrets.token_hex(12)}"
    with phone_with_profile(playwright, tmp_path) as (phone, profile):
        page = phone.page
        page.context.grant_permissions(["notifications"], origin=app_url(url).removesuffix("/app"))
        page.add_init_script(HIDEABLE)
        create_account(phone, url, "alice", "Alice")
        page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=TIMEOUT)
        open_settings(page)
        previews = page.get_by_test_id("notification-previews")
        assert previews.is_checked()  # names and text by default, as WhatsApp and Signal
        previews.uncheck()
        bob = cli_primary(url, tmp_path / "bob", "bob", bob_name)
        page.evaluate("window.lockstepTestSetHidden(true)")
        send_cli(bob.primary, "@alice", text)
        [shown] = shown_once(page, SHOWN_NOTIFICATIONS, lambda shown: len(shown) == 1)
        assert (shown["title"], shown["body"]) == ("Lockstep", "New message")
        page.reload()  # the choice is this device's, kept sealed with its muted chats
        open_settings(page)
        page.wait_for_function(UNCHECKED, arg=previews.element_handle(), timeout=TIMEOUT)
    hits = found_in(profile, {"the message": text_forms(text), "the sender's name": text_forms(bob_name)})
    assert hits == [], "\n".join(hits)
