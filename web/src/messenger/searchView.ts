/**
 * Search across chats (messaging.md §15.7): a search box over the chat list that looks through what this
 * device holds, decrypted here (the server has only ciphertext and cannot search). Results replace the
 * chat list while there is a query; choosing one opens its chat at that message, highlighted.
 */
import { el } from "../ui/dom";
import { summary } from "./messageExtras";
import type { Messenger } from "./messenger";

export class SearchView {
  readonly root: HTMLElement;
  private input: HTMLInputElement;
  private results: HTMLUListElement;

  constructor(
    private readonly messenger: () => Messenger | null,
    private readonly chatList: HTMLElement,
    /** Opens a chat at one of its messages. */
    private readonly open: (conversation: string, messageId: string) => void,
  ) {
    this.input = el("input", {
      testid: "search",
      attrs: { type: "search", placeholder: "Search messages", "aria-label": "Search messages", autocomplete: "off" },
    });
    this.results = el("ul", {
      className: "search-results",
      testid: "search-results",
      attrs: { "aria-label": "Search results", "aria-live": "polite" },
    });
    this.results.hidden = true;
    this.root = el("div", { className: "search", attrs: { role: "search" } }, this.input, this.results);
    this.input.addEventListener("input", () => this.refresh());
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        this.input.value = "";
        this.refresh();
      }
    });
  }

  /** Search again (the query changed, or messages did). */
  refresh(): void {
    const m = this.messenger();
    const query = this.input.value.trim();
    this.results.hidden = this.chatList.hidden = false;
    if (!m || !query) {
      this.results.hidden = true;
      this.results.replaceChildren();
      return;
    }
    this.chatList.hidden = true;
    const titles = new Map(m.conversations().map((c) => [c.id, c.title]));
    const hits = m.search(query);
    this.results.replaceChildren(
      ...hits.map((message) => {
        const who = message.outgoing ? "You" : m.nameOf(message.senderAccount);
        const row = el(
          "li",
          {
            testid: "search-result",
            attrs: { "data-message-id": message.id, "data-conversation-id": message.conversation, tabindex: "0" },
          },
          el("div", { className: "chat-title", text: titles.get(message.conversation) ?? "Chat" }),
          el("div", { className: "muted small", testid: "search-result-text", text: `${who}: ${summary(message)}` }),
        );
        row.setAttribute("role", "button");
        const choose = (): void => {
          this.input.value = "";
          this.refresh();
          this.open(message.conversation, message.id);
        };
        row.addEventListener("click", choose);
        row.addEventListener("keydown", (event) => {
          if (event.key === "Enter") choose();
        });
        return row;
      }),
    );
    if (!hits.length)
      this.results.append(
        el("li", { className: "muted small", testid: "search-empty", text: `No messages contain “${query}”.` }),
      );
  }
}
