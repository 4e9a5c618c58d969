/**
 * Notifications of new messages while the page is in the background, per-chat mute, and the unread
 * count on the installed app's icon.
 *
 * - A message that arrives while the tab or app is hidden or not focused shows a notification (the
 *   chat's title, who wrote and what, one per chat, replaced by the next): through the service worker's
 *   `showNotification` where the page has one (the phone app: Android shows page notifications only
 *   that way), else the page's `Notification`. Clicking it brings the page forward at that chat.
 * - Nothing is shown for muted chats, for our own messages, or for history a device loads.
 * - The unread count of unmuted chats goes on the app's badge (Badging API, where the browser has it).
 * - Which chats are muted, and whether notifications show names and text ("Show names and message
 *   text"; off: only "New message"), are this device's choices, kept sealed like every record
 *   (StateStore), in a database of its own that the device's wipe deletes too.
 *
 * It watches the messenger (`subscribe`) rather than being called by it: a new incoming message is a
 * chat whose newest message is incoming, unread and not yet seen by this notifier.
 */
import { StateStore } from "../store/db";
import type { ChatMessage, Conversation } from "./model";
import type { Messenger } from "./messenger";

interface ChatPrefs {
  v: 1;
  muted: string[];
  /** Notifications show the chat, who wrote and what (the default), or only "New message". */
  previews?: boolean;
}

export type Permission = "granted" | "denied" | "default" | "unsupported";

function prefsStore(deviceId: string): StateStore<ChatPrefs> {
  return new StateStore<ChatPrefs>(`lockstep-prefs-${deviceId}`);
}

export class Notifier {
  private messenger: Messenger | null = null;
  private unsubscribe: () => void = () => undefined;
  private store: StateStore<ChatPrefs> | null = null;
  private muted = new Set<string>();
  private previews = true;
  /** Per chat, the newest incoming message already seen (shown, or there before we looked). */
  private seen = new Map<string, string>();
  private listeners = new Set<() => void>();
  /** The count last put on the app's badge (null: not set by this page yet). */
  private badge: number | null = null;
  /** The permission as the Permissions API last reported it (null: not watched, read each time). */
  private watchedPermission: NotificationPermission | null = null;
  private watching = false;

  /** `open` brings a chat up when the person clicks its notification. */
  constructor(private readonly open: (conversation: string) => void) {
    // navigator.serviceWorker is missing outside secure contexts (the types say it is always there).
    if ("serviceWorker" in navigator)
      navigator.serviceWorker.addEventListener("message", (event: MessageEvent) => {
        const data = event.data as { type?: unknown; conversation?: unknown } | null;
        if (data?.type === "open-chat" && typeof data.conversation === "string") this.open(data.conversation);
      });
  }

  async bind(messenger: Messenger | null, deviceId: string | null): Promise<void> {
    this.unsubscribe();
    this.messenger = messenger;
    this.seen.clear();
    this.muted.clear();
    this.store = deviceId ? prefsStore(deviceId) : null;
    let prefs: ChatPrefs | undefined;
    let unreadable = false;
    try {
      prefs = await this.store?.load();
    } catch {
      unreadable = true;
    }
    if (this.messenger !== messenger) return; // rebound meanwhile
    this.muted = new Set(prefs?.muted ?? []);
    // Fail closed: a choice that cannot be read may have been "off", and "on" puts message text in the
    // clear where notifications are kept (setShowsPreviews). Nothing stored yet (first use) means on.
    this.previews = !unreadable && (prefs?.previews ?? true);
    this.emit();
    if (!messenger) {
      void this.setBadge(0);
      return;
    }
    for (const c of messenger.conversations()) if (c.last && !c.last.outgoing) this.seen.set(c.id, c.last.id);
    this.unsubscribe = messenger.subscribe(() => this.changed());
    this.changed();
  }

  /** Called when anything about mute or permission changed (for buttons showing that state). */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  isMuted(conversation: string): boolean {
    return this.muted.has(conversation);
  }

  async setMuted(conversation: string, muted: boolean): Promise<void> {
    if (muted) this.muted.add(conversation);
    else this.muted.delete(conversation);
    this.emit();
    this.changed();
    await this.savePrefs();
  }

  /** Whether notifications show names and text; a device without a messenger yet keeps the default. */
  get showsPreviews(): boolean {
    return this.previews;
  }

  get canChangePreviews(): boolean {
    return this.store !== null;
  }

  /**
   * Off: a notification says only "New message", with no chat name, sender or text. What a notification
   * shows leaves the sealed store: Chromium keeps the phone app's (service-worker) notifications in the
   * profile's Platform Notifications database in the clear, and the OS's notification list may keep them.
   */
  async setShowsPreviews(on: boolean): Promise<void> {
    this.previews = on;
    this.emit();
    await this.savePrefs();
  }

  private async savePrefs(): Promise<void> {
    await this.store?.save({ v: 1, muted: [...this.muted], previews: this.previews });
  }

  /**
   * `Notification.permission` asks the browser synchronously (~0.1 ms) and the chat controls read it on
   * every change (a burst of messages is hundreds): once the Permissions API watches it, the value it
   * last reported is kept instead. Until then (or without that API) it is read each time.
   */
  get permission(): Permission {
    if (!("Notification" in window)) return "unsupported";
    if (this.watchedPermission) return this.watchedPermission;
    this.watchPermission();
    return Notification.permission;
  }

  private watchPermission(): void {
    if (this.watching || !("permissions" in navigator)) return;
    this.watching = true;
    navigator.permissions
      .query({ name: "notifications" })
      .then((status) => {
        status.addEventListener("change", () => {
          this.watchedPermission = Notification.permission;
          this.emit();
        });
        this.watchedPermission = Notification.permission;
      })
      .catch(() => undefined); // not watched: read each time
  }

  /** Asks the browser (from a click: browsers allow the prompt only then). */
  async requestPermission(): Promise<Permission> {
    if (!("Notification" in window)) return "unsupported";
    await Notification.requestPermission();
    // Once watched, the answer is kept now rather than when the "change" event comes (it may come after
    // emit() below). Until the Permissions API answers, nothing is kept: the getter asks the browser.
    if (this.watchedPermission) this.watchedPermission = Notification.permission;
    this.emit();
    return this.permission;
  }

  /** Every device's wipe deletes its chat preferences with its keys and messages. */
  static wipe(deviceId: string): Promise<void> {
    return prefsStore(deviceId).wipe();
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }

  private changed(): void {
    const m = this.messenger;
    if (!m) return;
    const conversations = m.conversations();
    void this.setBadge(conversations.filter((c) => !this.muted.has(c.id)).reduce((total, c) => total + c.unread, 0));
    for (const c of conversations) {
      const last = c.last;
      if (!last || last.outgoing || this.seen.get(c.id) === last.id) continue;
      this.seen.set(c.id, last.id);
      if (c.unread > 0 && !this.muted.has(c.id) && inBackground()) void this.show(c);
    }
  }

  private async show(c: Conversation): Promise<void> {
    if (this.permission !== "granted" || !this.messenger) return;
    const last = c.last;
    if (!last) return;
    const messenger = this.messenger;
    const { title, body } = this.previews
      ? preview(c, last, (account) => messenger.nameOf(account))
      : { title: "Lockstep", body: "New message" };
    const options: NotificationOptions = {
      body,
      tag: `chat:${c.id}`, // one notification per chat: the next message replaces it
      data: { conversation: c.id },
    };
    await notify(title, options, () => this.open(c.id));
  }

  private async setBadge(count: number): Promise<void> {
    // Told on every change (a burst is hundreds), the badge is set only when its count changed.
    if (count === this.badge) return;
    this.badge = count;
    // The Badging API exists on installed apps (Chromium on desktop and Android, Safari on iOS home-screen apps).
    try {
      if (!("setAppBadge" in navigator)) return;
      if (count > 0) await navigator.setAppBadge(count);
      else await navigator.clearAppBadge();
    } catch {
      // not installed, or the platform has no badge: the tab title still shows the count
    }
  }
}

/** What a notification with names and text shows of `last`, the newest message of `c`. */
function preview(
  c: Conversation,
  last: ChatMessage,
  nameOf: (account: string) => string,
): { title: string; body: string } {
  const who = c.kind === "group" ? `${nameOf(last.senderAccount)}: ` : "";
  const what =
    last.kind === "media"
      ? last.media?.type === "image"
        ? "📷 Photo"
        : `📎 ${last.media?.name ?? "File"}`
      : last.kind === "undecryptable"
        ? "New message"
        : (last.text ?? "");
  return { title: c.title, body: `${who}${what}${last.kind === "media" && last.text ? ` ${last.text}` : ""}` };
}

/**
 * Shows a notification through the service worker's `showNotification` where the page has one (the phone
 * app: Android shows page notifications only that way; its clicks reach sw.js), else the page's own
 * `Notification` (whose click runs `clicked`). `actions` (buttons) exist only on the first kind. Returns
 * how to take it away again.
 */
export async function notify(
  title: string,
  options: NotificationOptions & { actions?: { action: string; title: string }[] },
  clicked: () => void,
): Promise<() => void> {
  const { actions, ...plain } = options;
  const shown: NotificationOptions = { icon: "/icon-192.png", badge: "/icon-192.png", ...plain };
  const registration =
    "serviceWorker" in navigator ? await navigator.serviceWorker.getRegistration().catch(() => undefined) : undefined;
  if (registration?.active) {
    await registration.showNotification(title, { ...shown, ...(actions ? { actions } : {}) });
    const tag = shown.tag;
    return () =>
      void registration
        .getNotifications(tag ? { tag } : {})
        .then((list) => list.forEach((n) => n.close()))
        .catch(() => undefined);
  }
  const notification = new Notification(title, shown);
  notification.addEventListener("click", () => {
    window.focus();
    clicked();
    notification.close();
  });
  return () => notification.close();
}

/** The person is not looking at this page: another tab, another window, or the screen is off. */
export function inBackground(): boolean {
  return document.visibilityState === "hidden" || !document.hasFocus();
}
