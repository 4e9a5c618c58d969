/**
 * Companion page (index.html): shows the rotating QR code, receives the link grant, stays linked.
 * Follows the companion state machine of linking.md §8.
 */
import "../ui/styles.css";
import { b64uDecode, b64uEncode } from "../crypto/base64";
import { equalBytes, randomBytes } from "../crypto/bytes";
import { exportEd25519Public, generateEd25519, keyId } from "../crypto/ed25519";
import { type Envelope, authSignature } from "../crypto/envelope";
import { generateX25519 } from "../crypto/hpke";
import { InvalidDeviceList, type DeviceList, listUpdate, verifyDeviceList } from "../link/deviceList";
import { type AccountInfo, GrantError, type OpenedGrant, openGrant } from "../link/grant";
import { encodeLinkText } from "../link/qr";
import { companionNotice } from "../link/wording";
import type { DevicesChanged, LinkGranted, LinkRef } from "../net/events";
import { CLOSE_UNLINKED, LockstepSocket, ServerError, type ServerEvent, defaultSocketUrl } from "../net/socket";
import { forgetStoreKeyIfUnused, openAtRest } from "../store/atRest";
import { StateStore } from "../store/db";
import { clearQr, drawQr } from "../ui/qrcode";
import { byTestId, checkClock, flashNotice, hide, show } from "../ui/dom";
import { MessengerHost } from "../messenger/host";
import { answerOffer, codeFrom, showCode, startFields } from "./companion/typedCode";
import { showMatchNumber } from "./companion/matchNumber";
import { linkCodeText } from "../link/wording";

/**
 * What a linked companion keeps in IndexedDB (sealed, ../store/atRest.ts).
 * Private keys are non-extractable CryptoKeys, stored wrapped.
 */
interface CompanionState {
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

/** One link session (one `link.start`): fresh keys, and one fresh secret per ref. */
interface LinkSession {
  device: CryptoKeyPair;
  devicePublic: Uint8Array;
  ephemeral: CryptoKeyPair;
  ephemeralPublic: Uint8Array;
  refs: { ref: Uint8Array; secret: Uint8Array }[];
  expiresAt: number;
  last: boolean;
  /** A typed-code session's code (linking.md §10), answered at most once. */
  typed: string | null;
  answered: boolean;
}

type Phase =
  | "connecting"
  | "waiting"
  | "showing"
  | "scanned"
  | "idle"
  | "declined"
  | "verifying"
  | "failed"
  | "linked"
  | "logged_out";

const store = new StateStore<CompanionState>("lockstep-companion");
const ui = {
  panel: byTestId("link-panel"),
  status: byTestId("link-status"),
  qr: byTestId<HTMLCanvasElement>("qr"),
  placeholder: byTestId("qr-placeholder"),
  countdown: byTestId("countdown"),
  newCode: byTestId<HTMLButtonElement>("new-code"),
  useCode: byTestId<HTMLButtonElement>("use-code"),
  typedCode: byTestId("typed-code"),
  matchNumber: byTestId("match-number"),
  linked: byTestId("linked-account"),
  linkedTitle: byTestId("linked-title"),
  connection: byTestId("connection-status"),
  loggedOut: byTestId("logged-out"),
  loggedOutReason: byTestId("logged-out-reason"),
  linkAgain: byTestId<HTMLButtonElement>("link-again"),
  notice: byTestId("notice"),
  clock: byTestId("clock-warning"),
};

/** Other tabs of this page in this browser share the stored state: when one links, the others reload
 * (and show the link); when one is unlinked, the others log out too. */
const tabs = "BroadcastChannel" in window ? new BroadcastChannel("lockstep-companion") : null;
tabs?.addEventListener("message", (message: MessageEvent) => {
  if (message.data === "linked" && !state) location.reload();
  else if (message.data === "unlinked" && state) void unlinked("This browser was unlinked from your account.", false);
});

/** End-to-end messaging, once this browser is linked (docs/protocol/messaging.md). */
const messaging = new MessengerHost(byTestId("linked-account").parentElement as HTMLElement, ui.loggedOut);

const QR_PIXELS = 400;
const MAX_BACKOFF_MS = 10_000;

let phase: Phase = "connecting";
/** Show a code to type instead of QR codes (the person chose "Link with a code instead"). */
let typedMode = false;
let state: CompanionState | undefined;
let socket: LockstepSocket | null = null;
let session: LinkSession | null = null;
let attempts = 0;
let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
/** Incremented whenever a socket is replaced, so stale callbacks do nothing. */
let generation = 0;

function setStatus(text: string): void {
  ui.status.textContent = text;
}

function hideCode(placeholder: string): void {
  clearQr(ui.qr);
  hide(ui.qr);
  hide(ui.typedCode);
  hide(ui.matchNumber);
  ui.placeholder.textContent = placeholder;
  show(ui.placeholder);
  ui.countdown.textContent = "";
}

function forgetSession(): void {
  if (session) for (const r of session.refs) r.secret.fill(0);
  session = null;
}

function showPanel(): void {
  show(ui.panel);
  hide(ui.linked);
  hide(ui.loggedOut);
}

// --- connection ------------------------------------------------------------------------------------

async function connect(): Promise<void> {
  const mine = ++generation;
  clearTimeout(reconnectTimer);
  let opened: LockstepSocket;
  try {
    opened = await LockstepSocket.open(defaultSocketUrl(), {
      onEvent: (event) => {
        if (mine === generation) void onEvent(event);
      },
      onClose: (code) => {
        if (mine === generation) onClose(code);
      },
    });
  } catch {
    if (mine !== generation) return;
    if (state) ui.connection.textContent = "Cannot reach the server. Retrying…";
    else setStatus("Cannot reach the server. Retrying…");
    scheduleReconnect();
    return;
  }
  if (mine !== generation) {
    opened.close();
    return;
  }
  socket = opened;
  void checkClock(opened, ui.clock);
  if (state) await authenticate();
  else await startLinking();
}

function scheduleReconnect(): void {
  if (phase === "logged_out") return;
  const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempts) * (0.75 + Math.random() * 0.5);
  attempts += 1;
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(() => void connect(), delay);
}

function onClose(code: number): void {
  socket = null;
  messaging.disconnected();
  if (code === CLOSE_UNLINKED) {
    void unlinked("This browser was unlinked from your account.");
    return;
  }
  if (phase === "logged_out") return;
  // A page offering a new code after its session ended waits for the click, which reconnects: the
  // server closes such sockets after its unauthenticated deadline (SECURITY.md "Connection floods").
  if (!state && (phase === "idle" || phase === "declined")) return;
  // Never leave a code on screen whose session is gone: hide it at once.
  forgetSession();
  if (state) {
    ui.connection.textContent = "Reconnecting…";
  } else {
    phase = "connecting";
    hideCode("Reconnecting…");
    hide(ui.newCode);
    setStatus("Reconnecting…");
  }
  scheduleReconnect();
}

// --- linking ---------------------------------------------------------------------------------------

async function startLinking(): Promise<void> {
  if (!socket) return;
  showPanel();
  forgetSession();
  phase = "waiting";
  hide(ui.newCode);
  hideCode("Getting a code…");
  setStatus("Getting a code…");
  const device = await generateEd25519(false);
  const ephemeral = await generateX25519(false);
  session = {
    device,
    devicePublic: await exportEd25519Public(device.publicKey),
    ephemeral,
    ephemeralPublic: new Uint8Array(await crypto.subtle.exportKey("raw", ephemeral.publicKey)),
    refs: [],
    expiresAt: 0,
    last: false,
    typed: null,
    answered: false,
  };
  try {
    const started = await socket.request("link.start", startFields(typedMode));
    session.typed = codeFrom(started, typedMode);
    attempts = 0; // back off again from the start only once the server really served us
  } catch (error) {
    forgetSession();
    phase = "idle";
    hideCode("No code");
    if (error instanceof ServerError && error.code === "rate_limited") {
      setStatus("Too many codes were requested from this network. Wait a minute, then try again.");
    } else {
      setStatus("Could not get a code from the server.");
    }
    ui.newCode.textContent = "Try again";
    show(ui.newCode);
  }
}

function onRef(event: LinkRef): void {
  // After "scanned" too: a phone that let its claim run out hands the page the next code (§6.3).
  if (!session || !socket || (phase !== "waiting" && phase !== "showing" && phase !== "scanned")) return;
  let ref: Uint8Array;
  try {
    ref = b64uDecode(event.ref);
  } catch {
    return;
  }
  if (ref.length !== 32) return;
  const secret = randomBytes(32); // a fresh link_secret for every ref (§6.1)
  session.refs.push({ ref, secret });
  while (session.refs.length > 6) session.refs.shift()?.secret.fill(0);
  session.expiresAt = event.expires_at;
  session.last = event.last;
  const text = encodeLinkText(socket.hello.server.origin, {
    version: 1,
    ref,
    ephemeralKey: session.ephemeralPublic,
    deviceKey: session.devicePublic,
    linkSecret: secret,
  });
  hide(ui.placeholder);
  phase = "showing";
  if (session.typed) {
    showCode(ui.typedCode, session.typed);
    setStatus(linkCodeText("companion_instructions"));
    tick();
    return;
  }
  drawQr(ui.qr, text, QR_PIXELS);
  show(ui.qr);
  setStatus(
    session.last
      ? "Scan this code with your phone. This is the last code; after it you can ask for a new one."
      : "Scan this code with your phone.",
  );
  tick();
}

function tick(): void {
  if (phase !== "showing" || !session || !socket) {
    ui.countdown.textContent = "";
    return;
  }
  const seconds = Math.max(0, Math.ceil((session.expiresAt - socket.serverNow()) / 1000));
  ui.countdown.textContent = session.last ? `This code expires in ${seconds} s` : `New code in ${seconds} s`;
}

/** A phone inspected the code (`link.scanned`): the code is spoken for, so hide it and stop counting down. */
function onScanned(): void {
  if (phase !== "showing") return;
  phase = "scanned";
  hideCode("Code scanned");
  setStatus(companionNotice("scanned"));
  const shown = session?.refs[session.refs.length - 1];
  if (shown) void showMatchNumber(ui.matchNumber, shown.ref, shown.secret, () => phase === "scanned");
}

function offerNewCode(status: string, button: string, placeholder: string): void {
  forgetSession();
  hideCode(placeholder);
  setStatus(status);
  ui.newCode.textContent = button;
  show(ui.newCode);
}

async function onGranted(event: LinkGranted): Promise<void> {
  if (!session || !socket) return;
  const current = session;
  const origin = socket.hello.server.origin;
  phase = "verifying";
  hideCode("Checking…");
  setStatus("Your phone approved. Checking the link…");
  let enc: Uint8Array;
  let ciphertext: Uint8Array;
  try {
    enc = b64uDecode(event.enc);
    ciphertext = b64uDecode(event.ciphertext);
  } catch {
    failLink("the server sent a malformed grant");
    return;
  }
  // The grant names no ref, so try this session's refs, newest first: only the right secret opens it.
  let opened: OpenedGrant | null = null;
  let reason = "the grant does not open with this code's secret";
  for (const { ref, secret } of [...current.refs].reverse()) {
    try {
      opened = await openGrant({
        enc,
        ciphertext,
        ephemeralPrivateKey: current.ephemeral.privateKey,
        ref,
        linkSecret: secret,
        origin,
        deviceKey: current.devicePublic,
      });
      break;
    } catch (error) {
      if (error instanceof GrantError) reason = error.message;
      else throw error;
    }
  }
  if (!opened) {
    failLink(reason);
    return;
  }
  const deviceEntry = opened.list.devices.find((d) => d.device_id === opened.deviceId);
  state = {
    v: 1,
    origin,
    deviceKey: current.device.privateKey,
    devicePublic: current.devicePublic,
    deviceId: opened.deviceId,
    ephemeralKey: current.ephemeral.privateKey,
    account: opened.account,
    accountKey: opened.accountKey,
    certificate: opened.certificate,
    deviceList: opened.deviceList,
    listVersion: opened.list.version,
    deviceName: opened.deviceName,
    linkedAt: deviceEntry?.linked_at ?? socket.serverNow(),
  };
  forgetSession();
  await store.save(state);
  tabs?.postMessage("linked");
  await authenticate();
}

function failLink(reason: string): void {
  phase = "failed";
  offerNewCode(`This link was refused: ${reason}. Nothing was stored.`, "Get a new code", "Link refused");
  // A fresh session needs a fresh socket: the server's link session for this one is finished.
  const old = socket;
  generation++;
  socket = null;
  old?.close();
}

// --- linked ----------------------------------------------------------------------------------------

async function authenticate(): Promise<void> {
  if (!socket || !state) return;
  const hello = socket.hello;
  let result: Record<string, unknown>;
  try {
    const signature = await authSignature(state.deviceKey, b64uDecode(hello.challenge), hello.server.origin);
    result = await socket.request("auth", { device_id: state.deviceId, signature: b64uEncode(signature) });
  } catch (error) {
    if (error instanceof ServerError && error.code === "device_unknown") {
      await unlinked("This browser is no longer one of your account's devices.");
    } else if (error instanceof ServerError) {
      showLinked();
      ui.connection.textContent = "Could not sign in to the server; retrying…";
      const old = socket;
      socket = null;
      generation++;
      old.close();
      scheduleReconnect();
    }
    return;
  }
  attempts = 0;
  if (await acceptList(result.device_list)) {
    showLinked();
    void messaging.start(socket, {
      accountId: state.account.id,
      deviceId: state.deviceId,
      role: "companion",
      deviceKey: state.deviceKey,
      accountKey: state.accountKey,
      listVersion: state.listVersion,
      handle: state.account.handle,
      displayName: state.account.display_name,
    });
  }
}

/** Accepts a newer valid list (§4.3); returns false when it no longer lists this device (then unlinks). */
async function acceptList(envelope: unknown): Promise<boolean> {
  if (!state || envelope === undefined) return true;
  let list: DeviceList;
  try {
    list = await verifyDeviceList(envelope, state.accountKey, state.account.id);
  } catch (error) {
    // Ignore lists that do not verify: the server cannot speak for the account.
    if (error instanceof InvalidDeviceList) return true;
    throw error;
  }
  if (listUpdate(state.listVersion, list) !== "take") return true; // same version or older: keep ours
  const me = list.devices.find((d) => d.device_id === state?.deviceId);
  if (!me || me.role !== "companion" || !equalBytes(b64uDecode(me.device_key), state.devicePublic)) {
    await unlinked("This browser was removed from your account's device list.");
    return false;
  }
  state = { ...state, deviceList: envelope as Envelope, listVersion: list.version, deviceName: me.name };
  await store.save(state);
  return true;
}

function showLinked(): void {
  if (!state) return;
  phase = "linked";
  hide(ui.panel);
  hide(ui.loggedOut);
  const { handle, display_name: displayName } = state.account;
  ui.linkedTitle.textContent = `Linked to @${handle} (${displayName}) as ${state.deviceName}`;
  ui.connection.textContent = "";
  show(ui.linked);
  messaging.setDevices(`This browser is a linked device of @${state.account.handle} (${state.deviceName})`);
}

async function unlinked(reason: string, tellOtherTabs = true): Promise<void> {
  if (phase === "logged_out") return;
  phase = "logged_out";
  clearTimeout(reconnectTimer);
  generation++;
  const old = socket;
  socket = null;
  old?.close();
  forgetSession();
  const deviceId = state?.deviceId;
  state = undefined;
  await messaging.wipe(deviceId);
  if (tellOtherTabs) {
    await store.wipe();
    tabs?.postMessage("unlinked");
  }
  await forgetStoreKeyIfUnused(); // the last tab to wipe deletes the store key too
  hide(ui.panel);
  hide(ui.linked);
  ui.loggedOutReason.textContent = `${reason} Its keys were deleted from this browser.`;
  show(ui.loggedOut);
}

async function onEvent(event: ServerEvent): Promise<void> {
  if (phase === "linked") messaging.onEvent(event);
  switch (event.event) {
    case "link.ref":
      onRef(event);
      break;
    case "link.scanned":
      onScanned();
      break;
    case "link.code.offer":
      if (phase === "showing" && socket && session?.typed && !session.answered) {
        session.answered = true; // one CPace run per code, whatever the server sends
        const shown = session.refs[session.refs.length - 1];
        if (shown) {
          const payload = {
            version: 1,
            ref: shown.ref,
            ephemeralKey: session.ephemeralPublic,
            deviceKey: session.devicePublic,
            linkSecret: shown.secret,
          };
          await answerOffer(socket, session.typed, payload, event);
        }
      }
      break;
    case "link.idle":
      if (phase === "showing" || phase === "waiting" || phase === "scanned") {
        phase = "idle";
        offerNewCode(
          "The code expired. Click to get a new code when your phone is ready.",
          "Click to get a new code",
          "Code expired",
        );
      }
      break;
    case "link.declined":
      if (phase === "showing" || phase === "waiting" || phase === "scanned") {
        phase = "declined";
        offerNewCode(companionNotice(event.reason ?? "declined"), "Get a new code", "Not linked");
      }
      break;
    case "link.granted":
      if (phase === "showing" || phase === "scanned") await onGranted(event);
      break;
    case "devices.changed":
      await onDevicesChanged(event);
      break;
    case "device.unlinked":
      if (state && event.device_id === state.deviceId) await unlinked("This browser was unlinked from your account.");
      break;
    default:
      break;
  }
}

async function onDevicesChanged(event: DevicesChanged): Promise<void> {
  if (!state) return;
  const before = state.listVersion;
  // A sign-out may clear `state` while the list is checked.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
  if (!(await acceptList(event.device_list)) || !state || state.listVersion === before) return;
  showLinked();
  const { change } = event;
  const name = change.name;
  if (change.kind === "linked" && change.device_id !== state.deviceId)
    flashNotice(ui.notice, `New device linked: ${name}`);
  else if (change.kind === "unlinked") flashNotice(ui.notice, `Device unlinked: ${name}`);
  else if (change.kind === "renamed") flashNotice(ui.notice, `Device renamed: ${name}`);
}

// --- user actions ----------------------------------------------------------------------------------

ui.newCode.addEventListener("click", () => {
  hide(ui.newCode);
  if (socket?.isOpen && (phase === "idle" || phase === "declined")) void startLinking();
  else {
    phase = "connecting";
    hideCode("Connecting…");
    setStatus("Connecting…");
    void connect();
  }
});

ui.useCode.addEventListener("click", () => {
  typedMode = !typedMode;
  ui.useCode.textContent = typedMode ? "Show a QR code instead" : "Link with a code instead";
  const restartable = ["showing", "waiting", "idle", "declined"].includes(phase);
  if (socket?.isOpen && restartable) void startLinking();
});

ui.linkAgain.addEventListener("click", () => {
  phase = "connecting";
  attempts = 0;
  showPanel();
  hideCode("Connecting…");
  setStatus("Connecting…");
  void connect();
});

setInterval(tick, 250);

async function main(): Promise<void> {
  try {
    await openAtRest(); // before any key is made: every private key is then kept wrapped
    const loaded = await store.load();
    // Stored by this page, perhaps an older version of it.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
    if (loaded && loaded.v === 1 && (await keyId(loaded.devicePublic)) === loaded.deviceId) state = loaded;
  } catch {
    state = undefined;
  }
  if (state) {
    showLinked();
    ui.connection.textContent = "Connecting…";
  }
  await connect();
}

void main();
