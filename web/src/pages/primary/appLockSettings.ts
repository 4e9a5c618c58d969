/**
 * Where the person meets the app lock (./appLock.ts): the offer shown once, right after the account is
 * made, and the Settings card ("App lock") that turns it on, changes it or turns it off — every change
 * behind the lock itself.
 */
import { byTestId, show } from "../../ui/dom";
import type { AppLock } from "./appLock";

type Account = () => { handle: string; displayName: string } | null;

const STATE_TEXT = {
  passkey:
    "On: this phone's screen lock (fingerprint, face or PIN) is asked before linking, unlinking or logging out a device.",
  pin: "On: your app lock PIN is asked before linking, unlinking or logging out a device.",
  off: "Off: anyone holding this phone unlocked can link a computer to your account.",
} as const;

export class AppLockSettings {
  private readonly ui = {
    offer: byTestId("app-lock-offer"),
    offerOn: byTestId<HTMLButtonElement>("app-lock-offer-on"),
    offerSkip: byTestId<HTMLButtonElement>("app-lock-offer-skip"),
    state: byTestId("app-lock-state"),
    on: byTestId<HTMLButtonElement>("app-lock-on"),
    change: byTestId<HTMLButtonElement>("app-lock-change"),
    off: byTestId<HTMLButtonElement>("app-lock-off"),
  };
  /** What this phone offers: its passkey where it has one, else a PIN (decided once, at start). */
  private kind: Promise<"passkey" | "pin">;

  constructor(
    private readonly lock: AppLock,
    private readonly account: Account,
  ) {
    this.kind = lock.passkeyAvailable().then((yes) => (yes ? "passkey" : "pin"));
    void this.kind.then((kind) => {
      this.ui.offerOn.textContent = kind === "passkey" ? "Use this phone's screen lock" : "Set a PIN";
      this.render();
    });
    this.ui.offerOn.addEventListener("click", () => void this.acceptOffer());
    this.ui.offerSkip.addEventListener("click", () => show(this.ui.offer, false));
    this.ui.on.addEventListener("click", () => void this.turnOn());
    this.ui.change.addEventListener("click", () => void this.turnOn());
    this.ui.off.addEventListener("click", () => void this.lock.turnOff().then(() => this.render()));
  }

  /** Right after the account is made: offer the lock (once; Settings has it afterwards). */
  offer(): void {
    show(this.ui.offer, this.lock.setting === "off");
  }

  render(): void {
    const setting = this.lock.setting;
    this.ui.state.textContent = STATE_TEXT[setting];
    show(this.ui.on, setting === "off");
    show(this.ui.change, setting !== "off");
    show(this.ui.off, setting !== "off");
    this.ui.change.textContent = setting === "pin" ? "Change PIN" : "Register the screen lock again";
    void this.kind.then((kind) => {
      this.ui.on.textContent = kind === "passkey" ? "Turn on with this phone's screen lock" : "Turn on with a PIN";
    });
  }

  private async acceptOffer(): Promise<void> {
    if (await this.turnOn()) show(this.ui.offer, false);
  }

  private async turnOn(): Promise<boolean> {
    const account = this.account();
    if (account === null) return false;
    const on = await this.lock.turnOn(await this.kind, account);
    this.render();
    return on;
  }
}
