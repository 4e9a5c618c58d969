/**
 * One call on one device, and every call a device knows of (docs/protocol/messaging.md §14.3-14.4): the
 * browser twin of src/lockstep/calls/machine.py and book.py. Sans-I/O: the caller passes the time (ms of
 * server time) and carries out the returned actions; every state change goes through TRANSITIONS.
 */
import { type Candidate, type HangupReason, type Media, type Signal, parseSignal } from "./signals";

export const RING_MS = 45_000;
export const RING_GRACE_MS = 5_000;
export const CONNECT_MS = 30_000;

export type Role = "caller" | "callee" | "observer";
export type CallState =
  "ringing-out" | "ringing-in" | "connecting" | "connected" | "reconnecting" | "elsewhere" | "ended";
export type Outcome = "completed" | "missed" | "cancelled" | "no-answer" | "declined" | "busy" | "failed" | "replaced";

export const TRANSITIONS: Record<CallState, readonly CallState[]> = {
  "ringing-out": ["connecting", "ended"],
  "ringing-in": ["connecting", "elsewhere", "ended"],
  connecting: ["connected", "ended"],
  connected: ["reconnecting", "ended"],
  reconnecting: ["connected", "ended"],
  elsewhere: ["ended"],
  ended: [],
};

const IN_CALL: readonly CallState[] = ["connecting", "connected", "reconnecting"];
const BUSY: readonly CallState[] = ["ringing-out", ...IN_CALL];

export interface CallRecord {
  callId: string;
  media: Media;
  outgoing: boolean;
  outcome: Outcome;
  durationMs: number;
  here: boolean;
}

/** Whether the conversation shows the call: one that gave way to its twin (glare, §14.9) does not. */
export const leavesEntry = (record: CallRecord): boolean => record.outcome !== "replaced";

/** The conversation entry: "missed voice call", "video call, 3 min" (machine.py's CallRecord.summary). */
export function summary(record: CallRecord): string {
  const what = `${record.media === "video" ? "video" : "voice"} call`;
  switch (record.outcome) {
    case "completed": {
      const seconds = Math.round(record.durationMs / 1000);
      return `${what}, ${seconds < 60 ? `${String(seconds)} s` : `${String(Math.round(seconds / 60))} min`}`;
    }
    case "missed":
      return `missed ${what}`;
    case "cancelled":
      return `cancelled ${what}`;
    case "no-answer":
      return `${what}, no answer`;
    case "declined":
      return `${what}, declined`;
    case "busy":
      return `${what}, busy`;
    case "failed":
      return `${what} failed`;
    case "replaced":
      return `${what}, replaced by the other side's call`;
  }
}

export interface Party {
  accountId: string;
  deviceId: string;
}

export type Action =
  | { kind: "send"; signal: Signal }
  | { kind: "remote-description"; type: "offer" | "answer"; sdp: string; media: Media }
  | { kind: "remote-candidates"; candidates: Candidate[] }
  | { kind: "ended"; record: CallRecord }
  /** Answer this ringing call now: this device was dialling the same peer, whose call won the glare
   * (§14.9); `replacing` (our call's id) must first give way with Call.giveWay. */
  | { kind: "answer-at-once"; replacing: string }
  | { kind: "ignored"; reason: string };

export class CallStateError extends Error {
  override name = "CallStateError";
}

const same = (a: Party | null, b: Party | null): boolean =>
  a !== null && b !== null && a.accountId === b.accountId && a.deviceId === b.deviceId;

export class Call {
  state: CallState;
  stateSince: number;
  remoteSdp = "";
  answerer: Party | null = null;
  answeredAt: number | null = null;
  record: CallRecord | null = null;
  readonly history: CallState[] = [];

  private constructor(
    readonly callId: string,
    readonly role: Role,
    public media: Media,
    readonly me: Party,
    readonly peerAccount: string,
    readonly caller: Party,
    state: CallState,
    now: number,
  ) {
    this.state = state;
    this.stateSince = now;
  }

  static dial(
    callId: string,
    media: Media,
    sdp: string,
    me: Party,
    peerAccount: string,
    now: number,
  ): [Call, Action[]] {
    const call = new Call(callId, "caller", media, me, peerAccount, me, "ringing-out", now);
    return [call, [{ kind: "send", signal: { type: "offer", call_id: callId, media, sdp } }]];
  }

  static fromOffer(
    offer: Extract<Signal, { type: "offer" }>,
    sender: Party,
    me: Party,
    peerAccount: string,
    now: number,
    sentAt: number,
    busy: boolean,
  ): [Call, Action[]] {
    if (sender.accountId === me.accountId)
      return [new Call(offer.call_id, "observer", offer.media, me, peerAccount, sender, "elsewhere", now), []];
    const call = new Call(offer.call_id, "callee", offer.media, me, sender.accountId, sender, "ringing-in", now);
    call.remoteSdp = offer.sdp;
    if (busy)
      return [call, [{ kind: "send", signal: { type: "busy", call_id: offer.call_id } }, ...call.end("busy", now)]];
    if (now - sentAt >= RING_MS) return [call, call.end("missed", now)];
    return [call, []];
  }

  // --- this device's person and media -------------------------------------------------------------
  answer(sdp: string, now: number): Action[] {
    if (this.state === "ringing-in") {
      this.answerer = this.me;
      this.answeredAt = now;
      this.move("connecting", now);
    } else if (!IN_CALL.includes(this.state)) throw new CallStateError(`cannot answer a call that is ${this.state}`);
    return [{ kind: "send", signal: { type: "answer", call_id: this.callId, sdp } }];
  }

  renegotiate(sdp: string, media: Media): Action[] {
    if (!IN_CALL.includes(this.state)) throw new CallStateError(`cannot renegotiate a call that is ${this.state}`);
    this.media = media;
    return [{ kind: "send", signal: { type: "offer", call_id: this.callId, media, sdp } }];
  }

  decline(now: number): Action[] {
    if (this.state !== "ringing-in") throw new CallStateError(`cannot decline a call that is ${this.state}`);
    return [{ kind: "send", signal: { type: "decline", call_id: this.callId } }, ...this.end("declined", now)];
  }

  /** Our call lost the glare to the peer's (§14.9): end it, telling every device it is replaced. */
  giveWay(now: number): Action[] {
    if (this.state !== "ringing-out") throw new CallStateError(`cannot give way in a call that is ${this.state}`);
    return [this.hangupSignal("replaced"), ...this.end("replaced", now)];
  }

  hangUp(now: number): Action[] {
    if (this.state === "ringing-in") return this.decline(now);
    if (this.state === "ringing-out") return [this.hangupSignal("cancelled"), ...this.end("cancelled", now)];
    if (IN_CALL.includes(this.state)) return [this.hangupSignal("ended"), ...this.end("completed", now)];
    throw new CallStateError(`cannot hang up a call that is ${this.state}`);
  }

  localCandidates(candidates: Candidate[]): Action[] {
    if (this.state === "ended" || this.state === "elsewhere" || this.state === "ringing-in" || !candidates.length)
      return [];
    return [{ kind: "send", signal: { type: "candidates", call_id: this.callId, candidates } }];
  }

  mediaConnected(now: number): Action[] {
    if (this.state === "connecting" || this.state === "reconnecting") this.move("connected", now);
    return [];
  }

  mediaInterrupted(now: number): Action[] {
    if (this.state === "connected") this.move("reconnecting", now);
    return [];
  }

  mediaFailed(now: number): Action[] {
    if (IN_CALL.includes(this.state)) return [this.hangupSignal("failed"), ...this.end("failed", now)];
    return [];
  }

  /** Give up for a reason outside the media (a signal from the peer that could not be decrypted). */
  fail(now: number): Action[] {
    if (this.state === "ringing-out") return [this.hangupSignal("failed"), ...this.end("failed", now)];
    if (this.state === "ringing-in") return this.end("failed", now);
    return this.mediaFailed(now);
  }

  // --- time ------------------------------------------------------------------------------------------
  timer(): number | null {
    if (this.state === "ringing-out") return this.stateSince + RING_MS;
    if (this.state === "ringing-in") return this.stateSince + RING_MS + RING_GRACE_MS;
    if (this.state === "connecting" || this.state === "reconnecting") return this.stateSince + CONNECT_MS;
    return null;
  }

  handleTimer(now: number): Action[] {
    const due = this.timer();
    if (due === null || now < due) return [];
    if (this.state === "ringing-out") return [this.hangupSignal("no-answer"), ...this.end("no-answer", now)];
    if (this.state === "ringing-in") return this.end("missed", now);
    return this.mediaFailed(now);
  }

  // --- signals ------------------------------------------------------------------------------------------
  receive(signal: Signal, sender: Party, now: number): Action[] {
    if (signal.call_id !== this.callId) throw new CallStateError("a signal for another call");
    if (this.state === "ended") return [{ kind: "ignored", reason: `${signal.type} for a call that has ended` }];
    if (same(sender, this.me)) return [{ kind: "ignored", reason: "a signal from this device itself" }];
    const fromPeer = sender.accountId === this.peerAccount;
    if (this.state === "ringing-out") {
      if (!fromPeer) return [{ kind: "ignored", reason: "a signal from another device of ours while dialling" }];
      if (signal.type === "answer") {
        this.answerer = sender;
        this.answeredAt = now;
        this.move("connecting", now);
        return [{ kind: "remote-description", type: "answer", sdp: signal.sdp, media: this.media }];
      }
      if (signal.type === "busy") return this.end("busy", now);
      if (signal.type === "decline") return this.end("declined", now);
      return [{ kind: "ignored", reason: `${signal.type} before the call was answered` }];
    }
    if (this.state === "ringing-in") {
      if (same(sender, this.caller) && signal.type === "hangup")
        return this.end(signal.reason === "failed" || signal.reason === "replaced" ? signal.reason : "missed", now);
      if (!fromPeer) {
        if (signal.type === "answer") {
          this.answerer = sender;
          this.answeredAt = now;
          this.move("elsewhere", now);
          return [];
        }
        if (signal.type === "decline") return this.end("declined", now);
        if (signal.type === "busy") return this.end("busy", now);
      }
      return [{ kind: "ignored", reason: `${signal.type} while ringing` }];
    }
    if (this.state === "elsewhere") return this.elsewhere(signal, sender, now);
    const peerDevice = this.role === "caller" ? this.answerer : this.caller;
    if (!same(sender, peerDevice))
      return [{ kind: "ignored", reason: "a signal from a device that is not in this call" }];
    switch (signal.type) {
      case "candidates":
        return [{ kind: "remote-candidates", candidates: signal.candidates }];
      case "offer":
        this.media = signal.media;
        return [{ kind: "remote-description", type: "offer", sdp: signal.sdp, media: signal.media }];
      case "answer":
        return [{ kind: "remote-description", type: "answer", sdp: signal.sdp, media: this.media }];
      case "hangup":
        return this.end(signal.reason === "failed" ? "failed" : "completed", now);
      default:
        return [{ kind: "ignored", reason: `${signal.type} in an answered call` }];
    }
  }

  private elsewhere(signal: Signal, sender: Party, now: number): Action[] {
    if (signal.type === "answer" && this.answerer === null) {
      this.answerer = sender;
      this.answeredAt = now;
    } else if (signal.type === "offer") this.media = signal.media;
    else if (signal.type === "hangup") {
      if (this.answerer !== null) return this.end("completed", now);
      const byReason: Partial<Record<HangupReason, Outcome>> = {
        "no-answer": "no-answer",
        failed: "failed",
        replaced: "replaced",
      };
      return this.end(byReason[signal.reason] ?? (this.role === "observer" ? "cancelled" : "missed"), now);
    } else if (signal.type === "busy" && this.answerer === null) return this.end("busy", now);
    else if (signal.type === "decline" && this.answerer === null) return this.end("declined", now);
    return [];
  }

  private hangupSignal(reason: HangupReason): Action {
    return { kind: "send", signal: { type: "hangup", call_id: this.callId, reason } };
  }

  private move(state: CallState, now: number): void {
    if (!TRANSITIONS[this.state].includes(state))
      throw new CallStateError(`a call cannot go from ${this.state} to ${state}`);
    this.history.push(this.state);
    this.state = state;
    this.stateSince = now;
  }

  private end(outcome: Outcome, now: number): Action[] {
    const answered = this.answeredAt !== null && outcome === "completed";
    this.move("ended", now);
    this.record = {
      callId: this.callId,
      media: this.media,
      outgoing: this.role !== "callee",
      outcome,
      durationMs: answered && this.answeredAt !== null ? now - this.answeredAt : 0,
      here: this.role === "caller" || same(this.answerer, this.me),
    };
    return [{ kind: "ended", record: this.record }];
  }
}

/** The other account of a `direct:a:b` conversation, or null (book.py's peer_of). */
export function peerOf(conversation: string, me: string): string | null {
  const parts = conversation.split(":");
  if (parts.length !== 3 || parts[0] !== "direct" || !parts.slice(1).includes(me)) return null;
  const other = parts[1] === me ? parts[2] : parts[1];
  return other === undefined || other === me ? null : other;
}

/** Every call this device knows of, by id (book.py's CallBook). */
export class CallBook {
  readonly calls = new Map<string, Call>();
  constructor(readonly me: Party) {}

  get busy(): boolean {
    return [...this.calls.values()].some((call) => BUSY.includes(call.state));
  }

  dial(callId: string, media: Media, sdp: string, peerAccount: string, now: number): [Call, Action[]] {
    const [call, actions] = Call.dial(callId, media, sdp, this.me, peerAccount, now);
    this.calls.set(callId, call);
    return [call, actions];
  }

  /** A `call` envelope's body from `sender`; throws SignalError for a malformed one. */
  arrived(body: unknown, sender: Party, conversation: string, sentAt: number, now: number): [Call | null, Action[]] {
    const signal = parseSignal(body);
    const peerAccount = peerOf(conversation, this.me.accountId);
    if (peerAccount === null || (sender.accountId !== peerAccount && sender.accountId !== this.me.accountId))
      return [null, [{ kind: "ignored", reason: "a call signal outside a direct conversation with its sender" }]];
    const call = this.calls.get(signal.call_id);
    if (call) return [call, call.receive(signal, sender, now)];
    if (signal.type !== "offer")
      return [null, [{ kind: "ignored", reason: `${signal.type} for a call this device never saw` }]];
    const rival = sender.accountId === peerAccount ? this.rival(signal.call_id, sender) : null;
    if (rival && glareWinner(rival.callId, signal.call_id) === rival.callId)
      return [null, [{ kind: "ignored", reason: "an offer that lost the glare to our own call to the same account" }]];
    const busy = [...this.calls.values()].some((c) => c !== rival && BUSY.includes(c.state));
    const [made, actions] = Call.fromOffer(signal, sender, this.me, peerAccount, now, sentAt, busy);
    this.calls.set(signal.call_id, made);
    if (rival?.role === "caller" && made.state === "ringing-in")
      actions.push({ kind: "answer-at-once", replacing: rival.callId });
    return [made, actions];
  }

  /** A call from `peerAccount` ringing on this device, if one is. */
  ringingFrom(peerAccount: string): Call | null {
    for (const c of this.calls.values()) if (c.peerAccount === peerAccount && c.state === "ringing-in") return c;
    return null;
  }

  /** Our account's unanswered call to the sender's account: this device dialling, or another of ours. */
  private rival(callId: string, sender: Party): Call | null {
    for (const c of this.calls.values())
      if (
        c.peerAccount === sender.accountId &&
        c.callId !== callId &&
        ((c.role === "caller" && c.state === "ringing-out") ||
          (c.role === "observer" && c.state === "elsewhere" && c.answerer === null))
      )
        return c;
    return null;
  }
}

/** Of two calls two accounts dialled to each other at once, the one that goes on: the lower call id
 * (compared by UTF-16 code unit; call ids are ASCII), which both sides compute alike (§14.9). */
export const glareWinner = (ours: string, theirs: string): string => (ours < theirs ? ours : theirs);
