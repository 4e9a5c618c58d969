"""Probation (linking.md §4.6) in the browser (web/src/link/probation.ts, deviceList.ts): the shared vectors
of tests/link/test_link_probation.py. A list whose probation the server stripped or altered is refused,
and every device draws the same conclusions and banner at the same time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lockstep.link.encoding import b64u_encode

pytestmark = pytest.mark.browser

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "probation.json").read_text())


def test_the_browser_refuses_every_tampered_list(harness: Any) -> None:
    verdicts = harness.evaluate(
        """async ({ lists, accountKey, accountId }) => {
             const { deviceList, b64u } = window.lockstep;
             const key = b64u.b64uDecode(accountKey);
             const verdicts = [];
             for (const { envelope } of lists) {
               try {
                 await deviceList.verifyDeviceList(envelope, key, accountId);
                 verdicts.push(true);
               } catch (error) {
                 if (!(error instanceof deviceList.InvalidDeviceList)) throw error;
                 verdicts.push(false);
               }
             }
             return verdicts;
           }""",
        {
            "lists": VECTORS["lists"],
            "accountKey": b64u_encode(bytes.fromhex(VECTORS["account_key"])),
            "accountId": VECTORS["account_id"],
        },
    )
    assert dict(zip([c["name"] for c in VECTORS["lists"]], verdicts, strict=True)) == {
        c["name"]: c["valid"] for c in VECTORS["lists"]
    }


def test_the_browser_concludes_what_python_does(harness: Any) -> None:
    out = harness.evaluate(
        """({ list, moments, deskId, laptopId }) => {
             const { probation } = window.lockstep;
             return {
               moments: moments.map(({ now }) => ({
                 on: list.devices.map((d) => probation.onProbation(d, now)),
                 banners: probation.newcomers(list, now, deskId).map((d) => probation.banner(d, now)),
                 self: probation.newcomers(list, now, laptopId).length,
               })),
               until: probation.untilText(list.devices[1].probation_until),
               ended: probation.endedEarly(list, laptopId),
             };
           }""",
        {
            "list": VECTORS["list"],
            "moments": VECTORS["moments"],
            "deskId": VECTORS["desk_id"],
            "laptopId": VECTORS["laptop_id"],
        },
    )
    for moment, got in zip(VECTORS["moments"], out["moments"], strict=True):
        assert got == {"on": moment["on_probation"], "banners": moment["banners_on_desk"], "self": 0}, moment
    assert out["until"] == VECTORS["until_text"]
    assert out["ended"] == VECTORS["ended_early"]
