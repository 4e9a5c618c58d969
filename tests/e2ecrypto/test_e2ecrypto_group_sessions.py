"""The browser messenger's Megolm bookkeeping (web/src/messenger/groupSessions.ts) with session keys and
messages made by vodozemac: replays stay refused after the same session is re-shared from an earlier index;
a session key on a small-order signing key is refused, as vodozemac refuses it."""

from __future__ import annotations

import pytest
import vodozemac

from .harness import Harness

pytestmark = pytest.mark.browser

RESHARE = """
const sessions = new T.GroupSessions();
const body = (key) => ({ group_id: "g", session_id: arg.sessionId, session_key: key });
const open = (from, message) => from.decrypt("s", arg.sessionId, E.decodeBase64(message), "g");
const read = (message) => T.outcome(async () => T.fromUtf8(await open(sessions, message)));
await sessions.addInbound("s", "k", body(arg.fromOne));
const out = { second: await read(arg.second) };
await sessions.addInbound("s", "k", body(arg.fromZero));   // reaches further back: replaces the copy
out.first = await read(arg.first);
out.secondAgain = await read(arg.second);
out.firstAgain = await read(arg.first);
const restored = T.GroupSessions.unpickle(sessions.pickle());
out.afterReload = await T.outcome(() => open(restored, arg.second));
const otherGroup = { ...body(arg.fromZero), group_id: "h" };
out.otherGroup = await T.outcome(() => sessions.addInbound("s", "k", otherGroup));
return out;
"""


def test_a_reshare_from_an_earlier_index_does_not_reopen_replays(harness: Harness) -> None:
    outbound = vodozemac.GroupSession()
    from_zero = outbound.session_key.to_base64()
    first = outbound.encrypt(b"I will pay you on Friday").to_base64()
    from_one = outbound.session_key.to_base64()
    second = outbound.encrypt(b"second").to_base64()
    out = harness.run(
        RESHARE,
        {
            "sessionId": outbound.session_id,
            "fromZero": from_zero,
            "fromOne": from_one,
            "first": first,
            "second": second,
        },
    )
    assert out["second"] == {"ok": "second"}
    assert out["first"] == {"ok": "I will pay you on Friday"}
    for replay in ("secondAgain", "firstAgain", "afterReload"):
        assert out[replay]["error"] == "GroupMessageError", replay
    assert out["otherGroup"]["error"] == "GroupMessageError"


WEAK_SESSION_KEY = """
const weak = new Uint8Array(32); weak[0] = 1;              // the neutral point: anyone can "sign" for it
const forged = new Uint8Array(64); forged[0] = 1;          // R = the neutral point, S = 0
const body = new Uint8Array(1 + 4 + 128 + 32); body[0] = 2; body.set(weak, 5 + 128);
const key = new Uint8Array(body.length + 64); key.set(body); key.set(forged, body.length);
const exported = body.slice(); exported[0] = 1;
const share = { group_id: "g", session_id: E.encodeBase64(weak), session_key: E.encodeBase64(key) };
return {
  shared: await T.outcome(() => E.decodeSessionKey(key)),
  exported: await T.outcome(() => E.decodeExportedSessionKey(exported)),
  added: await T.outcome(() => new T.GroupSessions().addInbound("s", "k", share)),
};
"""


def test_a_megolm_session_key_on_a_small_order_key_is_refused(harness: Harness) -> None:
    """vodozemac refuses it (verify_strict); WebCrypto's verify accepted the forged signature."""
    out = harness.run(WEAK_SESSION_KEY)
    assert out["shared"]["error"] == "MalformedError"
    assert out["exported"]["error"] == "MalformedError"
    assert out["added"]["error"] == "MalformedError"
