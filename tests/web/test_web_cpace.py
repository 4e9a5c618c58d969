"""The browser's CPace (web/src/crypto/cpace.ts) against draft-irtf-cfrg-cpace-21's vectors, in real
Chromium: vectors/cpace-x25519.json, shared with tests/link/test_link_cpace.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "cpace-x25519.json").read_text())

RUN = """
async (v) => {
  const { cpace, bytes } = window.lockstep;
  const h = bytes.fromHex, x = bytes.toHex;
  const s = v.strings, p = v.protocol, low = v.low_order;
  const out = { strings: {}, low: [] };
  out.strings.prepend_len = s.prepend_len.map((c) => x(cpace.prependLen(h(c.input))));
  const fns = { lv_cat: cpace.lvCat, o_cat: cpace.oCat, transcript_ir: cpace.transcriptIr,
                transcript_oc: cpace.transcriptOc };
  for (const [name, fn] of Object.entries(fns)) {
    out.strings[name] = s[name].map((c) => x(fn(...c.inputs.map(h))));
  }
  const [prs, ci, sid] = [h(p.PRS), h(p.CI), h(p.sid)];
  out.generator_string = x(cpace.generatorString(prs, ci, sid));
  out.g = x(await cpace.calculateGenerator(prs, ci, sid));
  const ya = await cpace.importScalar(h(p.ya)), yb = await cpace.importScalar(h(p.yb));
  const a = await cpace.start(prs, ci, sid, h(p.ADa), true, ya);
  const b = await cpace.start(prs, ci, sid, h(p.ADb), false, yb);
  out.Ya = x(a.share.y); out.Yb = x(b.share.y);
  out.K_a = x(await cpace.scalarMultVfy(ya, b.share.y));
  out.K_b = x(await cpace.scalarMultVfy(yb, a.share.y));
  out.isk_a = x(await cpace.finish(a, b.share));
  out.isk_b = x(await cpace.finish(b, a.share));
  const oc = cpace.transcriptOc(a.share.y, a.share.ad, b.share.y, b.share.ad);
  const ir = cpace.transcriptIr(a.share.y, a.share.ad, b.share.y, b.share.ad);
  out.isk_sy = x(await cpace.isk(sid, h(p.K), oc));
  out.sid_output_ir = x(await cpace.sidOutput(ir));
  out.sid_output_oc = x(await cpace.sidOutput(oc));
  const s0 = await cpace.importScalar(h(low.s));
  const none = new Uint8Array();
  const party = await cpace.start(bytes.utf8("code"), none, none, none, true);
  for (const c of low.cases) {
    let aborted = false;
    try { await cpace.finish(party, { y: h(c.u), ad: new Uint8Array() }); }
    catch (e) { aborted = e instanceof cpace.CpaceError; }
    out.low.push({ q: x(await cpace.scalarMultVfy(s0, h(c.u))), aborted });
  }
  return out;
}
"""


def test_cpace_matches_the_draft_vectors(harness: Any) -> None:
    out = harness.evaluate(RUN, VECTORS)
    strings = VECTORS["strings"]
    for name, results in out["strings"].items():
        assert results == [case["output"] for case in strings[name]], name
    protocol = VECTORS["protocol"]
    assert out["generator_string"] == protocol["generator_string"]
    assert out["g"] == protocol["g"]
    assert (out["Ya"], out["Yb"]) == (protocol["Ya"], protocol["Yb"])
    assert out["K_a"] == out["K_b"] == protocol["K"]
    assert out["isk_a"] == out["isk_b"] == protocol["isk_ir"]
    for name in ("isk_sy", "sid_output_ir", "sid_output_oc"):
        assert out[name] == protocol[name], name
    cases = VECTORS["low_order"]["cases"]
    assert [result["q"] for result in out["low"]] == [case["q"] for case in cases]
    assert [result["aborted"] for result in out["low"]] == [case["aborts"] for case in cases]
