/**
 * Friction when the networks differ (linking.md §6.5): instead of the one-tap Link, a full-screen warning
 * naming the companion's address and what relays look like, and the 2-digit number the companion shows
 * once its code was inspected. A wrong number declines. A real-time relay can forward the number too;
 * what this buys is a deliberate act in place of a one-tap mistake.
 */
import { WrongNumber, numberMatches } from "../../link/matching";
import { relayText } from "../../link/wording";
import type { DecodedLinkCode } from "../../link/qr";

export interface RelayView {
  root: HTMLElement;
  text: HTMLElement;
  prompt: HTMLElement;
  number: HTMLInputElement;
  decline: HTMLButtonElement;
  proceed: HTMLButtonElement;
}

export type RelayOutcome = "matched" | "declined";

/** Shows the warning for `address` and resolves once the person typed the right number ("matched") or
 * chose Decline ("declined"); a wrong number rejects with WrongNumber. */
export function askNumber(view: RelayView, address: string, code: DecodedLinkCode): Promise<RelayOutcome> {
  view.text.textContent = relayText("warning", address);
  view.prompt.textContent = relayText("number_prompt");
  view.number.value = "";
  view.root.hidden = false;
  view.number.focus();
  return new Promise<RelayOutcome>((resolve, reject) => {
    const finish = (): void => {
      view.root.hidden = true;
      view.decline.onclick = view.proceed.onclick = null;
    };
    view.decline.onclick = () => {
      finish();
      resolve("declined");
    };
    view.proceed.onclick = () => {
      void numberMatches(view.number.value, code.ref, code.linkSecret).then((matched) => {
        finish();
        if (matched) resolve("matched");
        else reject(new WrongNumber());
      });
    };
  });
}
