/** The number the companion page shows once a phone inspected its code (linking.md §6.5): a phone on
 * another network asks the person to type it. CompanionLinker computes it (its `scanned` phase). */
import { numberNotice } from "../../link/wording";
import { el } from "../../ui/dom";

export function showMatchNumber(element: HTMLElement, number: string): void {
  element.replaceChildren(
    el("span", { className: "number", text: number, testid: "match-number-digits" }),
    el("span", { className: "muted small", text: numberNotice(number) }),
  );
  element.hidden = false;
}
