/**
 * Companion page (index.html): shows the rotating QR code, receives the link grant, stays linked. The
 * state machine of linking.md §8 lives in ./companion/linker.ts; this file only draws its phase and wires
 * the page's parts (messaging, other tabs, the clock banner) to it.
 */
import "../ui/styles.css";
import { banner, untilText } from "../link/probation";
import { companionNotice, idleText, linkCodeText, probationText } from "../link/wording";
import { LockstepSocket, defaultSocketUrl } from "../net/socket";
import { forgetStoreKeyIfUnused, openAtRest, stopAtRest } from "../store/atRest";
import { StateStore } from "../store/db";
import { clearQr, drawQr } from "../ui/qrcode";
import { byTestId, checkClock, el, flashNotice, hide, show } from "../ui/dom";
import { MessengerHost } from "../messenger/host";
import { setTitleState } from "../ui/title";
import { type CompanionPhase, CompanionLinker, type CompanionState, type Connection } from "./companion/linker";
import { showMatchNumber } from "./companion/matchNumber";
import { showCode } from "./companion/typedCode";

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
  probationBanners: byTestId("probation-banners"),
  idleCountdown: byTestId("idle-countdown"),
};

const QR_PIXELS = 400;

/** End-to-end messaging, once this browser is linked (docs/protocol/messaging.md). */
const messaging = new MessengerHost(byTestId("linked-account").parentElement as HTMLElement, ui.loggedOut);

/** Other tabs of this page in this browser share the stored state: when one links, the others reload
 * (and show the link); when one is unlinked, the others log out too. */
const tabs = "BroadcastChannel" in window ? new BroadcastChannel("lockstep-companion") : null;

const store = new StateStore<CompanionState>("lockstep-companion");

const linker = new CompanionLinker<LockstepSocket>(
  (handlers) => LockstepSocket.open(defaultSocketUrl(), handlers),
  store,
  {
    opened: (socket) => void checkClock(socket, ui.clock),
    signedIn: (socket, state) =>
      void messaging.start(socket, {
        accountId: state.account.id,
        deviceId: state.deviceId,
        role: "companion",
        deviceKey: state.deviceKey,
        accountKey: state.accountKey,
        listVersion: state.listVersion,
        handle: state.account.handle,
        displayName: state.account.display_name,
      }),
    event: (event) => {
      messaging.onEvent(event);
    },
    disconnected: () => {
      messaging.disconnected();
    },
    devicesChanged: (change, state) => {
      if (change.kind === "linked" && change.device_id !== state.deviceId)
        flashNotice(ui.notice, `New device linked: ${change.name}`);
      else if (change.kind === "unlinked") flashNotice(ui.notice, `Device unlinked: ${change.name}`);
      else if (change.kind === "renamed") flashNotice(ui.notice, `Device renamed: ${change.name}`);
    },
    linked: () => {
      tabs?.postMessage("linked");
    },
    wipe: (deviceId) => {
      stopAtRest(); // a save or key made late must not leave a fresh store key behind
      return messaging.wipe(deviceId);
    },
    unlinked: async (here) => {
      if (here) tabs?.postMessage("unlinked");
      await forgetStoreKeyIfUnused(); // the last tab to wipe deletes the store key too
    },
  },
);

tabs?.addEventListener("message", (message: MessageEvent) => {
  const data: unknown = message.data;
  if ((data === "linked" || data === "unlinked") && linker.otherTab(data) === "reload") location.reload();
});

// --- drawing the phase -------------------------------------------------------------------------------

function hideCode(placeholder: string): void {
  clearQr(ui.qr);
  hide(ui.qr);
  hide(ui.typedCode);
  hide(ui.matchNumber);
  ui.placeholder.textContent = placeholder;
  show(ui.placeholder);
  ui.countdown.textContent = "";
}

/** The linked account's bar, and the page laid out around the messenger while it shows (layout.css's `.page.linked`). */
function showLinked(linked: boolean): void {
  show(ui.linked, linked);
  ui.linked.parentElement?.classList.toggle("linked", linked);
}

/** The panel with the code: a placeholder instead of the code, the status line, and maybe a button. */
function showPanel(placeholder: string, status: string, button?: string): void {
  show(ui.panel);
  showLinked(false);
  hide(ui.loggedOut);
  hideCode(placeholder);
  ui.status.textContent = status;
  if (button === undefined) hide(ui.newCode);
  else {
    ui.newCode.textContent = button;
    show(ui.newCode);
  }
}

const CONNECTION: Record<Connection, string> = {
  connecting: "Connecting…",
  online: "",
  reconnecting: "Reconnecting…",
  unreachable: "Cannot reach the server. Retrying…",
  refused: "Could not sign in to the server; retrying…",
};

/** What the tab's title says (ui/title.ts): where linking stands, seen from any tab. */
function titleOf(phase: CompanionPhase): string {
  switch (phase.name) {
    case "connecting":
      return phase.why === "reconnecting" ? "Reconnecting…" : "Connecting…";
    case "waiting":
    case "showing":
      return phase.session?.typed ? "Type the code on your phone" : "Scan the code with your phone";
    case "scanned":
      return "Confirm on your phone";
    case "verifying":
      return "Linking…";
    case "unavailable":
    case "idle":
      return "Get a new code";
    case "declined":
    case "failed":
      return "Not linked";
    case "linked":
      return `@${phase.state.account.handle}`;
    case "logging_out":
    case "logged_out":
      return "Unlinked";
  }
}

function render(phase: CompanionPhase): void {
  setTitleState(titleOf(phase));
  switch (phase.name) {
    case "connecting": {
      const text = phase.why === "reconnecting" ? "Reconnecting…" : "Connecting…";
      const status = phase.why === "unreachable" ? "Cannot reach the server. Retrying…" : text;
      if (phase.why === "unreachable") ui.status.textContent = status;
      else showPanel(text, status);
      break;
    }
    case "waiting":
      showPanel("Getting a code…", "Getting a code…");
      break;
    case "showing": {
      const { session, text } = phase;
      hide(ui.placeholder);
      if (session.typed) {
        showCode(ui.typedCode, session.typed);
        ui.status.textContent = linkCodeText("companion_instructions");
        tick();
        break;
      }
      drawQr(ui.qr, text, QR_PIXELS);
      show(ui.qr);
      ui.status.textContent = session.last
        ? "Scan this code with your phone. This is the last code; after it you can ask for a new one."
        : "Scan this code with your phone.";
      tick();
      break;
    }
    case "scanned":
      showPanel("Code scanned", companionNotice("scanned"));
      if (phase.number !== null) showMatchNumber(ui.matchNumber, phase.number);
      break;
    case "verifying":
      showPanel("Checking…", "Your phone approved. Checking the link…");
      break;
    case "unavailable":
      showPanel(
        "No code",
        phase.rateLimited
          ? "Too many codes were requested from this network. Wait a minute, then try again."
          : "Could not get a code from the server.",
        "Try again",
      );
      break;
    case "idle":
      showPanel(
        "Code expired",
        "The code expired. Click to get a new code when your phone is ready.",
        "Click to get a new code",
      );
      break;
    case "declined":
      showPanel("Not linked", companionNotice(phase.reason), "Get a new code");
      break;
    case "failed":
      showPanel("Link refused", `This link was refused: ${phase.reason}. Nothing was stored.`, "Get a new code");
      break;
    case "linked": {
      const { state } = phase;
      const { handle, display_name: displayName } = state.account;
      hide(ui.panel);
      hide(ui.loggedOut);
      ui.linkedTitle.textContent = `Linked to @${handle} (${displayName}) as ${state.deviceName}`;
      ui.connection.textContent = CONNECTION[phase.connection];
      showLinked(true);
      messaging.setDevices(`This browser is a linked device of @${handle} (${state.deviceName})`);
      drawNotices();
      break;
    }
    case "logging_out":
      break; // the old screen stays until the keys are gone
    case "logged_out":
      hide(ui.panel);
      showLinked(false);
      ui.loggedOutReason.textContent = `${phase.reason} Its keys were deleted from this browser.`;
      show(ui.loggedOut);
      break;
  }
}

/** The banners a linked companion shows: devices on probation (unlinked from the phone), this device's own
 * probation, and the idle-logout countdown (linking.md §4.5, §4.6). */
function drawNotices(): void {
  const notices = linker.notices();
  if (!notices) return;
  const lines = notices.newcomers.map((entry) =>
    el("p", {
      className: "banner warn",
      testid: "probation-banner",
      text: `${banner(entry, notices.now)} ${probationText("unlink_on_phone")}`,
    }),
  );
  if (notices.probationUntil !== null)
    lines.push(
      el("p", {
        className: "banner",
        testid: "on-probation",
        text: probationText("here", { until: untilText(notices.probationUntil) }),
      }),
    );
  ui.probationBanners.replaceChildren(...lines);
  const { idle } = notices;
  ui.idleCountdown.textContent = idle ? idleText("offline", { offline: idle.offline, days: idle.left }) : "";
  show(ui.idleCountdown, idle !== null);
}

/** A page left open keeps checking: the list's age (idle logout) and the banners' hours. */
async function everyMinute(): Promise<void> {
  await linker.checkIdle();
  drawNotices();
}

function tick(): void {
  const seconds = linker.secondsLeft();
  if (seconds === null) {
    ui.countdown.textContent = "";
    return;
  }
  const last = linker.phase.name === "showing" && linker.phase.session.last;
  ui.countdown.textContent = last ? `This code expires in ${seconds} s` : `New code in ${seconds} s`;
}

linker.subscribe(() => {
  render(linker.phase);
});

// --- the person's clicks -------------------------------------------------------------------------------

ui.newCode.addEventListener("click", () => {
  hide(ui.newCode);
  linker.newCode();
});

ui.useCode.addEventListener("click", () => {
  ui.useCode.textContent = linker.toggleTypedMode() ? "Show a QR code instead" : "Link with a code instead";
});

ui.linkAgain.addEventListener("click", () => {
  void openAtRest() // a new store key for the new link (the old one was deleted with the rest)
    .catch(() => undefined)
    .then(() => linker.linkAgain());
});

setInterval(tick, 250);
setInterval(() => void everyMinute(), 60_000);

async function main(): Promise<void> {
  try {
    await openAtRest(); // before any key is made: every private key is then kept wrapped
  } catch {
    // No store key: start unlinked (the linker finds nothing it can read).
  }
  await linker.start();
}

void main();
