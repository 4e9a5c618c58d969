/**
 * Calls in a page: one Phone on the device's messenger, its CallView over the page, and "Voice call" /
 * "Video call" buttons in a direct chat's header. MessengerHost calls `attachCalls` once per messenger.
 */
import { el } from "../ui/dom";
import { type IconName, icon } from "../ui/icons";
import type { Messenger } from "../messenger/messenger";
import type { MessengerView } from "../messenger/view";
import type { LockstepSocket } from "../net/socket";
import { CallView } from "./callView";
import { summary } from "./machine";
import { Phone } from "./phone";

export interface AttachedCalls {
  phone: Phone;
  close(): void;
}

/** Diagnostics in the page's address, as the terminal's flags: `?relay` uses TURN relay candidates only,
 * `?ice-host=127.0.0.1` offers candidates on that address only (both for testing a deployment). */
function options(): { relayOnly: boolean; hostAddresses: string[] } {
  const query = new URLSearchParams(location.search);
  const hosts = (query.get("ice-host") ?? "").split(",").filter((host) => host !== "");
  return { relayOnly: query.has("relay"), hostAddresses: hosts };
}

/** A header button that is only its icon, named for screen readers and in its tooltip. */
function iconButton(name: IconName, label: string, testid: string): HTMLButtonElement {
  return el(
    "button",
    { className: "icon", testid, attrs: { type: "button", title: label, "aria-label": label } },
    icon(name),
  );
}

export function attachCalls(
  messenger: Messenger,
  view: MessengerView,
  socket: () => LockstepSocket | null,
): AttachedCalls {
  const me = messenger.identity;
  let chain = Promise.resolve();
  const phone = new Phone(
    {
      me: { accountId: me.accountId, deviceId: me.deviceId },
      now: () => socket()?.serverNow() ?? Date.now(),
      send: (peer, body) => messenger.sendCall(peer, body),
      iceServers: () => messenger.iceServers(),
      nameOf: (accountId) => messenger.nameOf(accountId),
      note: (peer, record, ts) => {
        void messenger.noteCall(peer, record.callId, summary(record), ts, record.outgoing);
      },
    },
    options(),
  );
  // Signals are handled one after another, in the order the messenger opened them.
  messenger.onCall = (body, sender, conversation, ts) => {
    chain = chain
      .then(() => phone.onSignal(body, sender, conversation, ts))
      .catch((error: unknown) => {
        console.error("Lockstep: a call signal failed", error);
      });
  };
  messenger.onUndecryptable = (accountId, reason) => {
    chain = chain.then(() => phone.onUndecryptable(accountId, reason));
  };
  const callView = new CallView(document.body, phone);
  const voice = iconButton("phone", "Voice call", "call-voice");
  const video = iconButton("video", "Video call", "call-video");
  const dial = (media: "audio" | "video"): void => {
    const peer = view.headActions.dataset.peer;
    if (peer) void phone.dial(peer, media);
  };
  voice.addEventListener("click", () => {
    dial("audio");
  });
  video.addEventListener("click", () => {
    dial("video");
  });
  view.headActions.replaceChildren(voice, video);
  // A direct chat opened: a call may follow, so gather its candidates now (Phone.prepare).
  let attached = true;
  view.onOpen((conversation) => {
    if (attached && conversation?.startsWith("direct:")) phone.prepare();
  });
  return {
    phone,
    close: () => {
      attached = false;
      messenger.onCall = messenger.onUndecryptable = null;
      phone.close();
      callView.root.remove();
      view.headActions.replaceChildren();
    },
  };
}
