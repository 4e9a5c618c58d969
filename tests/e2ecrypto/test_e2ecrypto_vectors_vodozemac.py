"""The vector files are vodozemac's own output: vodozemac, loaded with the recorded secrets, has the
recorded keys and signatures, reads Alice's first-chain Olm messages, every Megolm message, and derives
every recorded export (no browser here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import vodozemac

from .harness import unb64

ROOT = Path(__file__).resolve().parents[2]
OLM = json.loads((ROOT / "vectors" / "olm-session.json").read_text())
MEGOLM = json.loads((ROOT / "vectors" / "megolm-session.json").read_text())


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_olm_vectors", ROOT / "scripts" / "generate-olm-vectors.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vodozemac_bob_from_the_recorded_secrets_reads_alices_messages() -> None:
    generator = _generator()
    bob = OLM["bob"]
    # A vodozemac account pickle carrying exactly the recorded secrets (the generator's pickle codec).
    document = {
        "signing_key": {"Normal": list(unb64(bob["signing_seed"]))},
        "diffie_hellman_key": list(unb64(bob["identity_secret"])),
        "one_time_keys": {
            "next_key_id": len(bob["one_time_keys"]),
            "public_keys": {},
            "private_keys": {str(k["id"]): list(unb64(k["secret"])) for k in bob["one_time_keys"]},
        },
        "fallback_keys": {
            "key_id": len(bob["one_time_keys"]),
            "fallback_key": None,
            "previous_fallback_key": None,
        },
    }
    account = vodozemac.Account.from_pickle(generator.seal_pickle(document), generator.PICKLE_KEY)
    assert account.curve25519_key.to_base64() == bob["curve25519"]
    assert account.ed25519_key.to_base64() == bob["ed25519"]
    for signature in OLM["bob_signatures"]:
        assert account.sign(signature["message"].encode()).to_base64() == signature["signature"]

    alice = vodozemac.Curve25519PublicKey.from_base64(OLM["alice"]["curve25519"])
    session = None
    read = 0
    for event in OLM["events"]:
        # Alice's first chain only: the later ones hang on ratchet keys Bob drew when he sent, which a
        # fresh vodozemac session cannot be given (the browser test injects them).
        if event["op"] != "receive" or "error" in event or event["type"] != 0:
            continue
        message = vodozemac.AnyOlmMessage.from_parts(event["type"], unb64(event["body"]))
        if session is None:
            session, plaintext = account.create_inbound_session(alice, message.to_pre_key())
        else:
            plaintext = session.decrypt(message)
        assert plaintext.decode() == event["plaintext"]
        read += 1
    assert session is not None and session.session_id == OLM["session_id"]
    assert read >= 4


def test_vodozemac_reads_the_megolm_vectors() -> None:
    inbound = vodozemac.InboundGroupSession(vodozemac.SessionKey(MEGOLM["session_key0"]))
    assert inbound.session_id == MEGOLM["session_id"]
    for message in [*MEGOLM["messages"], *MEGOLM["late"]]:
        decrypted = inbound.decrypt(vodozemac.MegolmMessage.from_base64(message["body"]))
        assert (decrypted.plaintext.decode(), decrypted.message_index) == (
            message["plaintext"],
            message["index"],
        )
    for export in MEGOLM["exports"]:
        assert inbound.export_at(export["index"]).to_base64() == export["exported"]
    for late in MEGOLM["late"]:
        assert (
            vodozemac.InboundGroupSession(vodozemac.SessionKey(late["session_key"])).first_known_index
            == late["index"]
        )
