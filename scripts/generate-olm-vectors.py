#!/usr/bin/env python3
"""Regenerates vectors/olm-*.json and vectors/megolm-*.json from vodozemac (Matrix's audited Rust Olm/Megolm).

vodozemac takes its randomness from the OS, so the script cannot seed it. Instead it reads the secrets
vodozemac chose out of vodozemac's own pickles (base64 of AES-256-CBC + truncated HMAC-SHA-256 of a JSON
document, keyed by HKDF-SHA-256(pickle key, info "Pickle")), and writes them next to the bytes vodozemac
produced. It also writes pickles back to put a Megolm session at a chosen ratchet index. The browser tests
(tests/e2ecrypto) then rebuild every message, key and signature from those secrets, byte for byte.

The files are committed. Rerunning makes different (random) but equally valid files; do it only when the
vectors must change, and say why in the commit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import vodozemac
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
PICKLE_KEY = bytes(range(32))
SOURCE = "vodozemac 0.10.0 (Python bindings), via scripts/generate-olm-vectors.py"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _pickle_keys() -> tuple[bytes, bytes, bytes]:
    expanded = HKDF(hashes.SHA256(), 80, b"\0", b"Pickle").derive(PICKLE_KEY)
    return expanded[:32], expanded[32:64], expanded[64:]


def open_pickle(pickle: str) -> dict[str, Any]:
    """The JSON inside a vodozemac pickle made with PICKLE_KEY."""
    aes_key, mac_key, iv = _pickle_keys()
    raw = unb64(pickle)
    ciphertext, mac = raw[:-8], raw[-8:]
    assert hmac.compare_digest(hmac.new(mac_key, ciphertext, hashlib.sha256).digest()[:8], mac)
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    plain = unpadder.update(decryptor.update(ciphertext) + decryptor.finalize()) + unpadder.finalize()
    document: dict[str, Any] = json.loads(plain)
    return document


def seal_pickle(document: dict[str, Any]) -> str:
    """A vodozemac pickle (for PICKLE_KEY) of a JSON document."""
    aes_key, mac_key, iv = _pickle_keys()
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(document).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(plain) + encryptor.finalize()
    return b64(ciphertext + hmac.new(mac_key, ciphertext, hashlib.sha256).digest()[:8])


def write(name: str, doc: dict[str, Any]) -> None:
    (VECTORS / name).write_text(json.dumps(doc, indent=2) + "\n")


def account_secrets(account: vodozemac.Account) -> dict[str, Any]:
    state = open_pickle(account.pickle(PICKLE_KEY))
    one_time = state["one_time_keys"]
    keys = [
        {
            "id": int(key_id),
            "key_id": b64(int(key_id).to_bytes(8, "big")),
            "public": b64(bytes(one_time["public_keys"][key_id])),
            "secret": b64(bytes(one_time["private_keys"][key_id])),
        }
        for key_id in sorted(one_time["private_keys"], key=int)
    ]
    published = account.one_time_keys
    for key in keys:
        assert published[key["key_id"]].to_base64() == key["public"]
    return {
        "curve25519": account.curve25519_key.to_base64(),
        "ed25519": account.ed25519_key.to_base64(),
        "identity_secret": b64(bytes(state["diffie_hellman_key"])),
        "signing_seed": b64(bytes(state["signing_key"]["Normal"])),
        "one_time_keys": keys,
    }


def sending_state(session: vodozemac.Session) -> dict[str, Any]:
    state: dict[str, Any] = open_pickle(session.pickle(PICKLE_KEY))["sending_ratchet"]
    return state


def olm_vectors() -> None:
    alice = vodozemac.Account()
    bob = vodozemac.Account()
    bob.generate_one_time_keys(2)
    bob_keys = account_secrets(bob)
    alice_keys = account_secrets(alice)
    one_time_key = bob_keys["one_time_keys"][0]
    messages = ["Grüße, Bob 👋", "", "x" * 15, "y" * 16, "z" * 1000]
    signatures = [{"message": text, "signature": bob.sign(text.encode()).to_base64()} for text in messages]

    outbound = alice.create_outbound_session(bob.curve25519_key, bob.one_time_keys[one_time_key["key_id"]])
    initial = open_pickle(outbound.pickle(PICKLE_KEY))
    alice_initial = {
        "base_key": b64(bytes(initial["session_keys"]["base_key"])),
        "root_key": b64(bytes(initial["sending_ratchet"]["active_ratchet"]["root_key"])),
        "ratchet_secret": b64(bytes(initial["sending_ratchet"]["active_ratchet"]["ratchet_key"])),
        "chain_key": b64(bytes(initial["sending_ratchet"]["symmetric_key_ratchet"]["key"])),
    }
    assert initial["sending_ratchet"]["symmetric_key_ratchet"]["index"] == 0
    inbound: list[vodozemac.Session] = []
    events: list[dict[str, Any]] = []
    alice_events: list[dict[str, Any]] = []

    def alice_sends(text: str) -> dict[str, Any]:
        before = sending_state(outbound)
        message_type, body = outbound.encrypt(text.encode()).to_parts()
        after = sending_state(outbound)
        new_secret = None
        if before["type"] == "inactive":
            new_secret = b64(bytes(after["active_ratchet"]["ratchet_key"]))
        message = {"type": message_type, "body": b64(body), "plaintext": text}
        alice_events.append({"op": "send", "new_ratchet_secret": new_secret, **message})
        return message

    def bob_receives(message: dict[str, Any], note: str) -> None:
        any_message = vodozemac.AnyOlmMessage.from_parts(message["type"], unb64(message["body"]))
        if not inbound:
            session, plaintext = bob.create_inbound_session(alice.curve25519_key, any_message.to_pre_key())
            inbound.append(session)
        else:
            plaintext = inbound[0].decrypt(any_message)
        assert plaintext.decode() == message["plaintext"]
        events.append({"op": "receive", "note": note, **message})

    def bob_replays(message: dict[str, Any], note: str) -> None:
        any_message = vodozemac.AnyOlmMessage.from_parts(message["type"], unb64(message["body"]))
        try:
            inbound[0].decrypt(any_message)
        except vodozemac.OlmDecryptionException:
            events.append({"op": "receive", "note": note, "error": "MissingMessageKeyError", **message})
            return
        raise AssertionError("vodozemac decrypted a replay")

    def bob_sends(text: str, note: str) -> dict[str, Any]:
        before = sending_state(inbound[0])
        message_type, body = inbound[0].encrypt(text.encode()).to_parts()
        after = sending_state(inbound[0])
        new_secret = None
        if before["type"] == "inactive":
            new_secret = b64(bytes(after["active_ratchet"]["ratchet_key"]))
        message = {"type": message_type, "body": b64(body), "plaintext": text}
        events.append({"op": "send", "note": note, "new_ratchet_secret": new_secret, **message})
        return message

    def alice_receives(message: dict[str, Any]) -> None:
        any_message = vodozemac.AnyOlmMessage.from_parts(message["type"], unb64(message["body"]))
        assert outbound.decrypt(any_message).decode() == message["plaintext"]
        alice_events.append({"op": "receive", **message})

    a0, a1, a2 = alice_sends("first pre-key message"), alice_sends("second"), alice_sends("third")
    late = alice_sends("a pre-key message delivered after three ratchet turns")
    bob_receives(a0, "pre-key message: creates the inbound session")
    bob_receives(a2, "chain index 2 before 1: keeps the skipped key")
    bob_receives(a1, "the skipped key of index 1")
    bob_replays(a1, "a replay of index 1: its key is gone")
    b0 = bob_sends("Bob's first answer", "Bob's first send: new ratchet key T1")
    b1 = bob_sends("Bob's second answer", "same chain, index 1")
    alice_receives(b1)
    alice_receives(b0)
    a4, a5, a6 = alice_sends("Alice after a turn"), alice_sends("and again"), alice_sends("and a third")
    bob_receives(a5, "a new ratchet key T2, index 1 first")
    bob_receives(a6, "index 2")
    bob_receives(a4, "index 0, skipped")
    b2 = bob_sends("Bob on a new chain", "new ratchet key T3")
    b3 = bob_sends(messages[0], "non-ASCII plaintext")
    alice_receives(b2)
    alice_receives(b3)
    a7 = alice_sends("y" * 16)
    bob_receives(a7, "T4; a plaintext of exactly one AES block")
    bob_receives(late, "a pre-key message of the first chain, three turns later")
    b4 = bob_sends("z" * 1000, "new ratchet key T5; a long plaintext")
    alice_receives(b4)
    gap = [alice_sends(f"gap {i}") for i in range(45)]
    bob_receives(gap[44], "45 messages ahead: only the 40 nearest skipped keys are kept")
    bob_receives(gap[10], "an index whose skipped key was kept")
    bob_replays(gap[2], "an index further back than the 40 kept keys")
    b5 = bob_sends("", "new ratchet key T7; empty plaintext")
    alice_receives(b5)

    write(
        "olm-session.json",
        {
            "source": SOURCE,
            "description": (
                "Alice (vodozemac) starts an Olm session to Bob's one-time key; each side's view is "
                "recorded as events in order. Secrets come from vodozemac's pickles: Bob's account, and "
                "Alice's session right after creation (R0, C(0,0), T0; the base key's secret is not kept "
                "by vodozemac). Replaying either side, with the given ratchet secrets injected when it "
                "sends on a new chain, must reproduce every body byte for byte and every plaintext."
            ),
            "alice": {k: alice_keys[k] for k in ("curve25519", "ed25519")},
            "bob": bob_keys,
            "bob_one_time_key": one_time_key["key_id"],
            "bob_signatures": signatures,
            "session_id": outbound.session_id,
            "events": events,
            "alice_initial": alice_initial,
            "alice_events": alice_events,
        },
    )


def group_session_at(seed: list[int], ratchet: bytes, index: int) -> vodozemac.GroupSession:
    document = {
        "ratchet": {"inner": list(ratchet), "counter": index},
        "signing_key": {"Normal": seed},
        "config": {"version": "V1"},
    }
    return vodozemac.GroupSession.from_pickle(seal_pickle(document), PICKLE_KEY)


def megolm_vectors() -> None:
    outbound = vodozemac.GroupSession()
    state = open_pickle(outbound.pickle(PICKLE_KEY))
    ratchet0 = bytes(state["ratchet"]["inner"])
    seed = state["signing_key"]["Normal"]
    session_key = outbound.session_key
    session_key0 = session_key.to_base64()
    texts = ["hello group", "", "Grüße 👋", "x" * 16, "y" * 300]
    messages = []
    for text in texts:
        index = outbound.message_index
        messages.append(
            {"index": index, "plaintext": text, "body": outbound.encrypt(text.encode()).to_base64()}
        )

    inbound = vodozemac.InboundGroupSession(session_key)
    indexes = [0, 1, 2, 3, 255, 256, 257, 511, 512, 1000, 1024, 65535, 65536, 65537, 131072 + 513]
    indexes += [16777215, 16777216, 16777216 + 65536 + 256 + 1, 4294967295]
    exports = [{"index": i, "exported": inbound.export_at(i).to_base64()} for i in indexes]

    late = []
    for index in (255, 256, 65536, 16777216, 16777216 + 65536 + 256 + 1):
        exported = unb64(inbound.export_at(index).to_base64())
        session = group_session_at(seed, exported[5:133], index)
        assert session.session_id == outbound.session_id
        key = session.session_key.to_base64()
        text = f"message at index {index}"
        body = session.encrypt(text.encode()).to_base64()
        assert inbound.decrypt(vodozemac.MegolmMessage.from_base64(body)).plaintext.decode() == text
        late.append({"index": index, "session_key": key, "plaintext": text, "body": body})

    write(
        "megolm-session.json",
        {
            "source": SOURCE,
            "description": (
                "One vodozemac outbound group session. ratchet0 and signing_seed come from its pickle; "
                "exports are vodozemac's InboundGroupSession.export_at(index); late messages come from "
                "the same session re-pickled at that index. Rebuilding from ratchet0 and signing_seed must "
                "give the same session keys, exports and message bytes."
            ),
            "session_id": outbound.session_id,
            "signing_seed": b64(bytes(seed)),
            "ratchet0": b64(ratchet0),
            "session_key0": session_key0,
            "messages": messages,
            "exports": exports,
            "late": late,
        },
    )


def main() -> None:
    olm_vectors()
    megolm_vectors()


if __name__ == "__main__":
    main()
