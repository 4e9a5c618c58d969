/**
 * The phone app's screens, one at a time as in a phone's messenger: Chats (the chat list; a chat opens
 * over it) and Settings (the account, notifications, Linked devices with "Link a device"). The app
 * bar's Settings button and the Settings screen's back arrow move between them, and so does the
 * phone's back gesture: entering Settings adds a history entry, so "back" returns to Chats instead of
 * leaving the app.
 */
import type { Notifier } from "../../messenger/notifier";
import { byTestId, el } from "../../ui/dom";

export type Screen = "chats" | "settings";

export class Screens {
  private current: Screen = "chats";
  private readonly listeners = new Set<(screen: Screen) => void>();

  constructor(private readonly root: HTMLElement) {
    byTestId("open-settings").addEventListener("click", () => this.show("settings"));
    byTestId("settings-back").addEventListener("click", () => {
      if ((history.state as { screen?: unknown } | null)?.screen === "settings") history.back();
      else this.show("chats");
    });
    window.addEventListener("popstate", (event) => {
      const screen = (event.state as { screen?: unknown } | null)?.screen;
      this.apply(screen === "settings" ? "settings" : "chats");
    });
    this.apply("chats");
  }

  get screen(): Screen {
    return this.current;
  }

  onShow(listener: (screen: Screen) => void): void {
    this.listeners.add(listener);
  }

  show(screen: Screen): void {
    if (screen === this.current) return;
    if (screen === "settings") history.pushState({ screen: "settings" }, "");
    else if ((history.state as { screen?: unknown } | null)?.screen === "settings") history.replaceState(null, "");
    this.apply(screen);
  }

  private apply(screen: Screen): void {
    this.current = screen;
    this.root.dataset.screen = screen;
    for (const section of this.root.querySelectorAll<HTMLElement>("[data-screen-name]"))
      section.hidden = section.dataset.screenName !== screen;
    byTestId("open-settings").setAttribute("aria-expanded", String(screen === "settings"));
    window.scrollTo(0, 0);
    for (const listener of this.listeners) listener(screen);
  }
}

/** The Settings screen's Notifications card: whether they are on, the button that asks for them, and
 * whether they show names and text. */
export function showNotificationSettings(notifier: Notifier): void {
  const state = byTestId("notification-state");
  const enable = byTestId<HTMLButtonElement>("settings-enable-notifications");
  const previews = el("input", { testid: "notification-previews", attrs: { type: "checkbox" } });
  byTestId("notifications-card").append(
    el("label", {}, previews, " Show names and message text"),
    el("p", {
      className: "muted small",
      text:
        "Off: a notification says only “New message”. What notifications show is kept outside " +
        "Lockstep's encrypted storage, by this browser and in your phone's notification list.",
    }),
  );
  previews.addEventListener("change", () => void notifier.setShowsPreviews(previews.checked));
  const render = (): void => {
    const permission = notifier.permission;
    state.textContent =
      permission === "granted"
        ? "On: new messages notify you while Lockstep is in the background. Mute a chat from its header."
        : permission === "denied"
          ? "Blocked in this browser's site settings for Lockstep. Allow notifications there to get them."
          : permission === "unsupported"
            ? "This browser cannot show notifications."
            : "Off. Turn them on to hear about new messages while Lockstep is in the background.";
    enable.hidden = permission !== "default";
    previews.checked = notifier.showsPreviews;
    previews.disabled = !notifier.canChangePreviews;
  };
  enable.addEventListener("click", () => void notifier.requestPermission());
  notifier.onChange(render);
  render();
}
