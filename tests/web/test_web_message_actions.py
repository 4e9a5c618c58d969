"""Message actions in the browser (web/src/messenger/actions.ts) on the vectors shared with
tests/messaging/test_e2e_actions.py (messaging.md §15): the same bodies valid or refused, and the same
outcome of every timeline in every arrival order."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "message-actions.json").read_text())

CHECK_BODIES = """
(cases) => {
  const { messageActions } = window.lockstep;
  return cases.map((c) => {
    try {
      messageActions.checkBody(c.kind, c.body);
      return { valid: true };
    } catch (error) {
      const actionError = error instanceof messageActions.ActionError;
      return { valid: false, actionError, message: String(error.message) };
    }
  });
}
"""

OUTCOMES = """
(orders) => {
  const { messageActions } = window.lockstep;
  return orders.map((records) => {
    const actions = new messageActions.ActionSet();
    const targets = [];
    for (const record of records) {
      if (messageActions.TARGETED.includes(record.kind)) actions.add(messageActions.actionFromRecord(record));
      else {
        const { id, conversation, ts } = record;
        targets.push({ id, conversation, ts, senderAccount: record.sender.account_id });
      }
    }
    return Object.fromEntries(targets.map((t) => [t.id, actions.outcome(t)]));
  });
}
"""


def test_the_browser_uses_the_vectors_limits(harness: Any) -> None:
    limits = harness.evaluate(
        """(() => {
          const a = window.lockstep.messageActions;
          return { edit_ms: a.EDIT_LIMIT_MS, delete_ms: a.DELETE_LIMIT_MS, clock_slack_ms: a.CLOCK_SLACK_MS,
                   max_emoji_code_points: a.MAX_EMOJI_CODE_POINTS };
        })()"""
    )
    assert limits == VECTORS["limits"]


def test_bodies_are_accepted_or_refused_as_the_vectors_say(harness: Any) -> None:
    cases = VECTORS["bodies"]
    for case, seen in zip(cases, harness.evaluate(CHECK_BODIES, cases), strict=True):
        assert seen["valid"] == case["valid"], case
        if not case["valid"]:
            assert seen["actionError"] and case["error"] in seen["message"], (case, seen)


def test_every_arrival_order_shows_what_the_vectors_say(harness: Any) -> None:
    for case in VECTORS["timelines"]:
        records = case["records"]
        orders = [list(o) for o in itertools.permutations(records)] if len(records) <= 4 else []
        orders += [random.Random(seed).sample(records, len(records)) for seed in range(8)]
        for seen in harness.evaluate(OUTCOMES, orders):
            assert seen == case["expected"], (case["name"], seen)
