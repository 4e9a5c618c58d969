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
  verifyDeviceList,
} from "../link/deviceList";
import type { BuiltGrant } from "../link/grant";
import { ReconnectingSocket } from "../net/reconnecting";
import { LockstepSocket, type ServerEvent, defaultSocketUrl } from "../net/socket";
import { openAtRest } from "../store/atRest";
import { StateStore } from "../store/db";
import { byTestId, checkClock, el, flashNotice, formatAgo, formatTime, hide, show } from "../ui/dom";
import { describeThisDevice } from "../ui/platform";
import { MessengerHost } from "../messenger/host";
import { type LinkFlowStep, type LinkOffer, PrimaryLinkFlow } from "./primary/linkFlow";
import { describeError } from "./primary/messages";
import { Scanner } from "./primary/scanner";
import { Screens, showNotificationSettings } from "./primary/screens";
import { setTitleState } from "../ui/title";
import { showRelayWarning } from "./primary/relayCheck";
import { keepAlive } from "../link/idle";
import { banner, endedEarly, judgedNow, newcomers } from "../link/probation";
import { linkCodeText, probationText } from "../link/wording";
import { LogOutAll } from "./logOutAll";
import { AppLock, type LockSetting } from "./primary/appLock";
import { AppLockSettings } from "./primary/appLockSettings";

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
  /** The app lock (primary/appLock.ts); absent: off. */
  appLock?: LockSetting;
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
  probationBanners: byTestId("probation-banners"),
};

const HANDLE = /^[a-z0-9][a-z0-9_.-]{2,31}$/;

/** End-to-end messaging on this phone (docs/protocol/messaging.md), under the account card. */
const messaging = new MessengerHost(byTestId("chats-screen"), null, byTestId("privacy-card"));

/** Chats and Settings, one screen at a time (primary/screens.ts). */
const screens = new Screens(document.querySelector("main") ?? document.body);
screens.onShow((screen) => {
  if (screen === "chats" && !ui.scannerView.hidden) flow.close(); // the camera stops when its screen goes
});
showNotificationSettings(messaging.controls.notifier);

function startMessaging(): void {
  const socket = connection.current;
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
let authenticated = false;
let presence = new Map<string, Presence>();
/** A device list is being signed and published (rename, unlink, link): one at a time. */
let busy = false;

// --- app lock ------------------------------------------------------------------------------------

/** Asked before scanning, code entry, approving, unlinking and log-out-all (primary/appLock.ts). */
const appLock = new AppLock(
  {
    load: () => state?.appLock,
    save: async (setting) => {
      if (!state) return;
      state = { ...state, appLock: setting };
      await store.save(state);
    },
  },
  (text) => {
    flashNotice(ui.notice, text);
  },
);
const appLockSettings = new AppLockSettings(appLock, () => state ?? null);

// --- connection ------------------------------------------------------------------------------------

const connection = new ReconnectingSocket<LockstepSocket>(
  (handlers) => LockstepSocket.open(defaultSocketUrl(), handlers),
  {
    opened: async (socket) => {
      connection.served();
      ui.status.textContent = "";
      void checkClock(socket, ui.clock);
      if (state) await authenticate();
      else showOnboarding();
    },
    event: (event) => void onEvent(event),
    closed: () => {
      messaging.disconnected();
      authenticated = false;
      ui.status.textContent = "Reconnecting…";
      return true;
    },
    unreachable: () => {
      ui.status.textContent = "Cannot reach the server. Retrying…";
    },
  },
);

async function authenticate(): Promise<void> {
  const socket = connection.current;
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
  await keepCompanionsAlive();
}

/** Online: re-sign the list once it is a day old, so companions stay linked (linking.md §4.5). */
async function keepCompanionsAlive(): Promise<void> {
  const socket = connection.current;
  if (!list || !socket) return;
  const devices = keepAlive(list, socket.serverNow());
  if (devices) await publishList(() => devices, "");
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
  const socket = connection.current;
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
  flow.onEvent(event);
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
  document.body.querySelector(".app")?.classList.add("no-account"); // layout.css: the app bar is the brand only
  // The server closes a socket that has not signed in after a minute, and start() runs again on the
  // new one: leave the focus where the person is typing.
  if (!ui.onboarding.hidden) return;
  setTitleState("Create your account");
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
  const socket = connection.current;
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
    appLockSettings.offer();
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
  if (ui.flow.hidden) setTitleState(`@${state.handle}`);
  show(ui.home);
  document.body.querySelector(".app")?.classList.remove("no-account");
  appLockSettings.render();
  renderDevices();
}

/** One signed list that keeps only this phone: every companion is logged out and wipes (linking.md §7.4). */
const logOutAll = new LogOutAll(async () => {
  if (!(await appLock.require("log out of all computers"))) return;
  const count = list ? companions(list).length : 0;
  return publishList(
    (devices) => devices.filter((d) => d.role === "primary"),
    `Logged out of ${String(count)} ${count === 1 ? "computer" : "computers"}`,
  );
});
ui.devices.after(logOutAll.root);

function renderDevices(): void {
  if (!state || !list) return;
  if (document.activeElement?.closest(".edit, .confirm")) return; // the user is typing or confirming: later
  const now = connection.current?.serverNow() ?? Date.now();
  renderProbationBanners(judgedNow(now, Date.now()));
  const rows = list.devices.map((device) => deviceRow(device, now));
  ui.devices.replaceChildren(...rows);
  const linked = companions(list).length;
  logOutAll.update(linked);
  messaging.setDevices(`This phone is your primary device · ${linked} linked ${linked === 1 ? "device" : "devices"}`);
  ui.deviceCount.textContent =
    linked >= MAX_COMPANIONS
      ? `${linked} of at most ${MAX_COMPANIONS} other devices linked: unlink one to link another.`
      : `${linked} of at most ${MAX_COMPANIONS} other devices linked.`;
}

/**
 * A banner for each companion on probation (linking.md §4.6), on every screen: "New device linked N hours
 * ago from ADDRESS — not you?" with Unlink, and "Send history now", which ends its probation early.
 */
function renderProbationBanners(now: number): void {
  if (!state || !list) return;
  const rows = newcomers(list, now, state.deviceId).map((device) => {
    const unlinkButton = el("button", {
      className: "danger",
      text: probationText("unlink"),
      testid: "probation-unlink",
    });
    unlinkButton.addEventListener("click", () => void unlink(device));
    const send = el("button", { text: probationText("send_history"), testid: "send-history-now" });
    send.addEventListener("click", () => void sendHistoryNow(device));
    return el(
      "div",
      { className: "banner warn", testid: "probation-banner", attrs: { "data-device-id": device.device_id } },
      el("span", { text: `${banner(device, now)} ` }),
      unlinkButton,
      send,
    );
  });
  ui.probationBanners.replaceChildren(...rows);
}

/** "Send history now": a list without the companion's probation, then the history it was waiting for. */
async function sendHistoryNow(device: DeviceEntry): Promise<void> {
  if (!(await appLock.require("send history now"))) return;
  await publishList(() => (list ? endedEarly(list, device.device_id) : []), `History sent to ${device.name}`);
  await messaging.syncHistory();
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
  confirm.addEventListener("click", () => void unlink(device));
  info.append(box);
  confirm.focus();
}

async function unlink(device: DeviceEntry): Promise<void> {
  if (!(await appLock.require(`unlink ${device.name}`))) return;
  await publishList((devices) => devices.filter((d) => d.device_id !== device.device_id), `Unlinked ${device.name}`);
}

/** Signs and publishes the next list version via devices.update (rename, unlink). */
async function publishList(change: (devices: DeviceEntry[]) => DeviceEntry[], done: string): Promise<void> {
  const socket = connection.current;
  if (!state || !list || !socket || busy) return;
  busy = true;
  try {
    const next = nextList(list, change(list.devices), socket.serverNow());
    const envelope = await signDeviceList(state.accountKey, next);
    await socket.request("devices.update", { device_list: envelope });
    list = next;
    state = { ...state, deviceList: envelope, listVersion: next.version };
    await store.save(state);
    if (done) flashNotice(ui.notice, done);
  } catch (error) {
    flashNotice(ui.notice, describeError(error));
  } finally {
    busy = false;
  }
  closeEditors();
  await refreshDevices();
}

// --- linking a device ------------------------------------------------------------------------------

/** The flow's state lives in PrimaryLinkFlow (./primary/linkFlow.ts); the page draws it and runs the camera. */
const flow = new PrimaryLinkFlow({
  socket: () => connection.current,
  account: () =>
    state && list && authenticated
      ? {
          accountId: state.accountId,
          handle: state.handle,
          displayName: state.displayName,
          accountPublic: state.accountPublic,
          accountKey: state.accountKey,
          list,
        }
      : null,
  linked: async (grant: BuiltGrant, description: string) => {
    if (!state) return;
    list = grant.list;
    state = {
      ...state,
      deviceList: grant.deviceList,
      listVersion: grant.list.version,
      descriptions: { ...state.descriptions, [grant.deviceId]: description },
    };
    await store.save(state);
  },
});

/** The camera of the scan in progress (it stops when the flow leaves `scanning`). */
let scanner: Scanner | null = null;

function showStep(step: "scan" | "code" | "relay" | "context" | "result"): void {
  show(ui.flow);
  show(ui.relay.root, step === "relay");
  show(ui.scannerView, step === "scan");
  show(ui.codeView, step === "code");
  show(ui.context, step === "context");
  show(ui.result, step === "result");
  ui.linkDevice.disabled = ui.linkWithCode.disabled = true;
}

/** What the tab's title says during a link (ui/title.ts); null: the account's handle. */
const FLOW_TITLES: Record<LinkFlowStep["step"], string | null> = {
  closed: null,
  entering: "Type the code",
  offering: "Type the code",
  scanning: "Scan the code",
  inspecting: "Scan the code",
  relay: "Check the number",
  confirming: "Link this device?",
  approving: "Linking…",
  linked: null,
  refused: "Not linked",
};

function renderFlow(step: LinkFlowStep): void {
  setTitleState(FLOW_TITLES[step.step] ?? (state ? `@${state.handle}` : ""));
  if (step.step !== "scanning") {
    scanner?.stop();
    scanner = null;
  }
  ui.approve.disabled = ui.decline.disabled = step.step === "approving";
  ui.codeInput.disabled = step.step === "offering";
  switch (step.step) {
    case "closed":
      hide(ui.flow);
      ui.linkDevice.disabled = ui.linkWithCode.disabled = false;
      break;
    case "entering":
      // "Link with a code" (linking.md §10): the warning first, then CPace on what is typed.
      hide(ui.error);
      hide(ui.success);
      ui.codeWarning.textContent = linkCodeText("warning");
      ui.codeInput.value = "";
      ui.codeStatus.textContent = "";
      showStep("code");
      ui.codeInput.focus();
      break;
    case "offering":
      ui.codeStatus.textContent = "Checking the code with the computer…";
      break;
    case "scanning":
      hide(ui.error);
      hide(ui.success);
      showStep("scan");
      ui.scanStatus.textContent = "Starting the camera…";
      break;
    case "inspecting":
      ui.scanStatus.textContent = "Checking the code with your server…";
      break;
    case "relay":
      showStep("relay");
      showRelayWarning(ui.relay, step.offer.address);
      break;
    case "confirming":
      showOffer(step.offer);
      break;
    case "approving":
      break;
    case "linked":
      hide(ui.error);
      ui.success.textContent = `Linked ${step.name}. It is now signed in to @${step.handle}.`;
      show(ui.success);
      hide(ui.scanAgain);
      showStep("result");
      break;
    case "refused":
      hide(ui.success);
      ui.error.textContent = describeError(step.error);
      show(ui.error);
      show(ui.scanAgain, step.canRetry);
      showStep("result");
      break;
  }
}

function showOffer(offer: LinkOffer): void {
  // The description is whatever the computer's User-Agent claims; the address is what the server saw.
  ui.contextDescription.replaceChildren(
    offer.description,
    el("span", { className: "muted", text: " — as the computer describes itself" }),
  );
  ui.contextAddress.textContent = offer.place ? `${offer.address} — ${offer.place}` : offer.address;
  ui.contextNetwork.replaceChildren(
    el("span", {
      className: `badge ${offer.sameNetwork ? "ok" : "warn"}`,
      text: offer.sameNetwork ? "Same network as this phone" : "Different network from this phone",
    }),
  );
  if (offer.sameNetwork) hide(ui.contextWarning);
  else {
    const phone = offer.primaryAddress === null ? "" : ` (this phone is at ${offer.primaryAddress})`;
    ui.contextWarning.textContent =
      `Warning: this device is on a different network from your phone${phone}. ` +
      "Only link it if it is your own computer and it is in front of you. " +
      "If someone sent you this code or asked you to scan it, choose Decline — " +
      "they may be trying to take over your account.";
    show(ui.contextWarning);
  }
  ui.deviceName.value = offer.suggestedName;
  updateAge();
  showStep("context");
  ui.decline.focus();
}

flow.subscribe(() => {
  renderFlow(flow.step);
});

async function startScan(): Promise<void> {
  if (!(await appLock.require("open the scanner"))) return;
  const scan = flow.startScan();
  if (scan === null) {
    flashNotice(ui.notice, "Not connected to the server yet. Try again in a moment.");
    return;
  }
  scanner?.stop();
  const camera = new Scanner(ui.video);
  scanner = camera;
  let text: string;
  try {
    const scanning = camera.scan();
    ui.scanStatus.textContent = "Point the camera at the code on the computer screen.";
    text = await scanning;
  } catch (error) {
    flow.scanFailed(scan, error);
    return;
  }
  await flow.scanned(scan, text);
}

async function startCodeEntry(): Promise<void> {
  if (!(await appLock.require("open code entry"))) return;
  if (!flow.startCodeEntry()) flashNotice(ui.notice, "Not connected to the server yet. Try again in a moment.");
}

function updateAge(): void {
  const seconds = flow.ageSeconds(Date.now());
  if (seconds !== null) ui.contextAge.textContent = seconds === 1 ? "1 second ago" : `${seconds} seconds ago`;
}

async function approve(): Promise<void> {
  if (busy) return;
  busy = true;
  try {
    if (!(await appLock.require("link this device"))) return;
    if (!(await flow.approve(ui.deviceName.value))) {
      ui.deviceName.focus();
      flashNotice(ui.notice, "Give the device a name of 1–64 characters.");
      return;
    }
  } finally {
    busy = false;
  }
  if (flow.step.step === "linked") await refreshDevices();
}

async function decline(): Promise<void> {
  const notice = await flow.decline();
  if (notice !== null) flashNotice(ui.notice, notice);
}

ui.linkDevice.addEventListener("click", () => void startScan());
ui.relay.decline.addEventListener("click", () => void decline());
ui.relay.proceed.addEventListener("click", () => void flow.checkNumber(ui.relay.number.value));
ui.linkWithCode.addEventListener("click", () => void startCodeEntry());
ui.codeCancel.addEventListener("click", () => {
  flow.close();
});
ui.codeView.addEventListener("submit", (event) => {
  event.preventDefault();
  void flow.enterCode(ui.codeInput.value);
});
ui.scanCancel.addEventListener("click", () => {
  flow.close();
});
ui.scanAgain.addEventListener("click", () => void startScan());
ui.done.addEventListener("click", () => {
  flow.close();
});
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
  await connection.connect();
}

void main();
