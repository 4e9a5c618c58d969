"""What a forged Olm message costs its receiver: the browser's Olm (web/src/e2e, in Debian's Chromium)
against vodozemac (this process), side by side on the same session and the same forged bytes.

A forger who knows nothing of the session can still make the receiver work: a normal message at the
largest chain gap allowed (2000) on the chain the receiver knows, or under a ratchet key it has never
seen (a new chain: one X25519 and one root-key step first), with a random ciphertext and MAC. Each must
fail, and costs the receiver whatever it derives before the MAC check fails.

    .venv/bin/python bench/olm_forgery.py [--messages 40] [--dist DIR]

Talks only to a loopback static server. `--dist` serves another test build (e.g. an older commit's
`web/dist-test`, for a before/after); by default web/dist-test, rebuilt when older than the sources.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import vodozemac

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chromium import launch
from e2ecrypto.conftest import STAMP, _Handler
from static_site import ensure_web_build, serve


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


SET_UP = """
async (arg) => {
  const E = window.e2e, O = window.e2eTest.objects;
  const account = await E.OlmAccount.create();
  const session = await account.createOutboundSession(arg.identity, arg.oneTimeKey);
  O.set("ts", session);
  const first = await session.encrypt(new Uint8Array(1));
  return { identity: account.curve25519Key, type: first.type, body: E.encodeBase64(first.body) };
}
"""

DECRYPT = """
async (arg) => {
  const E = window.e2e, session = window.e2eTest.objects.get("ts");
  const body = E.decodeBase64(arg.body);
  return E.encodeBase64(await session.decrypt({ type: arg.type, body }));
}
"""

# Forged messages: each is decrypted once, timed one by one; every one must fail with a MacError.
FORGE = """
async (arg) => {
  const E = window.e2e, session = window.e2eTest.objects.get("ts");
  const times = [], errors = new Set(); const all = performance.now();
  for (const body of arg.bodies) {
    const started = performance.now();
    try { await session.decrypt({ type: 1, body: E.decodeBase64(body) }); errors.add("decrypted"); }
    catch (error) { errors.add(error.name); }
    times.push(performance.now() - started);
  }
  return { times, total: performance.now() - all, errors: [...errors] };
}
"""

# The ratchet key a message (pre-key or normal) carries.
RATCHET_KEY = """
(m) => {
  const E = window.e2e, decoded = E.decodeOlmMessage({ type: m.type, body: E.decodeBase64(m.body) });
  return E.encodeBase64((m.type === 0 ? decoded.message.message : decoded.message).ratchetKey);
}
"""

ENCODE = """
(arg) => {
  const E = window.e2e;
  return arg.messages.map((m) =>
    E.encodeBase64(new E.OlmNormalMessage(E.decodeBase64(m.ratchetKey), m.index, E.decodeBase64(m.ciphertext))
      .withMac(E.decodeBase64(m.mac)).encode()));
}
"""


def forged(page: Any, ratchet_keys: list[bytes], index: int) -> list[str]:
    messages = [
        {
            "ratchetKey": b64(key),
            "index": index,
            "ciphertext": b64(secrets.token_bytes(32)),
            "mac": b64(secrets.token_bytes(8)),
        }
        for key in ratchet_keys
    ]
    bodies: list[str] = page.evaluate(ENCODE, {"messages": messages})
    return bodies


def vodozemac_times(session: vodozemac.Session, bodies: list[str]) -> list[float]:
    times = []
    for body in bodies:
        started = time.perf_counter()
        try:
            session.decrypt(vodozemac.AnyOlmMessage.from_parts(1, unb64(body)))
            raise AssertionError("a forged message decrypted")
        except vodozemac.OlmDecryptionException:
            pass
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=40, help="forged messages of each kind")
    parser.add_argument("--dist", type=Path, help="a test build to serve instead of web/dist-test")
    args = parser.parse_args()
    handler: type[_Handler] = _Handler
    if args.dist is None:
        ensure_web_build(STAMP, "build:test")
    else:
        dist = args.dist.resolve()

        class OtherBuild(_Handler):
            def translate_path(self, path: str) -> str:
                path = path.split("?", 1)[0]
                return self.inside(dist, path.removeprefix("/test/"))

        handler = OtherBuild
    from playwright.sync_api import sync_playwright

    with serve(handler) as origin, sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        page.goto(f"{origin}/test/tests/e2e-harness.html")
        page.wait_for_function("window.e2eReady === true")
        # A real session both ways: the browser (Alice) starts it, vodozemac (Bob) answers once, so each
        # side has one receiving chain from the other and knows its ratchet key.
        bob = vodozemac.Account()
        bob.generate_one_time_keys(1)
        alice = page.evaluate(
            SET_UP,
            {
                "identity": bob.curve25519_key.to_base64(),
                "oneTimeKey": next(iter(bob.one_time_keys.values())).to_base64(),
            },
        )
        pre_key = vodozemac.AnyOlmMessage.from_parts(0, unb64(alice["body"])).to_pre_key()
        bob_session, _ = bob.create_inbound_session(
            vodozemac.Curve25519PublicKey.from_base64(alice["identity"]), pre_key
        )
        reply_type, reply = bob_session.encrypt(b"hi").to_parts()
        assert page.evaluate(DECRYPT, {"type": reply_type, "body": b64(reply)}) == b64(b"hi")
        # The ratchet keys each side knows: Bob's current one (from his reply) and Alice's (from her message).
        bob_ratchet = unb64(page.evaluate(RATCHET_KEY, {"type": 1, "body": b64(reply)}))
        alice_ratchet = unb64(page.evaluate(RATCHET_KEY, {"type": 0, "body": alice["body"]}))
        n = args.messages
        rows = []
        for label, to_browser, to_vodozemac in [
            (
                "known chain, gap 2000",
                forged(page, [bob_ratchet] * n, 2000),
                forged(page, [alice_ratchet] * n, 2000),
            ),
            (
                "new ratchet key, index 2000",
                *(forged(page, [secrets.token_bytes(32) for _ in range(n)], 2000) for _ in range(2)),
            ),
            (
                "known chain, index 1",
                forged(page, [bob_ratchet] * n, 1),
                forged(page, [alice_ratchet] * n, 1),
            ),
        ]:
            out = page.evaluate(FORGE, {"bodies": to_browser})
            assert out["errors"] == ["MacError"], out["errors"]
            browser_ms = out["total"] / len(to_browser)
            vz_ms = statistics.mean(vodozemac_times(bob_session, to_vodozemac))
            rows.append((label, browser_ms, vz_ms))
        browser.close()
    print(f"{'forged message':32} {'browser (ms)':>13} {'vodozemac (ms)':>15} {'ratio':>7}")
    for label, browser_ms, vz_ms in rows:
        print(f"{label:32} {browser_ms:13.3f} {vz_ms:15.3f} {browser_ms / vz_ms:7.1f}")


if __name__ == "__main__":
    main()
