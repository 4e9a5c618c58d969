/**
 * "Log out of all computers" on the phone (linking.md §7.4): one signed device list that keeps only this
 * primary removes every companion at once; each is disconnected and wipes its keys and messages. Shown
 * under the linked devices while any companion is linked, with a confirmation step.
 */
import { el } from "../ui/dom";

export class LogOutAll {
  readonly root: HTMLElement;
  private start: HTMLButtonElement;
  private confirmBox: HTMLElement;
  private confirmButton: HTMLButtonElement;

  constructor(private readonly logOut: () => Promise<void>) {
    this.start = el("button", {
      className: "danger",
      text: "Log out of all computers",
      testid: "unlink-all",
      attrs: { type: "button" },
    });
    this.confirmButton = el("button", {
      className: "danger",
      text: "Log out",
      testid: "unlink-all-confirm",
      attrs: { type: "button", "aria-label": "Log out of all computers now" },
    });
    const cancel = el("button", { text: "Cancel", testid: "unlink-all-cancel", attrs: { type: "button" } });
    const note = el("p", { testid: "unlink-all-note" });
    this.confirmBox = el(
      "div",
      { className: "confirm", attrs: { role: "alertdialog", "aria-label": "Log out of all computers?" } },
      note,
      el("div", { className: "row" }, this.confirmButton, cancel),
    );
    this.confirmBox.hidden = true;
    this.root = el("div", { className: "log-out-all" }, this.start, this.confirmBox);
    this.start.addEventListener("click", () => {
      this.confirmBox.hidden = false;
      this.confirmButton.focus();
    });
    cancel.addEventListener("click", () => (this.confirmBox.hidden = true));
    this.confirmButton.addEventListener("click", () => {
      this.confirmBox.hidden = true;
      void this.logOut();
    });
  }

  /** How many companions are linked (none: nothing to offer). */
  update(companions: number): void {
    this.root.hidden = companions === 0;
    if (companions === 0) this.confirmBox.hidden = true;
    const note = this.confirmBox.querySelector("p");
    if (note)
      note.textContent =
        `${String(companions)} linked ${companions === 1 ? "computer is" : "computers are"} logged out at once ` +
        "and delete their keys and messages. This phone keeps your chats.";
  }
}
