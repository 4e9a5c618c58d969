/**
 * The "Share last seen and online" switch (messaging.md §15.5): a checkbox on the phone app's Settings
 * screen, an item of the chat list's "⋮" menu on a computer (the page says which). It is this device's
 * choice and reciprocal, as in WhatsApp: off, this device sends no presence and shows no one's.
 */
import { el } from "../ui/dom";
import { Menu } from "../ui/menu";
import type { Messenger } from "./messenger";

const LABEL = "Share last seen and online";

export class LastSeenToggle {
  private messenger: Messenger | null = null;
  /** Each control showing the setting: told whether it is on, and whether it can be changed now. */
  private readonly renderers: ((on: boolean, enabled: boolean) => void)[] = [];

  /** A labelled checkbox with a line on what it means (a settings screen). */
  checkbox(parent: HTMLElement): void {
    const box = el("input", { testid: "share-last-seen", attrs: { type: "checkbox" } });
    parent.append(
      el("label", { className: "last-seen-setting" }, box, ` ${LABEL}`),
      el("p", {
        className: "muted small",
        text: "Off: your contacts don't see when you are online or were last seen, and you don't see theirs.",
      }),
    );
    box.addEventListener("change", () => void this.messenger?.setShareLastSeen(box.checked));
    this.renderers.push((on, enabled) => {
      box.checked = on;
      box.disabled = !enabled;
    });
    this.render();
  }

  /** A "⋮" menu over the chat list (a computer's, which has no settings screen) with the switch in it. */
  chatListMenu(parent: HTMLElement): void {
    const menu = new Menu("Menu", "chats-menu");
    const item = el("button", {
      text: LABEL,
      testid: "share-last-seen",
      attrs: { type: "button", role: "menuitemcheckbox", "aria-checked": "true" },
    });
    menu.add(item, () => void this.messenger?.setShareLastSeen(!this.messenger.sharesLastSeen));
    parent.append(menu.root);
    this.renderers.push((on, enabled) => {
      item.setAttribute("aria-checked", String(on));
      item.disabled = !enabled;
    });
    this.render();
  }

  bind(messenger: Messenger | null): void {
    this.messenger = messenger;
    this.render();
  }

  /** Draw again (bound, or the setting changed). */
  render(): void {
    const on = this.messenger?.sharesLastSeen ?? true;
    for (const draw of this.renderers) draw(on, this.messenger !== null);
  }
}
