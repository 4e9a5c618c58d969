/**
 * Primary app (app.html): creates the account, lists, renames and unlinks devices, and links companions by
 * scanning their QR code with the camera. Follows the primary state machine of linking.md §8.
 */
import "../ui/styles.css";
import { b64uDecode, b64uEncode } from "../crypto/base64";
import { exportEd25519Public, generateEd25519, keyId } from "../crypto/ed25519";
import { type Envelope, authSignature } from "../crypto/envelope";
import {
  type DeviceEntry,
  type DeviceList,
  InvalidDeviceList,
  MAX_COMPANIONS,
  checkName,
  companions,
  listUpdate,
  nextList,
  signDeviceList,
  unusedName,
  verifyDeviceList,
} from "../link/deviceList";
import { TooManyDevices, buildGrant } from "../link/grant";
import { type DecodedLinkCode, decodeLinkText } from "../link/qr";
import { LockstepSocket, type ServerEvent, defaultSocketUrl } from "../net/socket";
import { openAtRest } from "../store/atRest";
import { StateStore } from "../store/db";
import { byTestId, checkClock, el, flashNotice, formatAgo, formatTime, hide, show } from "../ui/dom";
import { describeThisDevice } from "../ui/platform";
import { MessengerHost } from "../messenger/host";
import { describeError } from "./primary/messages";
import { Scanner } from "./primary/scanner";
import { CodeOffers } from "./primary/codeEntry";
import { askNumber } from "./primary/relayCheck";
import { WrongNumber } from "../link/matching";
import { linkCodeText } from "../link/wording";

interface PrimaryState {
  v: 1;
  origin: string;
  accountKey: CryptoKey;
  accountPublic: Uint8Array;
  accountId: string;
  deviceKey: CryptoKey;
  devicePublic: Uint8Array;
  deviceId: string;
  handle: string;
  displayName: string;
  deviceList: Envelope;
  listVersion: number;
  /** What the server described each companion as when it was linked (kept on this phone only). */
  descriptions: Record<string, string>;
}

interface Presence {
  last_active?: number;
  online?: boolean;
}

const store = new StateStore<PrimaryState>("lockstep-primary");
const ui = {
  status: byTestId("app-status"),
  onboarding: byTestId("onboarding"),
  form: byTestId<HTMLFormElement>("create-form"),
  handle: byTestId<HTMLInputElement>("handle"),
  displayName: byTestId<HTMLInputElement>("display-name"),
  createError: byTestId("create-error"),
  create: byTestId<HTMLButtonElement>("create-account"),
  home: byTestId("home"),
  accountHandle: byTestId("account-handle"),
  accountName: byTestId("account-name"),
  flow: byTestId("link-flow"),
  scannerView: byTestId("scanner-view"),
  video: byTestId<HTMLVideoElement>("scanner"),
  scanStatus: byTestId("scan-status"),
  scanCancel: byTestId<HTMLButtonElement>("scan-cancel"),
  codeView: byTestId<HTMLFormElement>("code-view"),
  codeWarning: byTestId("code-warning"),
  codeInput: byTestId<HTMLInputElement>("code-input"),
  codeStatus: byTestId("code-status"),
  codeCancel: byTestId<HTMLButtonElement>("code-cancel"),
  linkWithCode: byTestId<HTMLButtonElement>("link-with-code"),
  relay: {
    root: byTestId("relay-warning"),
    text: byTestId("relay-text"),
    prompt: byTestId("relay-prompt"),
    number: byTestId<HTMLInputElement>("relay-number"),
    decline: byTestId<HTMLButtonElement>("relay-decline"),
    proceed: byTestId<HTMLButtonElement>("relay-continue"),
  },
  context: byTestId("link-context"),
  contextWarning: byTestId("context-warning"),
  contextDescription: byTestId("context-description"),
  contextAddress: byTestId("context-address"),
  contextNetwork: byTestId("context-network"),
  contextAge: byTestId("context-age"),
  deviceName: byTestId<HTMLInputElement>("device-name-input"),
  approve: byTestId<HTMLButtonElement>("link-approve"),
  decline: byTestId<HTMLButtonElement>("link-decline"),
  result: byTestId("link-result"),
  error: byTestId("link-error"),
  success: byTestId("link-success"),
  scanAgain: byTestId<HTMLButtonElement>("scan-again"),
  done: byTestId<HTMLButtonElement>("link-done"),
  devices: byTestId<HTMLUListElement>("devices"),
  deviceCount: byTestId("device-count"),
  linkDevice: byTestId<HTMLButtonElement>("link-device"),
  notice: byTestId("notice"),
  clock: byTestId("clock-warning"),
};

const HANDLE = /^[a-z0-9][a-z0-9_.-]{2,31}$/;

/** End-to-end messaging on this phone (docs/protocol/messaging.md), under the account card. */
const messaging = new MessengerHost(ui.home, byTestId("account").nextElementSibling);

function startMessaging(): void {
  if (!socket || !state) return;
  void messaging.start(socket, {
    accountId: state.accountId,
    deviceId: state.deviceId,
    role: "primary",
    deviceKey: state.deviceKey,
    accountKey: state.accountPublic,
    listVersion: state.listVersion,
    handle: state.handle,
    displayName: state.displayName,
  });
}

let state: PrimaryState | undefined;
let list: DeviceList | undefined;
let socket: LockstepSocket | null = null;
let authenticated = false;
let presence = new Map<string, Presence>();
let attempts = 0;
let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
const codeOffers = new CodeOffers();
let scanner: Scanner | null = null;
let pending: { code: DecodedLinkCode; description: string; inspectedAt: number; ageMs: number } | null = null;
let busy = false;

// --- connection ------------------------------------------------------------------------------------

function connect(): Promise<LockstepSocket> {
  clearTimeout(reconnectTimer);
  return LockstepSocket.open(defaultSocketUrl(), {
    onEvent: (event) => void onEvent(event),
    onClose: () => {
      socket = null;
      messaging.disconnected();
      authenticated = false;
      ui.status.textContent = "Reconnecting…";
      const delay = Math.min(10_000, 500 * 2 ** attempts++);
      reconnectTimer = setTimeout(() => void start(), delay);
    },
  });
}

async function start(): Promise<void> {
  try {
    socket = await connect();
  } catch {
    ui.status.textContent = "Cannot reach the server. Retrying…";
    reconnectTimer = setTimeout(() => void start(), Math.min(10_000, 500 * 2 ** attempts++));
    return;
  }
  attempts = 0;
  ui.status.textContent = "";
  void checkClock(socket, ui.clock);
  if (state) await authenticate();
  else showOnboarding();
}

async function authenticate(): Promise<void> {
  if (!socket || !state) return;
  try {
    const signature = await authSignature(
      state.deviceKey,
      b64uDecode(socket.hello.challenge),
      socket.hello.server.origin,
    );
    const result = await socket.request("auth", { device_id: state.deviceId, signature: b64uEncode(signature) });
    authenticated = true;
    await adoptList(result.device_list);
  } catch (error) {
    ui.status.textContent = describeError(error);
    return;
  }
  showHome();
  startMessaging();
  await refreshDevices();
}

/** Accepts a server-held list only when it verifies under our account key and is newer than ours. */
async function adoptList(envelope: unknown): Promise<void> {
  if (!state || envelope === undefined) return;
  try {
    const candidate = await verifyDeviceList(envelope, state.accountPublic, state.accountId);
    if (listUpdate(state.listVersion, candidate) === "take") {
      list = candidate;
      state = { ...state, deviceList: envelope as Envelope, listVersion: candidate.version };
      await store.save(state);
    }
  } catch (error) {
    if (!(error instanceof InvalidDeviceList)) throw error;
  }
}

async function refreshDevices(): Promise<void> {
  if (!socket || !authenticated) return;
  try {
    const result = await socket.request("devices.list");
    await adoptList(result.device_list);
    presence = new Map();
    if (Array.isArray(result.devices)) {
      for (const item of result.devices as Record<string, unknown>[]) {
        if (typeof item.device_id === "string") {
          presence.set(item.device_id, {
            last_active: typeof item.last_active === "number" ? item.last_active : undefined,
            online: item.online === true,
          });
        }
      }
    }
  } catch {
    /* keep what we show */
  }
  renderDevices();
}

async function onEvent(event: ServerEvent): Promise<void> {
  if (authenticated) messaging.onEvent(event);
  codeOffers.onEvent(event);
  if (event.event !== "devices.changed") return;
  await adoptList(event.device_list);
  const change = event.change as Record<string, unknown>;
  const name = typeof change.name === "string" ? change.name : "a device";
  if (change.kind === "linked") flashNotice(ui.notice, `New device linked: ${name}`);
  else if (change.kind === "unlinked") flashNotice(ui.notice, `Device unlinked: ${name}`);
  else if (change.kind === "renamed") flashNotice(ui.notice, `Device renamed: ${name}`);
  await refreshDevices();
}

// --- account creation ------------------------------------------------------------------------------

function showOnboarding(): void {
  hide(ui.home);
  // The server closes a socket that has not signed in after a minute, and start() runs again on the
  // new one: leave the focus where the person is typing.
  if (!ui.onboarding.hidden) return;
  show(ui.onboarding);
  ui.handle.focus();
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  void createAccount();
});

async function createAccount(): Promise<void> {
  hide(ui.createError);
  const handle = ui.handle.value.trim().toLowerCase();
  const displayName = ui.displayName.value.trim();
  const fail = (text: string): void => {
    ui.createError.textContent = text;
    show(ui.createError);
  };
  if (!HANDLE.test(handle)) {
    fail("Handles are 3–32 characters of a–z, 0–9, dot, dash or underscore, starting with a letter or digit.");
    return;
  }
  if (checkName(displayName) === null) {
    fail("Display names are 1–64 characters.");
    return;
  }
  if (!socket) {
    fail("Not connected to the server yet. Try again in a moment.");
    return;
  }
  ui.create.disabled = true;
  try {
    const account = await generateEd25519(false);
    const device = await generateEd25519(false);
    const accountPublic = await exportEd25519Public(account.publicKey);
    const devicePublic = await exportEd25519Public(device.publicKey);
    const accountId = await keyId(accountPublic);
    const deviceId = await keyId(devicePublic);
    const now = socket.serverNow();
    const first: DeviceList = {
      v: 1,
      type: "device-list",
      account_id: accountId,
      version: 1,
      issued_at: now,
      devices: [
        {
          device_id: deviceId,
          device_key: b64uEncode(devicePublic),
          role: "primary",
          name: describeThisDevice(),
          linked_at: now,
        },
      ],
    };
    const envelope = await signDeviceList(account.privateKey, first);
    const signature = await authSignature(
      device.privateKey,
      b64uDecode(socket.hello.challenge),
      socket.hello.server.origin,
    );
    await socket.request("account.register", {
      handle,
      display_name: displayName,
      account_key: b64uEncode(accountPublic),
      device_list: envelope,
      device_key: b64uEncode(devicePublic),
      signature: b64uEncode(signature),
    });
    state = {
      v: 1,
      origin: socket.hello.server.origin,
      accountKey: account.privateKey,
      accountPublic,
      accountId,
      deviceKey: device.privateKey,
      devicePublic,
      deviceId,
      handle,
      displayName,
      deviceList: envelope,
      listVersion: 1,
      descriptions: {},
    };
    list = first;
    authenticated = true;
    await store.save(state);
    hide(ui.onboarding);
    showHome();
    startMessaging();
    await refreshDevices();
  } catch (error) {
    fail(describeError(error));
  } finally {
    ui.create.disabled = false;
  }
}

// --- home and devices ------------------------------------------------------------------------------

function showHome(): void {
  if (!state) return;
  hide(ui.onboarding);
  ui.accountHandle.textContent = `@${state.handle}`;
  ui.accountName.textContent = state.displayName;
  show(ui.home);
  renderDevices();
}

function renderDevices(): void {
  if (!state || !list) return;
  if (document.activeElement?.closest(".edit, .confirm")) return; // the user is typing or confirming: later
  const now = socket?.serverNow() ?? Date.now();
  const rows = list.devices.map((device) => deviceRow(device, now));
  ui.devices.replaceChildren(...rows);
  const linked = companions(list).length;
  messaging.setDevices(`This phone is your primary device · ${linked} linked ${linked === 1 ? "device" : "devices"}`);
  ui.deviceCount.textContent =
    linked >= MAX_COMPANIONS
      ? `${linked} of at most ${MAX_COMPANIONS} other devices linked: unlink one to link another.`
      : `${linked} of at most ${MAX_COMPANIONS} other devices linked.`;
}

function deviceRow(device: DeviceEntry, now: number): HTMLLIElement {
  const isSelf = device.device_id === state?.deviceId;
  const seen = presence.get(device.device_id);
  const kind = isSelf ? "This phone (primary)" : (state?.descriptions[device.device_id] ?? "Linked companion");
  const activity =
    isSelf || seen?.online
      ? "online now"
      : seen?.last_active
        ? `last active ${formatAgo(seen.last_active, now)}`
        : "not seen yet";
  const name = el("div", { className: "name", text: device.name, testid: "device-name" });
  const platform = el("div", { className: "meta", text: kind, testid: "device-platform" });
  const when = el(
    "div",
    { className: "meta", text: `Linked ${formatTime(device.linked_at)} · ` },
    el("span", { className: isSelf || seen?.online ? "online" : "", text: activity, testid: "device-activity" }),
  );
  const info = el("div", {}, name, platform, when);
  const row = el(
    "li",
    { className: "device", testid: "device-row", attrs: { "data-device-id": device.device_id } },
    info,
  );
  const actions = el("div", { className: "actions" });
  const rename = el("button", {
    text: "Rename",
    testid: "rename",
    attrs: { type: "button", "aria-label": `Rename ${device.name}` },
  });
  rename.addEventListener("click", () => openRename(info, device));
  actions.append(rename);
  if (device.role === "companion") {
    const unlink = el("button", {
      className: "danger",
      text: "Unlink",
      testid: "unlink",
      attrs: { type: "button", "aria-label": `Unlink ${device.name}` },
    });
    unlink.addEventListener("click", () => openUnlink(info, device));
    actions.append(unlink);
  }
  row.append(actions);
  return row;
}

function closeEditors(): void {
  for (const editor of ui.devices.querySelectorAll(".edit, .confirm")) editor.remove();
}

function openRename(info: HTMLElement, device: DeviceEntry): void {
  closeEditors();
  const input = el("input", {
    testid: "rename-input",
    attrs: { type: "text", maxlength: "64", "aria-label": "New name" },
  });
  input.value = device.name;
  const save = el("button", { className: "primary", text: "Save", testid: "rename-save", attrs: { type: "button" } });
  const cancel = el("button", { text: "Cancel", attrs: { type: "button" } });
  const editor = el("div", { className: "edit" }, input, save, cancel);
  cancel.addEventListener("click", () => editor.remove());
  const submit = (): void => {
    const name = checkName(input.value);
    if (name === null) {
      flashNotice(ui.notice, "Device names are 1–64 characters, without control characters.");
      return;
    }
    void publishList(
      (devices) => devices.map((d) => (d.device_id === device.device_id ? { ...d, name } : d)),
      `Renamed to ${name}`,
    );
  };
  save.addEventListener("click", submit);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") submit();
  });
  info.append(editor);
  input.focus();
}

function openUnlink(info: HTMLElement, device: DeviceEntry): void {
  closeEditors();
  const confirm = el("button", {
    className: "danger",
    text: `Unlink ${device.name}`,
    testid: "unlink-confirm",
    attrs: { type: "button" },
  });
  const cancel = el("button", { text: "Cancel", attrs: { type: "button" } });
  const box = el(
    "div",
    { className: "confirm" },
    el("p", { text: "It will be logged out at once and its keys deleted. You can link it again later." }),
    el("div", { className: "row" }, confirm, cancel),
  );
  cancel.addEventListener("click", () => box.remove());
  confirm.addEventListener(
    "click",
    () =>
      void publishList((devices) => devices.filter((d) => d.device_id !== device.device_id), `Unlinked ${device.name}`),
  );
  info.append(box);
  confirm.focus();
}

/** Signs and publishes the next list version via devices.update (rename, unlink). */
async function publishList(change: (devices: DeviceEntry[]) => DeviceEntry[], done: string): Promise<void> {
  if (!state || !list || !socket || busy) return;
  busy = true;
  try {
    const next = nextList(list, change(list.devices), socket.serverNow());
    const envelope = await signDeviceList(state.accountKey, next);
    await socket.request("devices.update", { device_list: envelope });
    list = next;
    state = { ...state, deviceList: envelope, listVersion: next.version };
    await store.save(state);
    flashNotice(ui.notice, done);
  } catch (error) {
    flashNotice(ui.notice, describeError(error));
  } finally {
    busy = false;
  }
  closeEditors();
  await refreshDevices();
}

// --- linking a device ------------------------------------------------------------------------------

function showStep(step: "scan" | "code" | "relay" | "context" | "result"): void {
  show(ui.flow);
  show(ui.relay.root, step === "relay");
  show(ui.scannerView, step === "scan");
  show(ui.codeView, step === "code");
  show(ui.context, step === "context");
  show(ui.result, step === "result");
  ui.linkDevice.disabled = ui.linkWithCode.disabled = true;
}

function closeFlow(): void {
  scanner?.stop();
  scanner = null;
  pending = null;
  hide(ui.flow);
  ui.linkDevice.disabled = ui.linkWithCode.disabled = false;
}

function showRefusal(error: unknown, canRetry = true): void {
  scanner?.stop();
  scanner = null;
  pending = null;
  hide(ui.success);
  ui.error.textContent = describeError(error);
  show(ui.error);
  show(ui.scanAgain, canRetry);
  showStep("result");
}

async function startScan(): Promise<void> {
  if (!state || !socket || !authenticated) {
    flashNotice(ui.notice, "Not connected to the server yet. Try again in a moment.");
    return;
  }
  hide(ui.error);
  hide(ui.success);
  showStep("scan");
  ui.scanStatus.textContent = "Starting the camera…";
  scanner?.stop();
  const current = new Scanner(ui.video);
  scanner = current;
  let text: string;
  try {
    const scanning = current.scan();
    ui.scanStatus.textContent = "Point the camera at the code on the computer screen.";
    text = await scanning;
  } catch (error) {
    if (scanner === current) showRefusal(error);
    return;
  }
  if (scanner !== current) return;
  scanner = null;
  await inspect(text);
}

async function inspect(text: string): Promise<void> {
  if (!socket) {
    showRefusal(new Error());
    return;
  }
  let code: DecodedLinkCode;
  try {
    code = decodeLinkText(text, socket.hello.server.origin);
  } catch (error) {
    showRefusal(error);
    return;
  }
  ui.scanStatus.textContent = "Checking the code with your server…";
  await inspectCode(code);
}

/** "Link with a code" (linking.md §10): the warning first, then CPace on what is typed; its result is
 * inspected like a scanned code, so the context and the choice are the same. */
function startCodeEntry(): void {
  if (!state || !socket || !authenticated) {
    flashNotice(ui.notice, "Not connected to the server yet. Try again in a moment.");
    return;
  }
  hide(ui.error);
  hide(ui.success);
  ui.codeWarning.textContent = linkCodeText("warning");
  ui.codeInput.value = "";
  ui.codeStatus.textContent = "";
  ui.codeInput.disabled = false;
  showStep("code");
  ui.codeInput.focus();
}

async function enterCode(): Promise<void> {
  if (!socket || ui.codeInput.disabled) return;
  ui.codeInput.disabled = true;
  ui.codeStatus.textContent = "Checking the code with the computer…";
  let code: DecodedLinkCode;
  try {
    code = await codeOffers.offer(socket, ui.codeInput.value);
  } catch (error) {
    showRefusal(error, false);
    return;
  } finally {
    ui.codeInput.disabled = false;
  }
  await inspectCode(code);
}

async function inspectCode(code: DecodedLinkCode): Promise<void> {
  if (!socket) {
    showRefusal(new Error());
    return;
  }
  let context: Record<string, unknown>;
  try {
    context = await socket.request("link.inspect", { ref: b64uEncode(code.ref) });
  } catch (error) {
    showRefusal(error);
    return;
  }
  const companion = (context.companion ?? {}) as Record<string, unknown>;
  const network = (context.network ?? {}) as Record<string, unknown>;
  const description =
    typeof companion.description === "string" && companion.description ? companion.description : "Unknown device";
  const address = typeof companion.address === "string" ? companion.address : "unknown";
  const sameNetwork = network.same_network === true;
  pending = {
    code,
    description,
    inspectedAt: Date.now(),
    ageMs: typeof context.age_ms === "number" ? context.age_ms : 0,
  };
  // The description is whatever the computer's User-Agent claims; the address is what the server saw.
  ui.contextDescription.replaceChildren(
    description,
    el("span", { className: "muted", text: " — as the computer describes itself" }),
  );
  const place = networkLabel(companion.network);
  ui.contextAddress.textContent = place ? `${address} — ${place}` : address;
  ui.contextNetwork.replaceChildren(
    el("span", {
      className: `badge ${sameNetwork ? "ok" : "warn"}`,
      text: sameNetwork ? "Same network as this phone" : "Different network from this phone",
    }),
  );
  if (sameNetwork) hide(ui.contextWarning);
  else {
    const phone = typeof network.primary_address === "string" ? ` (this phone is at ${network.primary_address})` : "";
    ui.contextWarning.textContent =
      `Warning: this device is on a different network from your phone${phone}. ` +
      "Only link it if it is your own computer and it is in front of you. " +
      "If someone sent you this code or asked you to scan it, choose Decline — " +
      "they may be trying to take over your account.";
    show(ui.contextWarning);
  }
  const suggested = checkName(description.slice(0, 64)) ?? "Linked device";
  ui.deviceName.value = list ? unusedName(list, suggested) : suggested;
  updateAge();
  if (!sameNetwork && !(await numberTyped(address, code))) return;
  showStep("context");
  ui.decline.focus();
}

/** Another network: the full-screen warning and the companion's number before the context's Link
 * (linking.md §6.5). False when the person declined or typed another number (then declined). */
async function numberTyped(address: string, code: DecodedLinkCode): Promise<boolean> {
  showStep("relay");
  try {
    if ((await askNumber(ui.relay, address, code)) === "matched") return true;
    await decline();
  } catch (error) {
    if (!(error instanceof WrongNumber)) throw error;
    showRefusal(error, false);
    await socket?.request("link.decline", { ref: b64uEncode(code.ref), reason: "wrong_number" }).catch(() => undefined);
  }
  return false;
}

/** "private network 192.168.1.0/24" for the server's description of an address's network (linking.md §6.2). */
function networkLabel(value: unknown): string {
  const network = (value ?? {}) as Record<string, unknown>;
  const prefix = typeof network.prefix === "string" ? network.prefix : "";
  switch (network.kind) {
    case "loopback":
      return "the server's own machine";
    case "private":
      return `private network ${prefix}`;
    case "link-local":
      return `link-local network ${prefix}`;
    case "public":
      return `public internet, network ${prefix}`;
    default:
      return "";
  }
}

function updateAge(): void {
  if (!pending) return;
  const seconds = Math.max(0, Math.round((pending.ageMs + Date.now() - pending.inspectedAt) / 1000));
  ui.contextAge.textContent = seconds === 1 ? "1 second ago" : `${seconds} seconds ago`;
}

async function approve(): Promise<void> {
  if (!pending || !state || !list || !socket || busy) return;
  const typed = checkName(ui.deviceName.value);
  // Two devices with one name could not be told apart (or unlinked by name): add " (2)" as needed.
  const name = typed === null ? null : unusedName(list, typed);
  if (name === null) {
    ui.deviceName.focus();
    flashNotice(ui.notice, "Give the device a name of 1–64 characters.");
    return;
  }
  const { code, description } = pending;
  // At most MAX_COMPANIONS: refuse locally, before asking the server.
  if (companions(list).length >= MAX_COMPANIONS) {
    showRefusal(new TooManyDevices(), false);
    return;
  }
  busy = true;
  ui.approve.disabled = ui.decline.disabled = true;
  try {
    const grant = await buildGrant({
      code,
      origin: socket.hello.server.origin,
      account: {
        id: state.accountId,
        handle: state.handle,
        display_name: state.displayName,
        key: b64uEncode(state.accountPublic),
      },
      accountPrivateKey: state.accountKey,
      currentList: list,
      deviceName: name,
      now: socket.serverNow(),
    });
    await socket.request("link.approve", {
      ref: b64uEncode(code.ref),
      enc: b64uEncode(grant.enc),
      ciphertext: b64uEncode(grant.ciphertext),
      certificate: grant.certificate,
      device_list: grant.deviceList,
    });
    list = grant.list;
    state = {
      ...state,
      deviceList: grant.deviceList,
      listVersion: grant.list.version,
      descriptions: { ...state.descriptions, [grant.deviceId]: description },
    };
    await store.save(state);
    pending = null;
    hide(ui.error);
    ui.success.textContent = `Linked ${name}. It is now signed in to @${state.handle}.`;
    show(ui.success);
    hide(ui.scanAgain);
    showStep("result");
    await refreshDevices();
  } catch (error) {
    showRefusal(error, !(error instanceof TooManyDevices));
  } finally {
    busy = false;
    ui.approve.disabled = ui.decline.disabled = false;
  }
}

async function decline(): Promise<void> {
  if (!pending || !socket) {
    closeFlow();
    return;
  }
  const ref = b64uEncode(pending.code.ref);
  closeFlow();
  try {
    await socket.request("link.decline", { ref });
    flashNotice(ui.notice, "Declined. Nothing was linked.");
  } catch {
    flashNotice(ui.notice, "Nothing was linked.");
  }
}

ui.linkDevice.addEventListener("click", () => void startScan());
ui.linkWithCode.addEventListener("click", startCodeEntry);
ui.codeCancel.addEventListener("click", closeFlow);
ui.codeView.addEventListener("submit", (event) => {
  event.preventDefault();
  void enterCode();
});
ui.scanCancel.addEventListener("click", closeFlow);
ui.scanAgain.addEventListener("click", () => void startScan());
ui.done.addEventListener("click", closeFlow);
ui.approve.addEventListener("click", () => void approve());
ui.decline.addEventListener("click", () => void decline());
setInterval(() => {
  updateAge();
}, 1000);
setInterval(() => void refreshDevicesIfIdle(), 15_000);

/** Presence (online, last active) changes without events: poll it, but never under an open editor. */
async function refreshDevicesIfIdle(): Promise<void> {
  if (!ui.devices.querySelector(".edit, .confirm") && !document.hidden) await refreshDevices();
}

// --- start-up --------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if ("serviceWorker" in navigator)
    navigator.serviceWorker.register("/sw.js", { scope: "/app" }).catch(() => undefined);
  try {
    await openAtRest(); // before any key is made: every private key is then kept wrapped
    const loaded = await store.load();
    // Stored by this app, perhaps an older version of it.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
    if (loaded && loaded.v === 1) {
      state = loaded;
      list = await verifyDeviceList(loaded.deviceList, loaded.accountPublic, loaded.accountId);
    }
  } catch {
    state = undefined;
    list = undefined;
  }
  if (state) showHome();
  ui.status.textContent = "Connecting…";
  await start();
}

void main();
