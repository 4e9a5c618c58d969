"""The browser messenger's Megolm bookkeeping (web/src/messenger/groupSessions.ts) with session keys and
messages made by vodozemac: replays stay refused after the same session is re-shared from an earlier index."""

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
