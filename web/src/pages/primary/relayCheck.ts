/**
 * Friction when the networks differ (linking.md §6.5): instead of the one-tap Link, a full-screen warning
 * naming the companion's address and what relays look like, and the 2-digit number the companion shows
 * once its code was inspected. A wrong number declines (PrimaryLinkFlow.checkNumber). A real-time relay can
 * forward the number too; what this buys is a deliberate act in place of a one-tap mistake.
 */
import { relayText } from "../../link/wording";

export interface RelayView {
  root: HTMLElement;
  text: HTMLElement;
  prompt: HTMLElement;
  number: HTMLInputElement;
  decline: HTMLButtonElement;
  proceed: HTMLButtonElement;
}

/** Fills the warning for `address` and puts the cursor in the number field. */
export function showRelayWarning(view: RelayView, address: string): void {
  view.text.textContent = relayText("warning", address);
  view.prompt.textContent = relayText("number_prompt");
  view.number.value = "";
  view.number.focus();
}
