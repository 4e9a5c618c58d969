/**
 * The app lock's PIN dialogs (a modal <dialog>): one to enter the PIN, one to choose a new one. They only
 * draw and collect; what a PIN means (hash, back-off) is ../../lock/pin.ts and ./appLock.ts.
 */
import { pinProblem } from "../../lock/pin";
import { el } from "../../ui/dom";

function pinInput(testid: string, label: string): HTMLInputElement {
  return el("input", {
    testid,
    attrs: { type: "password", inputmode: "numeric", autocomplete: "off", "aria-label": label, maxlength: "32" },
  });
}

/** A modal dialog with `fields`, an error line and Cancel/OK; resolves through `submit` or on Cancel. */
function modal(title: string, fields: HTMLElement[], ok: string) {
  const error = el("p", { className: "banner error", testid: "app-lock-error", attrs: { role: "alert" } });
  error.hidden = true;
  const cancel = el("button", { text: "Cancel", testid: "app-lock-cancel", attrs: { type: "button" } });
  const submit = el("button", { className: "primary", text: ok, testid: "app-lock-submit", attrs: { type: "submit" } });
  const form = el(
    "form",
    { attrs: { method: "dialog" } },
    el("h2", { text: title }),
    ...fields,
    error,
    el("div", { className: "row" }, cancel, submit),
  );
  const dialog = el("dialog", { className: "app-lock", testid: "app-lock-dialog" }, form);
  document.body.append(dialog);
  dialog.showModal();
  return {
    form,
    submit,
    cancel,
    showError(text: string): void {
      error.textContent = text;
      error.hidden = false;
    },
    close(): void {
      dialog.close();
      dialog.remove();
    },
    dialog,
  };
}

/**
 * Asks for the PIN until `check` accepts it (resolves true) or the person cancels (false). `check` returns
 * null for the right PIN, else what to say (wrong, or how long to wait).
 */
export function enterPin(title: string, check: (pin: string) => Promise<string | null>): Promise<boolean> {
  const input = pinInput("app-lock-pin", "PIN");
  const view = modal(title, [input], "Unlock");
  input.focus();
  return new Promise((resolve) => {
    const finish = (ok: boolean): void => {
      view.close();
      resolve(ok);
    };
    view.cancel.addEventListener("click", () => finish(false));
    view.dialog.addEventListener("cancel", () => finish(false)); // Escape
    view.form.addEventListener("submit", (event) => {
      event.preventDefault();
      view.submit.disabled = true; // the hash takes a moment: one check at a time
      void check(input.value).then((problem) => {
        view.submit.disabled = false;
        if (problem === null) {
          finish(true);
          return;
        }
        view.showError(problem);
        input.value = "";
        input.focus();
      });
    });
  });
}

/**
 * Asks for a new PIN twice and hands it to `keep` (which hashes and stores it: a moment), closing only
 * once it is kept; resolves true then, false if the person cancels.
 */
export function choosePin(title: string, keep: (pin: string) => Promise<void>): Promise<boolean> {
  const first = pinInput("app-lock-new-pin", "New PIN");
  const again = pinInput("app-lock-repeat-pin", "The same PIN again");
  const hint = el("p", { className: "muted small", text: "At least 6 digits. Lockstep keeps only a slow hash of it." });
  const view = modal(title, [hint, first, again], "Save PIN");
  first.focus();
  return new Promise((resolve) => {
    const finish = (kept: boolean): void => {
      view.close();
      resolve(kept);
    };
    view.cancel.addEventListener("click", () => finish(false));
    view.dialog.addEventListener("cancel", () => finish(false));
    view.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const problem = pinProblem(first.value) ?? (first.value === again.value ? null : "The two PINs differ.");
      if (problem !== null) {
        view.showError(problem);
        return;
      }
      view.submit.disabled = view.cancel.disabled = true;
      keep(first.value).then(
        () => finish(true),
        (error: unknown) => {
          view.submit.disabled = view.cancel.disabled = false;
          view.showError(`The PIN was not saved: ${error instanceof Error ? error.message : String(error)}`);
        },
      );
    });
  });
}
