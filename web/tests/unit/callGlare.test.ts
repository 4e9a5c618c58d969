// Glare in the browser's call core (docs/protocol/messaging.md §14.9), as tests/calls/test_calls_glare.py
// checks the Python one: both accounts dial each other before either offer arrives, every send reaches
// every other device, each device reads its own queue in order but the queues are read in a random
// order. A seeded generator makes 500 such runs (fast-check would shrink a failure, but one table of
// seeds reproduces any failure exactly and needs no new dependency).
import { expect, test } from "vitest";
import { type Action, CallBook, type Party, glareWinner } from "../../src/calls/machine";

const ALICE = "alice-account";
const BOB = "bob-account";
const NOW = 1_000_000;
const SDP = "v=0"; // the books never parse a description they make; arriving ones are checked below
const ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Mulberry32: a small seeded generator, so a failing seed can be run again. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FULL_SDP = [
  "v=0",
  "o=- 1 1 IN IP4 0.0.0.0",
  "s=-",
  "t=0 0",
  "m=audio 9 UDP/TLS/RTP/SAVPF 111",
  "a=ice-ufrag:Xy3Z",
  "a=ice-pwd:0123456789abcdefghijkl",
  `a=fingerprint:sha-256 ${Array(32).fill("AB").join(":")}`,
  "",
].join("\r\n");

class Devices {
  readonly books = new Map<Party, CallBook>();
  readonly queues = new Map<Party, [Party, unknown][]>();
  readonly ended = new Map<Party, { callId: string; outcome: string }[]>();

  constructor(readonly parties: Party[]) {
    for (const party of parties) {
      this.books.set(party, new CallBook(party));
      this.queues.set(party, []);
      this.ended.set(party, []);
    }
  }

  private book(party: Party): CallBook {
    const book = this.books.get(party);
    if (!book) throw new Error("no such device");
    return book;
  }

  carryOut(party: Party, callId: string, actions: Action[]): void {
    const book = this.book(party);
    for (const action of actions) {
      if (action.kind === "send") {
        const body = "sdp" in action.signal ? { ...action.signal, sdp: FULL_SDP } : action.signal;
        for (const other of this.parties) if (other !== party) this.queues.get(other)?.push([party, body]);
      } else if (action.kind === "ended")
        this.ended.get(party)?.push({ callId: action.record.callId, outcome: action.record.outcome });
      else if (action.kind === "answer-at-once") {
        const ours = book.calls.get(action.replacing);
        const theirs = book.calls.get(callId);
        if (!ours || !theirs) throw new Error("answer-at-once names calls the book has");
        this.carryOut(party, ours.callId, ours.giveWay(NOW));
        this.carryOut(party, callId, theirs.answer(SDP, NOW));
      }
    }
  }

  dial(party: Party, callId: string): void {
    const peer = party.accountId === ALICE ? BOB : ALICE;
    this.carryOut(party, callId, this.book(party).dial(callId, "audio", SDP, peer, NOW)[1]);
  }

  deliver(party: Party): void {
    const next = this.queues.get(party)?.shift();
    if (!next) return;
    const [call, actions] = this.book(party).arrived(next[1], next[0], `direct:${ALICE}:${BOB}`, NOW, NOW);
    if (call) this.carryOut(party, call.callId, actions);
  }

  state(party: Party, callId: string): string | undefined {
    return this.book(party).calls.get(callId)?.state;
  }
}

test.each(Array.from({ length: 500 }, (_, seed) => seed))("glare run %i: the lower call id goes on", (seed) => {
  const random = generator(seed);
  const id = (): string => Array.from({ length: 22 }, () => ID_CHARS[Math.floor(random() * 64)]).join("");
  const alices = Array.from({ length: 1 + Math.floor(random() * 3) }, (_, n) => ({
    accountId: ALICE,
    deviceId: `a${String(n)}`,
  }));
  const bobs = Array.from({ length: 1 + Math.floor(random() * 3) }, (_, n) => ({
    accountId: BOB,
    deviceId: `b${String(n)}`,
  }));
  const [alice, bob] = [alices[0], bobs[0]] as [Party, Party];
  const devices = new Devices([...alices, ...bobs]);
  const [aliceCall, bobCall] = [id(), id()];
  devices.dial(alice, aliceCall);
  devices.dial(bob, bobCall);
  for (let step = 0; step < 10_000; step++) {
    const waiting = devices.parties.filter((p) => devices.queues.get(p)?.length);
    const pick = waiting[Math.floor(random() * waiting.length)];
    if (!pick) break;
    devices.deliver(pick);
  }
  const winner = glareWinner(aliceCall, bobCall);
  const loser = winner === aliceCall ? bobCall : aliceCall;
  const [winning, losing] = winner === aliceCall ? [alice, bob] : [bob, alice];
  expect(devices.state(winning, winner)).toBe("connecting");
  expect(devices.state(losing, winner)).toBe("connecting");
  for (const party of devices.parties) {
    if (party !== winning && party !== losing) expect(devices.state(party, winner)).toBe("elsewhere");
    expect([undefined, "ended"]).toContain(devices.state(party, loser));
    for (const ended of devices.ended.get(party) ?? []) expect(ended).toEqual({ callId: loser, outcome: "replaced" });
  }
});
