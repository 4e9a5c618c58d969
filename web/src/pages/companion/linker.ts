/**
 * The companion's side of linking and staying linked (linking.md §8, "Companion"), without the page: one
 * explicit state (`CompanionPhase`), changed only here, that the page renders (../companion.ts).
 *
 *   connecting → waiting → showing ⇄ scanned → verifying → linked → logging_out → logged_out
 *   waiting | showing | scanned → idle | declined   (code expired, phone declined: a click starts again)
 *   waiting → unavailable (no code from the server) · verifying → failed (grant refused, nothing stored)
 *
 * Each link session (one `link.start`) has fresh keys and one fresh secret per ref; it lives in the phases
 * that show or wait for its code, and its secrets are zeroed as soon as the phase moves on.
 *
 * DOM-free: the socket comes from `open`, what is kept goes through `store`, and everything the page does
 * in response (messaging, other tabs, notices) goes through `hooks`.
 */
import { b64uDecode, b64uEncode } from "../../crypto/base64";
import { equalBytes, randomBytes } from "../../crypto/bytes";
import { exportEd25519Public, generateEd25519, keyId } from "../../crypto/ed25519";
import { type Envelope, authSignature } from "../../crypto/envelope";
import { generateX25519 } from "../../crypto/hpke";
import {
  type DeviceEntry,
  type DeviceList,
  InvalidDeviceList,
  findDevice,
  listUpdate,
  verifyDeviceList,
} from "../../link/deviceList";
import { countdown, expired, offlineDays } from "../../link/idle";
import { judgedNow, newcomers, onProbation } from "../../link/probation";
import { idleText } from "../../link/wording";
import { type AccountInfo, GrantError, type OpenedGrant, openGrant } from "../../link/grant";
import { matchingNumber } from "../../link/matching";
import { encodeLinkText } from "../../link/qr";
import type { DevicesChanged, Hello, LinkCodeOffer, LinkGranted, LinkRef } from "../../net/events";
import { type Clock, ReconnectingSocket } from "../../net/reconnecting";
import { CLOSE_UNLINKED, ServerError, type ServerEvent, type SocketHandlers } from "../../net/socket";
import { answerOffer, codeFrom, startFields } from "./typedCode";

/** What a linked companion keeps (sealed, ../../store/atRest.ts). Private keys are non-extractable CryptoKeys. */
export interface CompanionState {
  v: 1;
  origin: string;
  deviceKey: CryptoKey;
  devicePublic: Uint8Array;
  deviceId: string;
  ephemeralKey: CryptoKey;
  account: AccountInfo;
  accountKey: Uint8Array;
  certificate: Envelope;
  deviceList: Envelope;
  listVersion: number;
  deviceName: string;
  linkedAt: number;
}

/** What the linker needs of a socket (LockstepSocket has it). */
export interface LinkSocket {
  readonly hello: Hello;
  readonly isOpen: boolean;
  request(op: string, fields?: Record<string, unknown>): Promise<Record<string, unknown>>;
  serverNow(): number;
  close(): void;
}

export interface CompanionStore {
  load(): Promise<CompanionState | undefined>;
  save(state: CompanionState): Promise<void>;
  wipe(): Promise<void>;
}

export interface CompanionHooks<S extends LinkSocket> {
  /** A socket opened (the page checks the clock on it). */
  opened(socket: S): void;
  /** Signed in as a linked device: messaging can start on `socket`. */
  signedIn(socket: S, state: CompanionState): void;
  /** A server event while linked (messaging's). */
  event(event: ServerEvent): void;
  /** The socket closed. */
  disconnected(): void;
  /** The account's device list changed (another device linked, unlinked or renamed). */
  devicesChanged(change: DevicesChanged["change"], state: CompanionState): void;
  /** This browser was linked just now (other tabs reload). */
  linked(): void;
  /** Forget this device's messages and keys (before the page says it is logged out). */
  wipe(deviceId: string | undefined): Promise<void>;
  /** The stored state is gone; `here` when the unlink was noticed by this tab (tell the others). */
  unlinked(here: boolean): Promise<void>;
}

/** One link session: fresh keys, and one fresh secret per ref (§6.1). */
export class LinkSession {
  readonly refs: { ref: Uint8Array; secret: Uint8Array }[] = [];
  expiresAt = 0;
  last = false;
  /** A typed-code session's code (linking.md §10), answered at most once. */
  typed: string | null = null;
  answered = false;

  private constructor(
    readonly device: CryptoKeyPair,
    readonly devicePublic: Uint8Array,
    readonly ephemeral: CryptoKeyPair,
    readonly ephemeralPublic: Uint8Array,
  ) {}

  static async create(): Promise<LinkSession> {
    const device = await generateEd25519(false);
    const ephemeral = await generateX25519(false);
    const ephemeralPublic = new Uint8Array(await crypto.subtle.exportKey("raw", ephemeral.publicKey));
    return new LinkSession(device, await exportEd25519Public(device.publicKey), ephemeral, ephemeralPublic);
  }

  /** Keeps a ref with a fresh secret (the six newest: a grant may answer any recent code). */
  add(ref: Uint8Array): Uint8Array {
    const secret = randomBytes(32);
    this.refs.push({ ref, secret });
    while (this.refs.length > MAX_REFS) this.refs.shift()?.secret.fill(0);
    return secret;
  }

  forget(): void {
    for (const r of this.refs) r.secret.fill(0);
  }
}

const MAX_REFS = 6;

/** How the link to the server stands while linked. */
export type Connection = "connecting" | "online" | "reconnecting" | "unreachable" | "refused";

export type CompanionPhase =
  | { name: "connecting"; why: "start" | "reconnecting" | "unreachable" }
  | { name: "waiting"; session: LinkSession | null }
  /** `text` is the QR code's; a typed-code session shows `session.typed` instead. */
  | { name: "showing"; session: LinkSession; text: string }
  /** `number`: what a phone on another network asks the person to type (linking.md §6.5), once computed. */
  | { name: "scanned"; session: LinkSession; number: string | null }
  | { name: "verifying"; session: LinkSession }
  | { name: "unavailable"; rateLimited: boolean }
  | { name: "idle" }
  | { name: "declined"; reason: string }
  | { name: "failed"; reason: string }
  | { name: "linked"; state: CompanionState; connection: Connection }
  | { name: "logging_out"; reason: string }
  | { name: "logged_out"; reason: string };

/** Phases that offer a new code: the page waits for a click, and a closed socket stays closed. */
const OFFERING: readonly CompanionPhase["name"][] = ["unavailable", "idle", "declined"];

function sessionOf(phase: CompanionPhase): LinkSession | null {
  return "session" in phase ? phase.session : null;
}

/** What a linked companion shows about its account's devices (linking.md §4.5, §4.6). */
export interface LinkedNotices {
  /** The signed list's newcomers on probation (never this device): "New device linked … — not you?". */
  newcomers: DeviceEntry[];
  /** When this device is itself on probation: until when. */
  probationUntil: number | null;
  /** Idle logout: days the phone has been offline and days left, once fewer than 3 remain. */
  idle: { offline: number; left: number } | null;
  /** The time the notices were judged at (the later clock for idle logout, the earlier for probation). */
  now: number;
}

export class CompanionLinker<S extends LinkSocket> {
  private current: CompanionPhase = { name: "connecting", why: "start" };
  /** The newest accepted device list, verified (null until linked). */
  private list: DeviceList | null = null;
  /** Show a code to type instead of QR codes (the person chose "Link with a code instead"). */
  private typedMode = false;
  private readonly listeners = new Set<() => void>();
  readonly connection: ReconnectingSocket<S>;

  constructor(
    open: (handlers: SocketHandlers) => Promise<S>,
    private readonly store: CompanionStore,
    private readonly hooks: CompanionHooks<S>,
    clock?: Clock,
  ) {
    this.connection = new ReconnectingSocket<S>(
      open,
      {
        opened: (socket) => this.opened(socket),
        event: (event) => void this.onEvent(event),
        closed: (code) => this.closed(code),
        unreachable: () => {
          this.whileLinked((linked) => this.set({ ...linked, connection: "unreachable" }), {
            name: "connecting",
            why: "unreachable",
          });
        },
      },
      clock,
    );
  }

  get phase(): CompanionPhase {
    return this.current;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Loads what is kept (a linked device signs in again) and connects. */
  async start(): Promise<void> {
    let state: CompanionState | undefined;
    try {
      const loaded = await this.store.load();
      // Stored by this page, perhaps an older version of it.
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      if (loaded && loaded.v === 1 && (await keyId(loaded.devicePublic)) === loaded.deviceId) state = loaded;
    } catch {
      state = undefined;
    }
    if (state) {
      try {
        this.list = await verifyDeviceList(state.deviceList, state.accountKey, state.account.id);
      } catch {
        this.list = null; // kept by this page after it verified it: only a damaged store gets here
      }
      this.set({ name: "linked", state, connection: "connecting" });
      await this.checkIdle(); // before the server can say anything (linking.md §4.5)
      if (this.current.name !== "linked") return;
    }
    await this.connection.connect();
  }

  /**
   * Idle logout (linking.md §4.5): a list 14 days old logs this browser out and wipes it, as an unlink
   * does. Checked on page start, on each list update and on the page's timer, on the later of this
   * computer's clock and the server's: a server that stops relaying the phone's lists cannot keep it alive.
   */
  async checkIdle(): Promise<void> {
    if (this.current.name !== "linked" || !this.list) return;
    if (expired(this.list.issued_at, this.idleNow())) await this.unlinked(idleText("logged_out"));
  }

  /** What the linked page shows about the account's devices now (null when not linked). */
  notices(): LinkedNotices | null {
    const state = this.linkedState();
    const list = this.list;
    if (!state || !list) return null;
    const idleNow = this.idleNow();
    const probationNow = judgedNow(this.connection.current?.serverNow() ?? Date.now(), Date.now());
    const left = countdown(list.issued_at, idleNow);
    const here = findDevice(list, state.deviceId);
    return {
      newcomers: newcomers(list, probationNow, state.deviceId),
      probationUntil: onProbation(here, probationNow) ? (here?.probation_until ?? null) : null,
      idle: left === null ? null : { offline: offlineDays(list.issued_at, idleNow), left },
      now: probationNow,
    };
  }

  private idleNow(): number {
    return Math.max(this.connection.current?.serverNow() ?? 0, Date.now());
  }

  /** Seconds until the code on screen expires (null when none is shown). */
  secondsLeft(): number | null {
    const socket = this.connection.current;
    if (this.current.name !== "showing" || !socket) return null;
    return Math.max(0, Math.ceil((this.current.session.expiresAt - socket.serverNow()) / 1000));
  }

  /** What is kept while linked (undefined otherwise). */
  linkedState(): CompanionState | undefined {
    return this.current.name === "linked" ? this.current.state : undefined;
  }

  // --- the person's clicks ---------------------------------------------------------------------------
  /** "Get a new code" / "Try again": on the open socket if it is still there, else on a new one. */
  newCode(): void {
    if (this.connection.current?.isOpen && OFFERING.includes(this.current.name)) {
      void this.startLinking();
      return;
    }
    this.set({ name: "connecting", why: "start" });
    void this.connection.connect();
  }

  /** "Link with a code instead" / "Show a QR code instead": returns whether codes are typed now. A session
   * that shows or waits for a code starts again in the other mode. */
  toggleTypedMode(): boolean {
    this.typedMode = !this.typedMode;
    const restartable = ["showing", "waiting", "unavailable", "idle", "declined"].includes(this.current.name);
    if (this.connection.current?.isOpen && restartable) void this.startLinking();
    return this.typedMode;
  }

  /** "Link again" after being logged out. */
  linkAgain(): void {
    this.set({ name: "connecting", why: "start" });
    this.connection.served();
    void this.connection.connect();
  }

  /** Another tab of this page was unlinked or linked (they share what is kept). */
  otherTab(message: "linked" | "unlinked"): "reload" | null {
    if (message === "linked" && this.current.name !== "linked") return "reload";
    if (message === "unlinked" && this.current.name === "linked")
      void this.unlinked("This browser was unlinked from your account.", false);
    return null;
  }

  // --- the connection --------------------------------------------------------------------------------
  private async opened(socket: S): Promise<void> {
    this.hooks.opened(socket);
    if (this.current.name === "linked") await this.authenticate(socket);
    else await this.startLinking();
  }

  private closed(code: number): boolean {
    this.hooks.disconnected();
    if (code === CLOSE_UNLINKED) {
      void this.unlinked("This browser was unlinked from your account.");
      return false;
    }
    const phase = this.current;
    if (phase.name === "logging_out" || phase.name === "logged_out") return false;
    // A page offering a new code after its session ended waits for the click, which reconnects: the
    // server closes such sockets after its unauthenticated deadline (SECURITY.md "Connection floods").
    if (OFFERING.includes(phase.name)) return false;
    // Never leave a code on screen whose session is gone: hide it at once (set() zeroes its secrets).
    this.whileLinked((linked) => this.set({ ...linked, connection: "reconnecting" }), {
      name: "connecting",
      why: "reconnecting",
    });
    return true;
  }

  // --- linking --------------------------------------------------------------------------------------
  private async startLinking(): Promise<void> {
    const socket = this.connection.current;
    if (!socket) return;
    this.set({ name: "waiting", session: null });
    const session = await LinkSession.create();
    const phase = this.current;
    if (phase.name !== "waiting" || phase.session !== null) {
      session.forget(); // the socket closed (or a newer session began) meanwhile
      return;
    }
    this.set({ name: "waiting", session });
    try {
      const started = await socket.request("link.start", startFields(this.typedMode));
      session.typed = codeFrom(started, this.typedMode);
      this.connection.served(); // back off again from the start only once the server really served us
    } catch (error) {
      if (sessionOf(this.current) !== session) return;
      this.set({ name: "unavailable", rateLimited: error instanceof ServerError && error.code === "rate_limited" });
    }
  }

  private onRef(event: LinkRef): void {
    // After "scanned" too: a phone that let its claim run out hands the page the next code (§6.3).
    const phase = this.current;
    const socket = this.connection.current;
    if (!socket || (phase.name !== "waiting" && phase.name !== "showing" && phase.name !== "scanned")) return;
    const session = phase.session;
    if (!session) return;
    let ref: Uint8Array;
    try {
      ref = b64uDecode(event.ref);
    } catch {
      return;
    }
    if (ref.length !== 32) return;
    const secret = session.add(ref); // a fresh link_secret for every ref (§6.1)
    session.expiresAt = event.expires_at;
    session.last = event.last;
    const text = encodeLinkText(socket.hello.server.origin, {
      version: 1,
      ref,
      ephemeralKey: session.ephemeralPublic,
      deviceKey: session.devicePublic,
      linkSecret: secret,
    });
    this.set({ name: "showing", session, text });
  }

  /** A phone inspected the code: it is spoken for, so hide it, stop counting down, and show the number
   * a phone on another network asks for (from the code's ref and secret: the server cannot compute it). */
  private async onScanned(): Promise<void> {
    if (this.current.name !== "showing") return;
    const session = this.current.session;
    this.set({ name: "scanned", session, number: null });
    const shown = session.refs[session.refs.length - 1];
    if (!shown) return;
    const number = await matchingNumber(shown.ref, shown.secret);
    const now = this.phase; // read again: the phase may have moved on while the number was computed
    if (now.name === "scanned" && now.session === session) this.set({ ...now, number });
  }

  /** A phone offers CPace on the typed code: answer once with the payload a QR code would carry. */
  private async onCodeOffer(event: LinkCodeOffer): Promise<void> {
    const phase = this.current;
    const socket = this.connection.current;
    if (phase.name !== "showing" || !socket || !phase.session.typed || phase.session.answered) return;
    const session = phase.session;
    session.answered = true; // one CPace run per code, whatever the server sends
    const shown = session.refs[session.refs.length - 1];
    if (!shown || !session.typed) return;
    const payload = {
      version: 1,
      ref: shown.ref,
      ephemeralKey: session.ephemeralPublic,
      deviceKey: session.devicePublic,
      linkSecret: shown.secret,
    };
    await answerOffer(socket, session.typed, payload, event);
  }

  private async onGranted(event: LinkGranted): Promise<void> {
    const phase = this.current;
    const socket = this.connection.current;
    if ((phase.name !== "showing" && phase.name !== "scanned") || !socket) return;
    const session = phase.session;
    const origin = socket.hello.server.origin;
    this.set({ name: "verifying", session });
    let enc: Uint8Array;
    let ciphertext: Uint8Array;
    try {
      enc = b64uDecode(event.enc);
      ciphertext = b64uDecode(event.ciphertext);
    } catch {
      this.fail("the server sent a malformed grant");
      return;
    }
    // The grant names no ref, so try this session's refs, newest first: only the right secret opens it.
    let opened: OpenedGrant | null = null;
    let reason = "the grant does not open with this code's secret";
    for (const { ref, secret } of [...session.refs].reverse()) {
      try {
        opened = await openGrant({
          enc,
          ciphertext,
          ephemeralPrivateKey: session.ephemeral.privateKey,
          ref,
          linkSecret: secret,
          origin,
          deviceKey: session.devicePublic,
        });
        break;
      } catch (error) {
        if (error instanceof GrantError) reason = error.message;
        else throw error;
      }
    }
    if (sessionOf(this.current) !== session) return; // the socket closed while the grant was checked
    if (!opened) {
      this.fail(reason);
      return;
    }
    const grant = opened;
    const deviceEntry = grant.list.devices.find((d) => d.device_id === grant.deviceId);
    const state: CompanionState = {
      v: 1,
      origin,
      deviceKey: session.device.privateKey,
      devicePublic: session.devicePublic,
      deviceId: grant.deviceId,
      ephemeralKey: session.ephemeral.privateKey,
      account: grant.account,
      accountKey: grant.accountKey,
      certificate: grant.certificate,
      deviceList: grant.deviceList,
      listVersion: grant.list.version,
      deviceName: grant.deviceName,
      linkedAt: deviceEntry?.linked_at ?? socket.serverNow(),
    };
    await this.store.save(state); // kept before the page says it is linked
    this.list = grant.list;
    if (sessionOf(this.current) === session) {
      this.set({ name: "linked", state, connection: "connecting" });
      this.hooks.linked();
      await this.authenticate(socket);
    } else {
      // The socket closed while the state was saved: the next socket signs in with it.
      this.set({ name: "linked", state, connection: "reconnecting" });
      this.hooks.linked();
    }
  }

  /** The grant was refused: nothing is kept, and a fresh session needs a fresh socket (this one's is over). */
  private fail(reason: string): void {
    this.set({ name: "failed", reason });
    this.connection.drop();
  }

  // --- linked ----------------------------------------------------------------------------------------
  private async authenticate(socket: S): Promise<void> {
    const phase = this.current;
    if (phase.name !== "linked") return;
    const { state } = phase;
    const hello = socket.hello;
    let result: Record<string, unknown>;
    try {
      const signature = await authSignature(state.deviceKey, b64uDecode(hello.challenge), hello.server.origin);
      result = await socket.request("auth", { device_id: state.deviceId, signature: b64uEncode(signature) });
    } catch (error) {
      if (error instanceof ServerError && error.code === "device_unknown") {
        await this.unlinked("This browser is no longer one of your account's devices.");
      } else if (error instanceof ServerError) {
        this.whileLinked((linked) => this.set({ ...linked, connection: "refused" }));
        this.connection.drop();
        this.connection.retry();
      }
      return;
    }
    this.connection.served();
    if (await this.acceptList(result.device_list)) {
      this.whileLinked((linked) => {
        this.set({ ...linked, connection: "online" });
        this.hooks.signedIn(socket, linked.state);
      });
    }
  }

  /** Accepts a newer valid list (§4.3); returns false when it no longer lists this device (then unlinks). */
  private async acceptList(envelope: unknown): Promise<boolean> {
    const before = this.linkedState();
    if (!before || envelope === undefined) return true;
    let list: DeviceList;
    try {
      list = await verifyDeviceList(envelope, before.accountKey, before.account.id);
    } catch (error) {
      // Ignore lists that do not verify: the server cannot speak for the account.
      if (error instanceof InvalidDeviceList) return true;
      throw error;
    }
    const state = this.linkedState(); // a sign-out may have ended the link while the list was checked
    if (!state) return false;
    if (listUpdate(state.listVersion, list) !== "take") return true; // same version or older: keep ours
    const me = list.devices.find((d) => d.device_id === state.deviceId);
    if (!me || me.role !== "companion" || !equalBytes(b64uDecode(me.device_key), state.devicePublic)) {
      await this.unlinked("This browser was removed from your account's device list.");
      return false;
    }
    const next = { ...state, deviceList: envelope as Envelope, listVersion: list.version, deviceName: me.name };
    if (this.current.name !== "linked") return false;
    this.list = list;
    this.set({ ...this.current, state: next });
    await this.store.save(next);
    await this.checkIdle();
    return this.linkedState() !== undefined; // idle logout may have ended the link
  }

  private async onDevicesChanged(event: DevicesChanged): Promise<void> {
    const before = this.linkedState()?.listVersion;
    if (before === undefined || !(await this.acceptList(event.device_list))) return;
    const state = this.linkedState();
    if (!state || state.listVersion === before) return;
    this.whileLinked((linked) => this.set({ ...linked, connection: "online" }));
    this.hooks.devicesChanged(event.change, state);
  }

  /** Logs out: no reconnecting, this device's keys and messages wiped. `here`: this tab noticed it. */
  async unlinked(reason: string, here = true): Promise<void> {
    const phase = this.current;
    if (phase.name === "logging_out" || phase.name === "logged_out") return;
    const deviceId = phase.name === "linked" ? phase.state.deviceId : undefined;
    this.list = null;
    this.set({ name: "logging_out", reason });
    this.connection.stop();
    await this.hooks.wipe(deviceId);
    if (here) await this.store.wipe();
    await this.hooks.unlinked(here);
    this.set({ name: "logged_out", reason });
  }

  private async onEvent(event: ServerEvent): Promise<void> {
    if (this.current.name === "linked") this.hooks.event(event);
    const phase = this.current.name;
    const linking = phase === "showing" || phase === "waiting" || phase === "scanned";
    switch (event.event) {
      case "link.ref":
        this.onRef(event);
        break;
      case "link.scanned":
        await this.onScanned();
        break;
      case "link.code.offer":
        await this.onCodeOffer(event);
        break;
      case "link.idle":
        if (linking) this.set({ name: "idle" });
        break;
      case "link.declined":
        if (linking) this.set({ name: "declined", reason: event.reason ?? "declined" });
        break;
      case "link.granted":
        await this.onGranted(event);
        break;
      case "devices.changed":
        await this.onDevicesChanged(event);
        break;
      case "device.unlinked":
        if (this.linkedState()?.deviceId === event.device_id)
          await this.unlinked("This browser was unlinked from your account.");
        break;
      default:
        break;
    }
  }

  // --- the one place the phase changes ---------------------------------------------------------------
  private set(next: CompanionPhase): void {
    const leaving = sessionOf(this.current);
    if (leaving && leaving !== sessionOf(next)) leaving.forget();
    this.current = next;
    for (const listener of this.listeners) listener();
  }

  /** Runs `change` with the linked phase, or moves to `otherwise` when not linked. */
  private whileLinked(
    change: (linked: Extract<CompanionPhase, { name: "linked" }>) => void,
    otherwise?: CompanionPhase,
  ): void {
    if (this.current.name === "linked") change(this.current);
    else if (otherwise) this.set(otherwise);
  }
}
