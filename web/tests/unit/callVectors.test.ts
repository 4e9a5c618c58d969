// The browser's call core (src/calls/signals.ts, machine.ts) on the vectors shared with Python
// (vectors/call-signals.json, also run by tests/calls/test_calls_vectors.py): the same bodies parse or
// are refused with the same reason, the same call wins a glare, and one device's calls take the same
// steps (docs/protocol/messaging.md §14.2-14.5, §14.9).
import { describe, expect, test } from "vitest";
import vectors from "../../../vectors/call-signals.json";
import { type Action, CallBook, type Party, glareWinner, summary } from "../../src/calls/machine";
import { SignalError, parseSignal } from "../../src/calls/signals";

interface Step {
  do: string;
  at: number;
  call_id?: string;
  from?: string;
  body?: unknown;
  sent_at?: number;
  expect: { actions: string[]; states: Record<string, string> };
}

interface Vectors {
  devices: Record<string, string[]>;
  peer: string;
  signals: { name: string; body: unknown; error: string | null }[];
  glare: { ours: string; theirs: string; winner: string }[];
  scenarios: { name: string; steps: Step[] }[];
}

const VECTORS = vectors as Vectors;
const party = (name: string): Party => {
  const pair = VECTORS.devices[name];
  if (!pair) throw new Error(`no device ${name} in the vectors`);
  const [accountId, deviceId] = pair;
  if (accountId === undefined || deviceId === undefined) throw new Error(`device ${name} is not [account, device]`);
  return { accountId, deviceId };
};
const ME = party("me");

describe("signal bodies", () => {
  test.each(VECTORS.signals)("$name", ({ body, error }) => {
    if (error === null) expect(parseSignal(body)).toEqual(body);
    else {
      expect(() => parseSignal(body)).toThrow(SignalError);
      expect(() => parseSignal(body)).toThrow(new SignalError(error));
    }
  });
});

test.each(VECTORS.glare)("glare between $ours and $theirs", ({ ours, theirs, winner }) => {
  expect(glareWinner(ours, theirs)).toBe(winner);
});

/** An action as the vectors write it (test_calls_vectors.py's `rendered`). */
function rendered(action: Action): string {
  switch (action.kind) {
    case "send":
      return `send ${action.signal.type}${action.signal.type === "hangup" ? ` ${action.signal.reason}` : ""}`;
    case "ended":
      return `ended ${summary(action.record)}`;
    case "remote-description":
      return `remote-description ${action.type}`;
    case "remote-candidates":
      return `remote-candidates ${String(action.candidates.length)}`;
    case "answer-at-once":
      return `answer-at-once ${action.replacing}`;
    case "ignored":
      return "ignored";
  }
}

function run(book: CallBook, step: Step): Action[] {
  const at = step.at;
  if (step.do === "dial") return book.dial(step.call_id ?? "", "audio", "v=0", VECTORS.peer, at)[1];
  if (step.do === "arrive") {
    const sender = party(step.from ?? "");
    const peer = sender.accountId === ME.accountId ? VECTORS.peer : sender.accountId;
    const conversation = `direct:${[ME.accountId, peer].sort().join(":")}`;
    return book.arrived(step.body, sender, conversation, step.sent_at ?? at, at)[1];
  }
  if (step.do === "timer") return [...book.calls.values()].flatMap((call) => call.handleTimer(at));
  const call = book.calls.get(step.call_id ?? "");
  if (!call) throw new Error(`no call ${String(step.call_id)}`);
  switch (step.do) {
    case "answer":
      return call.answer("v=0", at);
    case "hang_up":
      return call.hangUp(at);
    case "give_way":
      return call.giveWay(at);
    case "media_connected":
      return call.mediaConnected(at);
    default:
      throw new Error(`no step ${step.do}`);
  }
}

describe("one device's calls, step by step", () => {
  test.each(VECTORS.scenarios)("$name", ({ steps }) => {
    const book = new CallBook(ME);
    steps.forEach((step, number) => {
      const actions = run(book, step);
      expect([number, actions.map(rendered)]).toEqual([number, step.expect.actions]);
      const states = Object.fromEntries([...book.calls.values()].map((call) => [call.callId, call.state]));
      expect([number, states]).toEqual([number, step.expect.states]);
    });
  });
});
