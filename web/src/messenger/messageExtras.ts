/**
 * What the conversation view shows and offers for replies, reactions, edits and deletes (messaging.md §15):
 * each message row gets its quote, its current text ("edited", or "This message was deleted"), its
 * reactions and a "Message actions" menu (Reply, six quick reactions, Edit and Delete for everyone where
 * they may be sent); the composer gets a bar saying what it replies to or edits. Every control has an
 * accessible name. `decorate` is idempotent: the view calls it whenever it draws or updates a row.
 */
import "./messageExtras.css";
import { el } from "../ui/dom";
import { DELETED_TEXT } from "./messageChanges";
import type { Messenger } from "./messenger";
import type { ChatMessage } from "./model";

export const QUICK_REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
const UNAVAILABLE = "Original message not available";
const QUOTE_LENGTH = 120;

export type ComposerContext = { mode: "reply" | "edit"; message: ChatMessage } | null;

export class MessageExtras {
  /** The bar above the composer ("Replying to …", "Editing message"), hidden when there is nothing. */
  readonly bar: HTMLElement;
  private barText: HTMLElement;
  private barCancel: HTMLButtonElement;
  private context: ComposerContext = null;
  private openMenu: HTMLElement | null = null;

  constructor(
    private readonly messenger: () => Messenger | null,
    private readonly composer: HTMLTextAreaElement,
    private readonly act: (work: (m: Messenger) => Promise<void>) => Promise<void>,
  ) {
    this.barText = el("span", { className: "context-text", testid: "composer-context-text" });
    this.barCancel = el("button", {
      className: "small-button",
      text: "✕",
      testid: "composer-context-cancel",
      attrs: { type: "button", "aria-label": "Cancel" },
    });
    this.bar = el("div", { className: "composer-context", testid: "composer-context" }, this.barText, this.barCancel);
    this.bar.hidden = true;
    this.barCancel.addEventListener("click", () => {
      if (this.context?.mode === "edit") this.composer.value = "";
      this.setContext(null);
    });
    document.addEventListener("click", (event) => {
      if (this.openMenu && !this.openMenu.parentElement?.contains(event.target as Node)) this.closeMenu();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || !this.openMenu) return;
      event.preventDefault(); // this Esc closed the menu: the "close chat" shortcut leaves it alone
      this.closeMenu();
    });
  }

  /** What the composer's next send is: a reply to, or the new text of, a message (and forgets it). */
  take(): ComposerContext {
    const context = this.context;
    this.setContext(null);
    return context;
  }

  /** The composer holds an edit of a sent message (not something new: no "typing…" for it). */
  get editing(): boolean {
    return this.context?.mode === "edit";
  }

  /** A conversation was opened or closed: what the composer was doing there no longer applies. */
  reset(): void {
    this.setContext(null);
  }

  private setContext(context: ComposerContext): void {
    this.context = context;
    this.bar.hidden = context === null;
    if (!context) return;
    const m = this.messenger();
    const who = m && !context.message.outgoing ? m.nameOf(context.message.senderAccount) : "yourself";
    this.barText.textContent =
      context.mode === "reply" ? `Replying to ${who}: ${summary(context.message)}` : "Editing message";
    this.barCancel.setAttribute("aria-label", context.mode === "reply" ? "Cancel reply" : "Cancel edit");
    if (context.mode === "edit") this.composer.value = context.message.text ?? "";
    this.composer.focus();
  }

  /** Brings a row up to date with its message: quote, text, edited, deleted, reactions and the menu. */
  decorate(row: HTMLLIElement, message: ChatMessage): void {
    if (message.kind !== "text" && message.kind !== "media") return;
    const m = this.messenger();
    row.classList.toggle("deleted", message.deleted === true);
    this.quote(row, message, m);
    const text = row.querySelector<HTMLElement>('[data-testid="message-text"]');
    if (message.deleted) {
      row.querySelector(".media")?.remove();
      const shown = text ?? el("div", { className: "text", testid: "message-text" });
      shown.textContent = DELETED_TEXT;
      shown.classList.add("muted");
      if (!text) row.querySelector(".meta")?.before(shown);
    } else if (text && message.text !== undefined) {
      text.textContent = message.text;
    }
    const meta = row.querySelector<HTMLElement>(".meta");
    let edited = row.querySelector<HTMLElement>('[data-testid="message-edited"]');
    if (message.edited && !message.deleted && !edited && meta) {
      edited = el("span", { className: "edited", testid: "message-edited", text: "edited" });
      meta.prepend(edited);
    }
    this.reactions(row, message, m);
    if (!row.querySelector('[data-testid="message-actions"]') && !message.deleted) this.menuButton(row, message);
    if (message.deleted) row.querySelector(".msg-actions")?.remove();
  }

  private quote(row: HTMLLIElement, message: ChatMessage, m: Messenger | null): void {
    const existing = row.querySelector<HTMLElement>('[data-testid="message-quote"]');
    if (!message.replyTo || message.deleted) {
      existing?.remove();
      return;
    }
    const quoted = m?.message(message.replyTo);
    const sameChat = quoted !== undefined && quoted.conversation === message.conversation;
    const who = sameChat && m ? (quoted.outgoing ? "You" : m.nameOf(quoted.senderAccount)) : "";
    const words = sameChat ? (quoted.deleted ? DELETED_TEXT : summary(quoted)) : UNAVAILABLE;
    const text = who ? `${who}: ${words}` : words;
    const quote =
      existing ??
      el("blockquote", { className: "quote", testid: "message-quote", attrs: { "data-reply-to": message.replyTo } });
    quote.textContent = text;
    quote.setAttribute("aria-label", `Reply to ${who || "a message"}: ${words}`);
    if (!existing) {
      const sender = row.querySelector(".sender");
      if (sender) sender.after(quote);
      else row.prepend(quote);
    }
  }

  private reactions(row: HTMLLIElement, message: ChatMessage, m: Messenger | null): void {
    const reactions = Object.entries(message.reactions ?? {});
    let list = row.querySelector<HTMLUListElement>('[data-testid="message-reactions"]');
    if (!reactions.length) {
      list?.remove();
      return;
    }
    if (!list) {
      list = el("ul", { className: "reactions", testid: "message-reactions", attrs: { "aria-label": "Reactions" } });
      row.append(list);
    }
    list.replaceChildren(
      ...reactions.map(([account, emoji]) => {
        const who = m && account === m.identity.accountId ? "You" : (m?.nameOf(account) ?? "Someone");
        return el("li", {
          testid: "reaction",
          text: emoji,
          attrs: { "data-account-id": account, "aria-label": `${who} reacted ${emoji}`, title: who },
        });
      }),
    );
  }

  private menuButton(row: HTMLLIElement, message: ChatMessage): void {
    const button = el("button", {
      className: "msg-actions small-button",
      text: "⋯",
      testid: "message-actions",
      attrs: { type: "button", "aria-label": "Message actions", "aria-haspopup": "menu", "aria-expanded": "false" },
    });
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      const open = this.openMenu?.parentElement === row;
      this.closeMenu();
      if (!open) this.showMenu(row, button, message.id);
    });
    row.append(button);
  }

  private showMenu(row: HTMLLIElement, button: HTMLButtonElement, messageId: string): void {
    const m = this.messenger();
    const message = m?.message(messageId);
    if (!m || !message) return;
    const item = (text: string, testid: string, label: string, run: () => void): HTMLButtonElement => {
      const choice = el("button", { text, testid, attrs: { type: "button", role: "menuitem", "aria-label": label } });
      choice.addEventListener("click", (event) => {
        event.stopPropagation();
        this.closeMenu();
        run();
      });
      return choice;
    };
    const mine = message.reactions?.[m.identity.accountId];
    const quick = QUICK_REACTIONS.map((emoji) =>
      item(emoji, "react", `React with ${emoji}`, () => void this.act((mm) => mm.react(messageId, emoji))),
    );
    const items = [
      item("Reply", "action-reply", "Reply", () => this.setContext({ mode: "reply", message })),
      el("div", { className: "quick-reactions", attrs: { role: "group", "aria-label": "React" } }, ...quick),
    ];
    if (mine)
      items.push(
        item("Remove reaction", "action-unreact", `Remove your reaction ${mine}`, () => {
          void this.act((mm) => mm.react(messageId, ""));
        }),
      );
    if (message.kind === "text" && m.can("edit", message))
      items.push(item("Edit", "action-edit", "Edit", () => this.setContext({ mode: "edit", message })));
    if (m.can("delete", message))
      items.push(
        item("Delete for everyone", "action-delete", "Delete for everyone", () => {
          void this.act((mm) => mm.deleteForEveryone(messageId));
        }),
      );
    const menu = el("div", {
      className: "msg-menu",
      testid: "message-menu",
      attrs: { role: "menu", "aria-label": "Message actions" },
    });
    menu.append(...items);
    row.append(menu);
    button.setAttribute("aria-expanded", "true");
    this.openMenu = menu;
    menu.scrollIntoView({ block: "nearest" });
    menu.querySelector<HTMLButtonElement>("button")?.focus({ preventScroll: true });
  }

  private closeMenu(): void {
    this.openMenu?.parentElement
      ?.querySelector('[data-testid="message-actions"]')
      ?.setAttribute("aria-expanded", "false");
    this.openMenu?.remove();
    this.openMenu = null;
  }
}

/** A message in one short line (a quote, a search hit). */
export function summary(message: ChatMessage): string {
  if (message.deleted) return DELETED_TEXT;
  const file = message.voice ? "Voice note" : message.media ? `[${message.media.name}]` : "";
  const words = [file, message.text ?? ""].filter(Boolean).join(" ");
  return words.length > QUOTE_LENGTH ? `${words.slice(0, QUOTE_LENGTH - 1)}…` : words;
}
