/**
 * The phone app's lock (docs/protocol/linking.md §11): before anything that changes which devices hold
 * the account — opening the scanner or code entry, approving a link, unlinking, log-out-all, sending
 * history early — the person proves they are the phone's owner, so a phone left unlocked for a minute
 * cannot link a stranger's computer. Other code asks in one line:
 *
 *   if (!(await appLock.require("link this device"))) return;
 *
 * `require` resolves true when the owner confirmed (or when the lock is off: the person chose that, and
 * Settings says what it means), false when not; it has then said why ("Lockstep did not link this device:
 * …"), so callers only stop. The check is the phone's own: a passkey on its platform authenticator (a
 * fingerprint, a face, the screen lock), verified here with WebCrypto, or where there is none a PIN kept
 * as a slow hash with a back-off (../../lock/pin.ts). The setting lives in the primary's sealed state, so
 * it goes wherever that state goes.
 */
import { randomBytes } from "../../crypto/bytes";
import { AssertionRejected, type PasskeyRecord, verifyAssertion } from "../../lock/assertion";
import { askPasskey, passkeyAvailable, registerPasskey } from "../../lock/passkey";
import { type PinRecord, checkPin, makePin } from "../../lock/pin";
import { choosePin, enterPin } from "./pinDialog";

export type LockSetting = ({ kind: "passkey" } & PasskeyRecord) | ({ kind: "pin" } & PinRecord);

export interface LockStorage {
  load(): LockSetting | undefined;
  save(setting: LockSetting | undefined): Promise<void>;
}

/** Why a passkey did not unlock, in words for the person. */
function passkeyFailure(error: unknown): string {
  if (error instanceof AssertionRejected) return error.message;
  if (error instanceof DOMException && error.name === "NotAllowedError")
    return "the screen lock was cancelled or did not recognise you";
  if (error instanceof DOMException && error.name === "AbortError") return "the screen lock was cancelled";
  return error instanceof Error ? error.message : String(error);
}

function pinMessage(check: Awaited<ReturnType<typeof checkPin>>): string | null {
  switch (check.result) {
    case "right":
      return null;
    case "wait":
      return `Too many wrong PINs. Try again in ${String(check.wait)} s.`;
    case "wrong":
      return check.wait > 0
        ? `Wrong PIN. Try again in ${String(check.wait)} s.`
        : `Wrong PIN. ${String(check.freeLeft)} more ${check.freeLeft === 1 ? "try" : "tries"} before a wait.`;
  }
}

export class AppLock {
  /** One question at a time: a second tap while the first is open is refused, not queued. */
  private asking = false;

  constructor(
    private readonly storage: LockStorage,
    private readonly tell: (text: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get setting(): "passkey" | "pin" | "off" {
    return this.storage.load()?.kind ?? "off";
  }

  /** Whether the owner confirmed, for `reason` ("link this device"): see the module comment. */
  async require(reason: string): Promise<boolean> {
    const setting = this.storage.load();
    if (setting === undefined) return true;
    if (this.asking) return false;
    this.asking = true;
    try {
      const why = setting.kind === "passkey" ? await this.passkey(setting) : await this.pin(reason);
      if (why === null) return true;
      this.tell(`Lockstep did not ${reason}: ${why}.`);
      return false;
    } finally {
      this.asking = false;
    }
  }

  /** null when the passkey answered with the owner verified, else why not. */
  private async passkey(record: PasskeyRecord): Promise<string | null> {
    const challenge = randomBytes(32);
    try {
      await verifyAssertion(record, await askPasskey(record, challenge), { challenge, origin: location.origin });
      return null;
    } catch (error) {
      return passkeyFailure(error);
    }
  }

  private async pin(reason: string): Promise<string | null> {
    const entered = await enterPin(`Enter your app lock PIN to ${reason}`, async (pin) => {
      const current = this.storage.load();
      if (current?.kind !== "pin") return null; // turned off meanwhile (another tab)
      const check = await checkPin(current, pin, this.now());
      await this.storage.save({ kind: "pin", ...check.record });
      return pinMessage(check);
    });
    return entered ? null : "the PIN was not entered";
  }

  /** Whether this phone can hold a passkey for the lock (else a PIN is offered). */
  passkeyAvailable(): Promise<boolean> {
    return passkeyAvailable();
  }

  /**
   * Turns the lock on (or replaces it) with this phone's passkey, or with a PIN where `kind` says so.
   * Replacing a lock needs the lock; true once the new one is kept.
   */
  async turnOn(kind: "passkey" | "pin", account: { handle: string; displayName: string }): Promise<boolean> {
    if (!(await this.require("change the app lock"))) return false;
    if (kind === "pin") {
      return choosePin("Choose an app lock PIN", async (pin) => {
        await this.storage.save({ kind: "pin", ...(await makePin(pin)) });
      });
    }
    try {
      const user = { id: randomBytes(16), name: `@${account.handle}`, displayName: account.displayName };
      await this.storage.save({ kind: "passkey", ...(await registerPasskey(user)) });
      return true;
    } catch (error) {
      const was = this.setting === "off" ? "is not on" : "was not changed";
      this.tell(`The app lock ${was}: ${passkeyFailure(error)}.`);
      return false;
    }
  }

  /** Turns the lock off (behind the lock itself). */
  async turnOff(): Promise<boolean> {
    if (!(await this.require("turn the app lock off"))) return false;
    await this.storage.save(undefined);
    return true;
  }
}
