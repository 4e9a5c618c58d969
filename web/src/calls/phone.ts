/**
 * Calls in the browser: the call core (machine.ts) driven by a messenger's `call` envelopes, media with
 * WebRTC (docs/protocol/messaging.md §14). One call with media at a time; any number ringing or seen on
 * other devices. The page's CallView shows `Phone.snapshot()` and calls the methods below.
 *
 * Descriptions go out once ICE gathering is complete (at most GATHER_MS), so a peer that does not trickle
 * (the terminal's aiortc) gets every candidate; candidates found later are trickled in `candidates`.
 */
import { b64uEncode } from "../crypto/base64";
import { randomBytes } from "../crypto/bytes";
import {
  type Action,
  type Call,
  CallBook,
  type CallRecord,
  type Party,
  leavesEntry,
  summary as summaryOf,
} from "./machine";
import { type Candidate, type Media, SignalError } from "./signals";

const GATHER_MS = 3000;
/** How long a prepared peer connection is used: well within the TURN credentials' hour (§14.6). */
const SPARE_MS = 10 * 60_000;

/** What the phone needs from the messenger it rides on. */
export interface CallTransport {
  readonly me: Party;
  now(): number;
  send(peerAccount: string, body: Record<string, unknown>): Promise<void>;
  iceServers(): Promise<RTCIceServer[]>;
  nameOf(accountId: string): string;
  /** Leave the call's entry in the conversation ("missed voice call"). */
  note(peerAccount: string, record: CallRecord, ts: number): void;
}

export interface CallOptions {
  /** Only relay candidates (TURN): `iceTransportPolicy: "relay"`. */
  relayOnly?: boolean;
  /** Offer only candidates on these addresses (the terminal's --ice-host); empty: all. */
  hostAddresses?: string[];
}

/** The candidate's connection address (RFC 8839 §5.1: the fifth field after `candidate:`). */
function candidateAddress(line: string): string {
  return (
    line
      .replace(/^a=/, "")
      .replace(/^candidate:/, "")
      .split(" ")[4] ?? ""
  );
}

/** `sdp` without the candidates whose address is not in `allowed` (all kept when `allowed` is empty). */
export function keepCandidates(sdp: string, allowed: readonly string[]): string {
  if (!allowed.length) return sdp;
  return sdp
    .split("\r\n")
    .filter((line) => !line.startsWith("a=candidate:") || allowed.includes(candidateAddress(line)))
    .join("\r\n");
}

export interface Snapshot {
  call: Call | null;
  peerName: string;
  /** A line for the person: why media could not start, why the call failed. */
  problem: string;
  muted: boolean;
  cameraOff: boolean;
  localStream: MediaStream | null;
  remoteStream: MediaStream | null;
  /** When the media connected (ms, local clock), for the duration. */
  connectedAt: number | null;
  /** The last call that ended here, with its entry, shown for a moment. */
  ended: { record: CallRecord; text: string } | null;
}

interface CallMedia {
  pc: RTCPeerConnection;
  local: MediaStream;
  remote: MediaStream;
  late: Candidate[];
  described: boolean;
}

function stopMedia(media: CallMedia): void {
  media.pc.close();
  for (const track of media.local.getTracks()) track.stop();
}

/** Words for a refused or missing microphone or camera (getUserMedia's errors). */
export function mediaProblem(error: unknown, video: boolean): string {
  const device = video ? "camera or microphone" : "microphone";
  const name = error instanceof DOMException ? error.name : "";
  if (name === "NotAllowedError" || name === "SecurityError")
    return `Lockstep may not use your ${device}: allow it in the browser's site settings, then call again.`;
  if (name === "NotFoundError" || name === "OverconstrainedError") return `No ${device} was found on this device.`;
  if (name === "NotReadableError") return `Your ${device} is in use by another application.`;
  return `Your ${device} could not be started.`;
}

export class Phone {
  readonly book: CallBook;
  private active: Call | null = null;
  private media: CallMedia | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private listeners = new Set<() => void>();
  private problem = "";
  private connectedAt: number | null = null;
  private ended: Snapshot["ended"] = null;
  private muted = false;
  private cameraOff = false;
  /** Dialling or answering has begun (the microphone is starting): one at a time. */
  private starting = false;
  /** The call shown: the active one, or one ringing or going on elsewhere. */
  private shown: Call | null = null;
  /** A peer connection gathering candidates for the next call (see `prepare`), and whether to keep one. */
  private spare: Promise<{ pc: RTCPeerConnection; made: number } | null> | null = null;
  private preparing = false;

  constructor(
    private readonly transport: CallTransport,
    private readonly options: CallOptions = {},
  ) {
    this.book = new CallBook(transport.me);
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  snapshot(): Snapshot {
    const call = this.shown;
    return {
      call,
      peerName: call ? this.transport.nameOf(call.peerAccount) : "",
      problem: this.problem,
      muted: this.muted,
      cameraOff: this.cameraOff,
      localStream: this.media?.local ?? null,
      remoteStream: this.media?.remote ?? null,
      connectedAt: this.connectedAt,
      ended: this.ended,
    };
  }

  /** Close the end-of-call line and any problem shown. */
  dismiss(): void {
    this.problem = "";
    this.ended = null;
    this.changed();
  }

  /** The current peer connection (for getStats). */
  get connection(): RTCPeerConnection | null {
    return this.media?.pc ?? null;
  }

  // --- dialling and answering ------------------------------------------------------------------------
  async dial(peerAccount: string, media: Media): Promise<void> {
    if (this.active || this.starting) return;
    this.starting = true;
    try {
      await this.placeCall(peerAccount, media);
    } finally {
      this.starting = false;
    }
  }

  private async placeCall(peerAccount: string, media: Media): Promise<void> {
    this.problem = "";
    this.ended = null;
    const started = await this.startMedia(media);
    if (!started) return;
    const offer = await started.pc.createOffer();
    await started.pc.setLocalDescription(offer);
    const sdp = await this.gathered(started);
    const calling = this.book.ringingFrom(peerAccount);
    if (calling) {
      // The person we dial is calling us (its offer came while the microphone started): answer it, as
      // a phone does, rather than start a second call for the glare rule to sort out (§14.9).
      stopMedia(started);
      this.shown = calling;
      await this.pickUp(calling);
      return;
    }
    const [call, actions] = this.book.dial(b64uEncode(randomBytes(16)), media, sdp, peerAccount, this.transport.now());
    this.active = this.shown = call;
    this.media = started;
    this.watch(call, started);
    await this.carryOut(call, actions);
  }

  /** Answer the ringing call (a second press while the microphone starts does nothing). */
  async answer(): Promise<void> {
    const call = this.shown;
    if (!call || call.state !== "ringing-in" || this.active || this.starting) return;
    this.starting = true;
    try {
      await this.pickUp(call);
    } finally {
      this.starting = false;
    }
  }

  private async pickUp(call: Call): Promise<void> {
    this.problem = "";
    const started = await this.startMedia(call.media);
    if (!started) {
      await this.carryOut(call, call.decline(this.transport.now()));
      return;
    }
    this.active = call;
    this.media = started;
    this.watch(call, started);
    await started.pc.setRemoteDescription({ type: "offer", sdp: call.remoteSdp });
    await started.pc.setLocalDescription(await started.pc.createAnswer());
    const sdp = await this.gathered(started);
    await this.carryOut(call, call.answer(sdp, this.transport.now()));
  }

  async decline(): Promise<void> {
    const call = this.shown;
    if (call?.state === "ringing-in") await this.carryOut(call, call.decline(this.transport.now()));
  }

  async hangUp(): Promise<void> {
    const call = this.active ?? this.shown;
    if (!call || call.state === "ended" || call.state === "elsewhere") return;
    await this.carryOut(call, call.hangUp(this.transport.now()));
  }

  toggleMute(): void {
    this.muted = !this.muted;
    for (const track of this.media?.local.getAudioTracks() ?? []) track.enabled = !this.muted;
    this.changed();
  }

  toggleCamera(): void {
    this.cameraOff = !this.cameraOff;
    for (const track of this.media?.local.getVideoTracks() ?? []) track.enabled = !this.cameraOff;
    this.changed();
  }

  /** Switch between voice and video in an answered call: add (or stop) the camera and renegotiate. */
  async switchMedia(): Promise<void> {
    const call = this.active;
    const media = this.media;
    if (!call || !media || (call.state !== "connected" && call.state !== "connecting")) return;
    const toVideo = call.media === "audio";
    if (toVideo) {
      let camera: MediaStream;
      try {
        camera = await navigator.mediaDevices.getUserMedia({ video: true });
      } catch (error) {
        this.problem = mediaProblem(error, true);
        this.changed();
        return;
      }
      for (const track of camera.getVideoTracks()) {
        media.local.addTrack(track);
        media.pc.addTrack(track, media.local);
      }
    } else {
      for (const sender of media.pc.getSenders())
        if (sender.track?.kind === "video") {
          sender.track.stop();
          media.local.removeTrack(sender.track);
          media.pc.removeTrack(sender);
        }
    }
    await media.pc.setLocalDescription(await media.pc.createOffer());
    const sdp = await this.gathered(media);
    await this.carryOut(call, call.renegotiate(sdp, toVideo ? "video" : "audio"));
  }

  // --- signals from the messenger ----------------------------------------------------------------------
  /** A decrypted `call` envelope (its routing checked by the messenger). */
  async onSignal(body: unknown, sender: Party, conversation: string, sentAt: number): Promise<void> {
    let routed: [Call | null, Action[]];
    try {
      routed = this.book.arrived(body, sender, conversation, sentAt, this.transport.now());
    } catch (error) {
      if (!(error instanceof SignalError)) throw error;
      // The reason only: never the description or candidate itself.
      console.warn(`Lockstep: dropped a call signal from device ${sender.deviceId}: ${error.message}`);
      return;
    }
    const [call, actions] = routed;
    if (!call) {
      for (const action of actions)
        if (action.kind === "ignored") console.info(`Lockstep: call signal ignored: ${action.reason}`);
      return;
    }
    if (!this.active && call.state !== "ended") this.shown = call;
    await this.carryOut(call, actions);
  }

  /** A message from `accountId` could not be decrypted: during a call with it, that ends the call. */
  async onUndecryptable(accountId: string, reason: string): Promise<void> {
    const call = this.active;
    if (!call || call.peerAccount !== accountId || call.state === "ended") return;
    this.problem = `A call message from ${this.transport.nameOf(accountId)} could not be decrypted (${reason}); it was changed on the way, so the call was ended.`;
    await this.carryOut(call, call.fail(this.transport.now()));
  }

  // --- media ----------------------------------------------------------------------------------------------
  private async startMedia(media: Media): Promise<CallMedia | null> {
    let local: MediaStream;
    try {
      local = await navigator.mediaDevices.getUserMedia({ audio: true, video: media === "video" });
    } catch (error) {
      this.problem = mediaProblem(error, media === "video");
      this.changed();
      return null;
    }
    const pc = (await this.takeSpare()) ?? (await this.newConnection(0));
    const remote = new MediaStream();
    for (const track of local.getTracks()) pc.addTrack(track, local);
    pc.addEventListener("track", (event) => {
      remote.addTrack(event.track);
      this.changed();
    });
    this.muted = this.cameraOff = false;
    return { pc, local, remote, late: [], described: false };
  }

  private async newConnection(candidatePool: number): Promise<RTCPeerConnection> {
    return new RTCPeerConnection({
      iceServers: await this.transport.iceServers(),
      iceTransportPolicy: this.options.relayOnly ? "relay" : "all",
      iceCandidatePoolSize: candidatePool,
    });
  }

  /** Make the next call's peer connection now (a direct chat opened, or a call ended with one open), so
   * its ICE candidates are gathered before anyone presses Call or Answer (`iceCandidatePoolSize`, RFC
   * 8829 §4.1.1): waiting for gathering was half of a browser's set-up time (docs/benchmarks.md). */
  prepare(): void {
    this.preparing = true;
    if (this.spare || this.active) return;
    const made = Date.now();
    this.spare = this.newConnection(1).then(
      (pc) => ({ pc, made }),
      () => null, // no server now: the dial makes its own connection
    );
  }

  /** The prepared connection, if there is one fresh enough that its TURN credentials still hold. */
  private async takeSpare(): Promise<RTCPeerConnection | null> {
    const spare = await this.spare;
    this.spare = null;
    if (!spare) return null;
    if (Date.now() - spare.made < SPARE_MS) return spare.pc;
    spare.pc.close();
    return null;
  }

  /** The local description once gathering completed (or GATHER_MS passed); later candidates trickle. */
  private async gathered(media: CallMedia): Promise<string> {
    const pc = media.pc;
    media.described = false;
    if (pc.iceGatheringState !== "complete")
      await new Promise<void>((resolve) => {
        const done = (): void => {
          if (pc.iceGatheringState === "complete") resolve();
        };
        pc.addEventListener("icegatheringstatechange", done);
        setTimeout(resolve, GATHER_MS);
      });
    media.described = true;
    return keepCandidates(pc.localDescription?.sdp ?? "", this.options.hostAddresses ?? []);
  }

  private watch(call: Call, media: CallMedia): void {
    const pc = media.pc;
    pc.addEventListener("icecandidate", (event) => {
      if (!media.described || !event.candidate) return;
      const c = event.candidate;
      const allowed = this.options.hostAddresses ?? [];
      if (allowed.length && !allowed.includes(candidateAddress(c.candidate))) return;
      void this.carryOut(
        call,
        call.localCandidates([{ candidate: c.candidate, mid: c.sdpMid, m_line_index: c.sdpMLineIndex }]),
      );
    });
    pc.addEventListener("connectionstatechange", () => {
      const now = this.transport.now();
      if (pc.connectionState === "connected") {
        this.connectedAt ??= Date.now();
        void this.carryOut(call, call.mediaConnected(now));
      } else if (pc.connectionState === "disconnected") {
        void this.carryOut(call, call.mediaInterrupted(now));
        if (call.role === "caller") pc.restartIce(); // a new offer follows (negotiationneeded)
      } else if (pc.connectionState === "failed") void this.carryOut(call, call.mediaFailed(now));
    });
    pc.addEventListener("negotiationneeded", () => {
      if (call.state !== "reconnecting") return; // voice/video switches renegotiate themselves
      void (async () => {
        await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
        const sdp = await this.gathered(media);
        await this.carryOut(call, call.renegotiate(sdp, call.media));
      })();
    });
  }

  private async carryOut(call: Call, actions: Action[]): Promise<void> {
    for (const action of actions) {
      switch (action.kind) {
        case "send":
          await this.transport.send(call.peerAccount, action.signal);
          break;
        case "remote-description": {
          const media = call === this.active ? this.media : null;
          if (!media) break;
          await media.pc.setRemoteDescription({ type: action.type, sdp: action.sdp });
          if (action.type === "offer") {
            await media.pc.setLocalDescription(await media.pc.createAnswer());
            const sdp = await this.gathered(media);
            await this.carryOut(call, call.answer(sdp, this.transport.now()));
          }
          break;
        }
        case "remote-candidates": {
          const media = call === this.active ? this.media : null;
          for (const c of action.candidates)
            if (media && c.candidate)
              await media.pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.mid, sdpMLineIndex: c.m_line_index });
          break;
        }
        case "ended":
          this.finish(call, action.record);
          break;
        case "answer-at-once":
          await this.answerInstead(call, action.replacing);
          break;
        case "ignored":
          console.info(`Lockstep: call signal ignored: ${action.reason}`);
          break;
      }
    }
    this.schedule();
    this.changed();
  }

  /** Glare (§14.9): the peer's call to us won over ours to it, so ours gives way and we answer theirs —
   * both people wanted this call, and one call has to be it. */
  private async answerInstead(call: Call, replacing: string): Promise<void> {
    const ours = this.book.calls.get(replacing);
    if (ours?.state === "ringing-out") await this.carryOut(ours, ours.giveWay(this.transport.now()));
    this.shown = call;
    await this.answer();
  }

  private finish(call: Call, record: CallRecord): void {
    const entry = this.entry(call, record);
    if (leavesEntry(record)) this.transport.note(call.peerAccount, record, this.transport.now());
    if (call === this.active) {
      if (this.media) stopMedia(this.media);
      this.media = null;
      this.active = null;
      this.connectedAt = null;
      if (this.preparing) this.prepare();
    }
    if (call === this.shown || this.shown === null) {
      this.shown = null;
      if (leavesEntry(record)) this.ended = { record, text: entry };
    }
  }

  private entry(call: Call, record: CallRecord): string {
    const name = this.transport.nameOf(call.peerAccount);
    if (!record.here && record.outcome === "completed") return `Answered on another device · ${name}`;
    return `${name}: ${summaryOf(record)}`;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const dues = [...this.book.calls.values()].map((c) => c.timer()).filter((d): d is number => d !== null);
    if (!dues.length) return;
    const wait = Math.max(0, Math.min(...dues) - this.transport.now());
    this.timer = setTimeout(() => {
      for (const call of this.book.calls.values()) void this.carryOut(call, call.handleTimer(this.transport.now()));
    }, wait + 10);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.media) stopMedia(this.media);
    this.media = null;
    this.preparing = false;
    void this.takeSpare().then((pc) => pc?.close());
  }
}
