"""Decoders fed damaged input raise only their own typed errors (never TypeError, RangeError, …).

Inputs are mutations of the shared vectors (seeded, so a failure reproduces), run in Chromium.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
QR = json.loads((VECTORS / "link-qr.json").read_text())
SIGNATURES = json.loads((VECTORS / "link-signatures.json").read_text())
GRANT = json.loads((VECTORS / "link-grant.json").read_text())
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/#?%:.@[] \u00e9\u0000\ud7ff"


def mutate(rng: random.Random, text: str) -> str:
    """1 to 4 random edits (delete, insert, replace, truncate); never returns `text` unchanged."""
    while (mutated := _edit(rng, text)) == text:
        pass
    return mutated


def _edit(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(4)
        at = rng.randrange(len(chars) + 1)
        if kind == 0 and chars:
            del chars[min(at, len(chars) - 1)]
        elif kind == 1:
            chars.insert(at, rng.choice(ALPHABET))
        elif kind == 2 and chars:
            chars[min(at, len(chars) - 1)] = rng.choice(ALPHABET)
        else:
            chars = chars[:at]
    return "".join(chars)


def test_qr_decoder_under_mutation(harness: Any) -> None:
    rng = random.Random(20261125)
    seeds = [c["text"] for c in QR["valid"]] + [c["text"] for c in QR["invalid"]]
    texts = [mutate(rng, rng.choice(seeds)) for _ in range(1500)]
    out = harness.evaluate(
        """([texts, own]) => {
          const { qr } = window.lockstep;
          const leaked = [];
          let refused = 0;
          for (const t of texts) {
            try { qr.decodeLinkText(t, own); }
            catch (e) { if (e instanceof qr.LinkCodeError) refused++; else leaked.push([t, String(e)]); }
          }
          return { refused, leaked };
        }""",
        [texts, QR["own_origin"]],
    )
    assert out["leaked"] == []
    assert out["refused"] > 1000  # most mutations must be refused, not silently accepted


def test_envelope_list_and_grant_decoders_under_mutation(harness: Any) -> None:
    rng = random.Random(7)
    lists = SIGNATURES["device_lists"]
    envelope = lists["valid"][0]["envelope"]
    envelopes: list[Any] = [
        {"payload": mutate(rng, envelope["payload"]), "signature": envelope["signature"]} for _ in range(150)
    ]
    envelopes += [
        {"payload": envelope["payload"], "signature": mutate(rng, envelope["signature"])} for _ in range(100)
    ]
    envelopes += [None, 1, "x", [], {}, {"payload": 1, "signature": 2}]
    valid = GRANT["valid"]
    grants = [
        [valid["enc"], valid["ciphertext"][: 2 * rng.randrange(len(valid["ciphertext"]) // 2)]]
        for _ in range(40)
    ] + [
        [bytes(rng.randrange(256) for _ in range(rng.choice([0, 31, 32, 33]))).hex(), valid["ciphertext"]]
        for _ in range(40)
    ]
    out = harness.evaluate(
        """async ([envelopes, accountKey, grants, g]) => {
          const { deviceList, grant, qr, hpke, ed25519, bytes } = window.lockstep;
          const key = bytes.fromHex(accountKey);
          const id = await ed25519.keyId(key);
          const leaked = [];
          for (const e of envelopes) {
            try { await deviceList.verifyDeviceList(e, key, id); leaked.push("accepted a mutated list"); }
            catch (err) { if (!(err instanceof deviceList.InvalidDeviceList)) leaked.push(String(err)); }
          }
          const code = qr.decodeLinkText(g.code_text, "https://chat.example:8443");
          const sk = await hpke.importX25519Private(bytes.fromHex(g.ephemeral_private_key));
          for (const [enc, ct] of grants) {
            try {
              await grant.openGrant({ enc: bytes.fromHex(enc), ciphertext: bytes.fromHex(ct),
                ephemeralPrivateKey: sk, ref: code.ref, linkSecret: code.linkSecret, origin: code.origin,
                deviceKey: code.deviceKey });
              leaked.push("opened a damaged grant");
            } catch (err) { if (!(err instanceof grant.GrantError)) leaked.push(String(err)); }
          }
          return leaked;
        }""",
        [envelopes, lists["account_key"], grants, GRANT],
    )
    assert out == []


def test_time_sync_on_wire_math(harness: Any) -> None:
    """RFC 5905 §8 on-wire offset/delay, and the least-delay sample wins."""
    out = harness.evaluate(
        """() => {
          const { timesync } = window.lockstep;
          const a = timesync.onWire(1000, 5010, 5012, 1030);   // server 4000 ms ahead, 28 ms on the wire
          const b = timesync.onWire(1000, 5100, 5101, 1205);   // a slow, asymmetric exchange
          return [a, b, timesync.bestSample([b, a, { offset: 0, delay: -1 }])];
        }"""
    )
    assert out == [
        {"offset": 3996, "delay": 28},
        {"offset": 3998, "delay": 204},
        {"offset": 3996, "delay": 28},
    ]
