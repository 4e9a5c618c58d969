/**
 * Keyboard shortcuts on a computer, WhatsApp Web's where it has one. The chord is Ctrl+Alt (⌘+Alt on a
 * Mac), which no browser keeps for itself:
 *
 *   Ctrl+Alt+N            new chat
 *   Ctrl+Alt+/            search (the chat list's search box, where there is one)
 *   Ctrl+Alt+↓ / ↑ (or Ctrl+Alt+Tab / Shift+Tab)   next / previous chat
 *   Ctrl+Alt+U            mark read (the chat the keyboard is on in the list, else the open one)
 *   Esc                   close the attachment draft, then the open chat
 *   ?  (outside a text field)   this list, as a dialog
 *
 * Each is also on the `aria-keyshortcuts` of the control it stands for, so screen readers announce it.
 * `actionFor` is pure (a key press → an action); controls.ts carries the actions out.
 */

export type ShortcutAction =
  "new-chat" | "search" | "next-chat" | "previous-chat" | "mark-read" | "close-chat" | "help";

export interface ShortcutTarget {
  run(action: ShortcutAction): void;
}

/** What each shortcut is called, for the help dialog and aria-keyshortcuts. */
export const SHORTCUTS: readonly { action: ShortcutAction; keys: string; aria: string; label: string }[] = [
  { action: "new-chat", keys: "Ctrl+Alt+N", aria: "Control+Alt+N", label: "New chat" },
  { action: "search", keys: "Ctrl+Alt+/", aria: "Control+Alt+/", label: "Search chats" },
  { action: "next-chat", keys: "Ctrl+Alt+↓", aria: "Control+Alt+ArrowDown", label: "Next chat" },
  { action: "previous-chat", keys: "Ctrl+Alt+↑", aria: "Control+Alt+ArrowUp", label: "Previous chat" },
  { action: "mark-read", keys: "Ctrl+Alt+U", aria: "Control+Alt+U", label: "Mark chat as read" },
  { action: "close-chat", keys: "Esc", aria: "Escape", label: "Close chat" },
  { action: "help", keys: "?", aria: "Shift+?", label: "Keyboard shortcuts" },
];

export function ariaKeys(action: ShortcutAction): string {
  return SHORTCUTS.find((s) => s.action === action)?.aria ?? "";
}

/** The action a key press asks for, or null. `typing`: the focus is in a text field. */
export function actionFor(
  event: Pick<KeyboardEvent, "key" | "code" | "ctrlKey" | "altKey" | "metaKey" | "shiftKey">,
  typing: boolean,
): ShortcutAction | null {
  const chord = (event.ctrlKey || event.metaKey) && event.altKey;
  if (chord) {
    // event.code: Alt changes event.key on some layouts (Alt+N is "ñ" on a Mac).
    switch (event.code) {
      case "KeyN":
        return "new-chat";
      case "Slash":
        return "search";
      case "ArrowDown":
        return "next-chat";
      case "ArrowUp":
        return "previous-chat";
      case "Tab":
        return event.shiftKey ? "previous-chat" : "next-chat";
      case "KeyU":
        return "mark-read";
      default:
        return null;
    }
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return null;
  if (event.key === "Escape") return "close-chat";
  if (event.key === "?" && !typing) return "help";
  return null;
}

function isTyping(target: EventTarget | null): boolean {
  return target instanceof HTMLElement && (target.isContentEditable || target.matches("input, textarea, select"));
}

/** Listens on the document while `active()` (the messenger is shown); returns the remover. */
export function installShortcuts(target: ShortcutTarget, active: () => boolean): () => void {
  const listener = (event: KeyboardEvent): void => {
    if (!active() || event.isComposing || event.defaultPrevented) return; // handled by what it was meant for
    const action = actionFor(event, isTyping(event.target));
    if (!action) return;
    // Esc closes the innermost open thing first: a dialog, or a message's menu (whichever listener runs first).
    if (action === "close-chat" && document.querySelector('dialog[open], [role="menu"]:not([hidden])')) return;
    event.preventDefault();
    target.run(action);
  };
  document.addEventListener("keydown", listener);
  return () => document.removeEventListener("keydown", listener);
}
