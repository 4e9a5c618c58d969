/**
 * Incoming calls while the page is in the background (issue 13): a notification "Incoming voice call" /
 * "Incoming video call" from the caller, with Answer and Decline buttons where notifications have them
 * (the phone app's service worker, sw.js), and taken away as soon as the call stops ringing here —
 * answered here or on another device, declined, cancelled or missed. Clicking it brings the page forward,
 * where the call screen is ringing; Answer and Decline act on the call as the screen's buttons do.
 *
 * It watches the phone (`subscribe`) and the page's visibility, as ./notifier.ts watches the messenger,
 * and shows nothing until the person allowed notifications.
 */
import type { Phone } from "../calls/phone";
import { type Permission, inBackground, notify } from "./notifier";

export class CallNotifier {
  /** The ringing call a notification is shown (or being shown) for, and how to take it away. */
  private shown: { callId: string; close: () => void } | null = null;
  private readonly unsubscribe: () => void;
  private readonly onVisibility = (): void => this.changed();
  private readonly onWorkerMessage = (event: MessageEvent): void => {
    const data = event.data as { type?: unknown; action?: unknown; callId?: unknown } | null;
    if (data?.type !== "call" || data.callId !== this.phone.snapshot().call?.callId) return;
    if (data.action === "answer") void this.phone.answer();
    else if (data.action === "decline") void this.phone.decline();
  };

  constructor(
    private readonly phone: Phone,
    private readonly permission: () => Permission,
    /** Whether notifications may name who calls ("Show names and message text", ./notifier.ts). */
    private readonly showsNames: () => boolean,
  ) {
    this.unsubscribe = phone.subscribe(() => this.changed());
    document.addEventListener("visibilitychange", this.onVisibility);
    if ("serviceWorker" in navigator) navigator.serviceWorker.addEventListener("message", this.onWorkerMessage);
  }

  close(): void {
    this.unsubscribe();
    document.removeEventListener("visibilitychange", this.onVisibility);
    if ("serviceWorker" in navigator) navigator.serviceWorker.removeEventListener("message", this.onWorkerMessage);
    this.shown?.close();
    this.shown = null;
  }

  private changed(): void {
    const call = this.phone.snapshot().call;
    const ringing = call?.state === "ringing-in" ? call : null;
    if (this.shown && this.shown.callId !== ringing?.callId) {
      this.shown.close();
      this.shown = null;
    }
    if (!ringing || this.shown || !inBackground() || this.permission() !== "granted") return;
    // Shown asynchronously: a call that stops ringing meanwhile takes the notification away once it is up.
    let close: (() => void) | null = null;
    let closed = false;
    this.shown = {
      callId: ringing.callId,
      close: () => {
        closed = true;
        close?.();
      },
    };
    const video = ringing.media === "video";
    void notify(
      `Incoming ${video ? "video" : "voice"} call`,
      {
        body: this.showsNames() ? this.phone.snapshot().peerName : "",
        tag: `call:${ringing.callId}`,
        requireInteraction: true, // it rings until answered, declined or over: it stays until then
        data: { call: ringing.callId },
        actions: [
          { action: "answer", title: "Answer" },
          { action: "decline", title: "Decline" },
        ],
      },
      () => undefined, // the page comes forward; its call screen is ringing
    ).then((taken) => {
      close = taken;
      if (closed) taken();
    });
  }
}
