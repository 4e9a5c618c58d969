/**
 * A small menu behind one button (the "⋮" of a chat's header): the button says whether it is open
 * (aria-expanded); Escape, a click outside or choosing an item closes it. It keeps a narrow header
 * free for the title and the few buttons a person uses most (calls), and has room for more items.
 */
import { el } from "./dom";

export class Menu {
  readonly root: HTMLElement;
  readonly button: HTMLButtonElement;
  private readonly items: HTMLElement;

  constructor(label: string, testid: string) {
    this.button = el("button", {
      className: "icon menu-button",
      text: "⋮",
      testid,
      attrs: { type: "button", "aria-label": label, title: label, "aria-haspopup": "menu", "aria-expanded": "false" },
    });
    this.items = el("div", { className: "menu-items", testid: `${testid}-items`, attrs: { role: "menu" } });
    this.items.hidden = true;
    this.root = el("div", { className: "menu" }, this.button, this.items);
    this.button.addEventListener("click", () => {
      this.setOpen(this.items.hidden);
    });
    this.root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.items.hidden) {
        event.preventDefault(); // this Esc closed the menu: the "close chat" shortcut leaves it alone
        this.setOpen(false);
        this.button.focus();
      }
    });
    document.addEventListener("click", (event) => {
      if (!this.items.hidden && event.target instanceof Node && !this.root.contains(event.target)) this.setOpen(false);
    });
  }

  /** Adds an item; choosing it runs `choose` and closes the menu. */
  add(item: HTMLButtonElement, choose: () => void): void {
    item.addEventListener("click", () => {
      this.setOpen(false);
      choose();
    });
    this.items.append(item);
  }

  private setOpen(open: boolean): void {
    this.items.hidden = !open;
    this.button.setAttribute("aria-expanded", String(open));
    if (open) this.items.querySelector<HTMLElement>("button")?.focus();
  }
}
