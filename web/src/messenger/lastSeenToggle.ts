/**
 * The "Share last seen and online" switch (messaging.md §15.5): on the phone app it sits in Settings, on a
 * computer in the chat list's menu (the page says where). It is this device's choice and reciprocal, as in
 * WhatsApp: off, this device sends no presence and shows no one's.
 */
import { el } from "../ui/dom";
import type { Messenger } from "./messenger";

export class LastSeenToggle {
  readonly root: HTMLElement;
  private readonly box: HTMLInputElement;
  private messenger: Messenger | null = null;

  constructor() {
    this.box = el("input", { testid: "share-last-seen", attrs: { type: "checkbox" } });
    this.root = el(
      "div",
      { className: "last-seen-setting" },
      el("label", {}, this.box, " Share last seen and online"),
      el("p", {
        className: "muted small",
        text: "Off: your contacts don't see when you are online or were last seen, and you don't see theirs.",
      }),
    );
    this.box.addEventListener("change", () => {
      const on = this.box.checked;
      void this.messenger?.setShareLastSeen(on);
    });
    this.render();
  }

  bind(messenger: Messenger | null): void {
    this.messenger = messenger;
    this.render();
  }

  private render(): void {
    this.box.disabled = this.messenger === null;
    this.box.checked = this.messenger?.sharesLastSeen ?? true;
  }
}

/** A computer's chat list menu ("⋮"): settings that the phone app keeps on its Settings screen. */
export function chatListMenu(...items: HTMLElement[]): HTMLElement {
  const menu = el(
    "details",
    { className: "chat-menu", testid: "chat-menu" },
    el("summary", { text: "⋮", attrs: { "aria-label": "Menu", title: "Menu" } }),
    el("div", { className: "chat-menu-panel" }, ...items),
  );
  return menu;
}
