/** The number the companion page shows once a phone inspected its code (linking.md §6.5): a phone on
 * another network asks the person to type it. */
import { matchingNumber } from "../../link/matching";
import { numberNotice } from "../../link/wording";
import { el } from "../../ui/dom";

/** Shows the number for the scanned code unless `stillScanned()` turned false meanwhile. */
export async function showMatchNumber(
  element: HTMLElement,
  ref: Uint8Array,
  linkSecret: Uint8Array,
  stillScanned: () => boolean,
): Promise<void> {
  const number = await matchingNumber(ref, linkSecret);
  if (!stillScanned()) return;
  element.replaceChildren(
    el("span", { className: "number", text: number, testid: "match-number-digits" }),
    el("span", { className: "muted small", text: numberNotice(number) }),
  );
  element.hidden = false;
}
