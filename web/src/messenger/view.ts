/**
 * The messenger UI shared by the primary app and linked companions: chat list (unread counts, last
 * message), conversation view with ticks, inline images and file downloads, a composer with an attach
 * button and upload progress, "new chat" by handle, groups (create, add, remove), a linked-device
 * indicator and a banner while the connection is down. Text only (never innerHTML); test ids are stable.
 *
 * Drawing costs what changed, not what is kept (issue 15): changes are drawn at most once per animation
 * frame, a chat-list row is rebuilt only when what it shows changed, and the open conversation is a
 * window of rows over its messages (./timeline.ts).
 */
import "./messenger.css";
import { el, hide, show, unkeptForm } from "../ui/dom";
import { formatClock, formatFull, formatLastSeen } from "../ui/timeFormat";
import type { ChatMessage, Conversation } from "./model";
import { describe } from "./errors";
import { formatBytes } from "./media";
import type { VoiceNote } from "./actions";
import { GroupPanel } from "./groupPanel";
import { MessageExtras } from "./messageExtras";
import { SearchView } from "./searchView";
import { VoiceRecorder, voicePlayer } from "./voiceNotes";
import type { Messenger } from "./messenger";
import { Timeline } from "./timeline";
import { yieldToPage } from "./yieldToPage";

/** The width below which the messenger shows one screen at a time (messenger.css's breakpoint). */
const PHONE_SCREEN = window.matchMedia("(max-width: 700px)");
/** How long a message found by search stays highlighted (messenger.css's animation). */
const HIGHLIGHT_MS = 2_500;
/** While the page is hidden there are no animation frames: changes are drawn this often instead. */
const HIDDEN_RENDER_MS = 200;

const TICKS: Record<string, string> = { sending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" };
const TICK_LABEL: Record<string, string> = {
  sending: "Sending",
  sent: "Sent",
  delivered: "Delivered",
  read: "Read",
  failed: "Not sent",
};

export class MessengerView {
  readonly root: HTMLElement;
  private banner: HTMLElement;
  private elsewhere: HTMLElement;
  private devices: HTMLElement;
  private error: HTMLElement;
  private history: HTMLElement;
  private historyMore: HTMLButtonElement;
  private chatList: HTMLUListElement;
  private conversationPane: HTMLElement;
  private title: HTMLElement;
  private subtitle: HTMLElement;
  /** Buttons the page adds to a direct chat's header (calls); `data-peer` names the chat's peer account. */
  readonly headActions: HTMLElement;
  private readonly groupPanel: GroupPanel;
  private list: HTMLOListElement;
  private composer: HTMLTextAreaElement;
  private attach: HTMLInputElement;
  private progress: HTMLProgressElement;
  private empty: HTMLElement;
  private extras: MessageExtras;
  private voice: VoiceRecorder;
  private search: SearchView;
  private current: string | null = null;
  /** The conversation the timeline shows (null: none yet, or another was opened since). */
  private shown: string | null = null;
  private timeline: Timeline;
  private chatRows = new Map<string, { row: HTMLLIElement; shows: string }>();
  /** Messages changed since the last render, and whether one is scheduled. */
  private changes = new Set<string>();
  private renderScheduled = false;
  private markReadScheduled = false;
  private unsubscribe: () => void = () => undefined;
  private messenger: Messenger | null = null;
  private downloading = new Set<string>();
  /** Room in every open chat's header for controls.ts's buttons (mute). */
  readonly chatControls = el("div", { className: "conv-actions" });
  private readonly openListeners: ((conversation: string | null) => void)[] = [];

  constructor(mount: HTMLElement) {
    this.banner = el("p", {
      className: "banner warn",
      testid: "connection-banner",
      text: "Not connected — reconnecting… Messages you write are sent once the connection is back.",
      attrs: { role: "status" },
    });
    this.banner.hidden = true;
    this.elsewhere = el("p", {
      className: "banner warn",
      testid: "messenger-elsewhere",
      text:
        "Lockstep is open in another tab of this browser. " +
        "Chats continue there; this tab takes over when that one is closed.",
      attrs: { role: "status" },
    });
    this.elsewhere.hidden = true;
    this.devices = el("span", { className: "muted small", testid: "linked-devices" });
    const newChat = el("button", { text: "New chat", testid: "new-chat", attrs: { type: "button" } });
    const newGroup = el("button", { text: "New group", testid: "new-group", attrs: { type: "button" } });

    const handle = el("input", {
      testid: "new-chat-handle",
      attrs: {
        type: "text",
        placeholder: "@handle",
        "aria-label": "Handle",
        autocapitalize: "none",
        spellcheck: "false",
      },
    });
    const start = el("button", {
      className: "primary",
      text: "Chat",
      testid: "new-chat-start",
      attrs: { type: "submit" },
    });
    const chatForm = unkeptForm({ className: "inline-form", testid: "new-chat-form" }, handle, start);
    chatForm.hidden = true;

    const groupName = el("input", {
      testid: "group-name",
      attrs: { type: "text", placeholder: "Group name", "aria-label": "Group name", maxlength: "100" },
    });
    const groupMembers = el("input", {
      testid: "group-members",
      attrs: { type: "text", placeholder: "@bob, @carol", "aria-label": "Members (handles)", autocapitalize: "none" },
    });
    const groupCreate = el("button", {
      className: "primary",
      text: "Create group",
      testid: "group-create",
      attrs: { type: "submit" },
    });
    const groupForm = unkeptForm(
      { className: "inline-form", testid: "new-group-form" },
      groupName,
      groupMembers,
      groupCreate,
    );
    groupForm.hidden = true;

    this.history = el("p", { className: "muted small history-note", testid: "history-note" });
    this.history.hidden = true;
    this.historyMore = el("button", {
      className: "small-button",
      text: "Load older messages from your phone",
      testid: "history-more",
      attrs: { type: "button" },
    });
    this.historyMore.hidden = true;
    this.historyMore.addEventListener("click", () => {
      this.historyMore.disabled = true;
      void this.act((m) => m.requestOlderHistory()).finally(() => (this.historyMore.disabled = false));
    });
    this.error = el("p", { className: "banner error", testid: "messenger-error", attrs: { role: "alert" } });
    this.error.hidden = true;
    this.chatList = el("ul", { className: "chat-list", testid: "chat-list", attrs: { "aria-label": "Chats" } });
    this.search = new SearchView(
      () => this.messenger,
      this.chatList,
      (conversation, messageId) => this.open(conversation, messageId),
    );
    const aside = el(
      "aside",
      { className: "chats" },
      el(
        "div",
        { className: "chats-head" },
        el("h2", { text: "Chats" }),
        el("div", { className: "row" }, newChat, newGroup),
      ),
      this.devices,
      chatForm,
      groupForm,
      this.history,
      this.historyMore,
      this.error,
      this.search.root,
      this.chatList,
    );

    const back = el("button", {
      className: "back",
      text: "←",
      testid: "back",
      attrs: { type: "button", "aria-label": "Back to chats" },
    });
    this.title = el("h2", { testid: "conversation-title" });
    this.headActions = el("div", { className: "conv-actions", testid: "conversation-actions" });
    this.subtitle = el("p", { className: "muted small", testid: "conversation-subtitle" });
    this.groupPanel = new GroupPanel(
      () => this.messenger,
      (work) => this.act(work),
    );
    this.list = el("ol", { className: "messages", testid: "messages", attrs: { "aria-live": "polite" } });
    this.timeline = new Timeline(this.list, {
      create: (message) => this.messageRow(message),
      update: (row, message) => this.updateRow(row, message),
    });
    this.composer = el("textarea", {
      testid: "composer",
      attrs: { rows: "1", placeholder: "Type a message", "aria-label": "Message" },
    });
    this.attach = el("input", { testid: "attach", attrs: { type: "file", "aria-label": "Attach a file" } });
    const attachLabel = el("label", { className: "attach", attrs: { title: "Attach a file" } }, "+", this.attach);
    const send = el("button", {
      className: "primary",
      text: "Send",
      testid: "composer-send",
      attrs: { type: "submit" },
    });
    this.progress = el("progress", {
      testid: "upload-progress",
      attrs: { max: "1", value: "0", "aria-label": "Upload progress" },
    });
    this.progress.hidden = true;
    this.voice = new VoiceRecorder(
      (file, voice) => this.sendVoiceNote(file, voice),
      (text) => this.showError(text),
    );
    const composerForm = unkeptForm({ className: "composer" }, attachLabel, this.composer, this.voice.root, send);
    this.extras = new MessageExtras(
      () => this.messenger,
      this.composer,
      (work) => this.act(work),
    );
    this.empty = el("p", { className: "muted empty", text: "Select a chat, or start a new one." });
    this.conversationPane = el(
      "section",
      { className: "conversation", testid: "conversation" },
      el(
        "header",
        { className: "conv-head" },
        back,
        el("div", {}, this.title, this.subtitle),
        this.headActions,
        this.chatControls,
      ),
      this.groupPanel.root,
      this.list,
      this.progress,
      this.extras.bar,
      composerForm,
    );
    this.conversationPane.hidden = true;
    this.root = el(
      "section",
      { className: "messenger", testid: "messenger" },
      this.banner,
      this.elsewhere,
      el("div", { className: "msgr" }, aside, el("div", { className: "pane" }, this.empty, this.conversationPane)),
    );
    mount.append(this.root);

    newChat.addEventListener("click", () => {
      groupForm.hidden = true;
      chatForm.hidden = !chatForm.hidden;
      if (!chatForm.hidden) handle.focus();
    });
    newGroup.addEventListener("click", () => {
      chatForm.hidden = true;
      groupForm.hidden = !groupForm.hidden;
      if (!groupForm.hidden) groupName.focus();
    });
    chatForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = handle.value.trim();
      if (!value || !this.messenger) return;
      void this.act(async (m) => {
        const conversation = await m.startDirect(value);
        handle.value = "";
        chatForm.hidden = true;
        this.open(conversation);
      });
    });
    groupForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = groupName.value.trim();
      const handles = groupMembers.value
        .split(/[\s,]+/)
        .map((h) => h.replace(/^@/, ""))
        .filter(Boolean);
      if (!name || !handles.length || !this.messenger) {
        this.showError("Give the group a name and at least one member's handle.");
        return;
      }
      void this.act(async (m) => {
        const conversation = await m.createGroup(name, handles);
        groupName.value = groupMembers.value = "";
        groupForm.hidden = true;
        this.open(conversation);
      });
    });
    back.addEventListener("click", () => this.open(null));
    composerForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendComposer();
    });
    // What the person writes tells the chat "typing…" (throttled and ended by liveSignals.ts).
    this.composer.addEventListener("input", () => {
      if (this.current && !this.extras.editing) this.messenger?.typing(this.current, this.composer.value);
    });
    this.composer.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        this.sendComposer();
      }
    });
    document.addEventListener("visibilitychange", () => this.markReadIfVisible());
  }

  /** Binds a messenger (after the device signed in); `null` detaches (logged out). */
  bind(messenger: Messenger | null): void {
    this.unsubscribe();
    this.messenger = messenger;
    this.current = this.shown = null;
    this.timeline.show([]);
    this.chatRows.clear();
    this.chatList.replaceChildren();
    if (messenger) this.unsubscribe = messenger.subscribe((changed) => this.scheduleRender(changed));
    this.render();
  }

  /** Another tab runs this device's messenger: show why this one is idle. */
  setElsewhere(elsewhere: boolean): void {
    show(this.elsewhere, elsewhere);
    this.root.querySelector<HTMLElement>(".msgr")!.hidden = elsewhere;
  }

  setDevices(text: string): void {
    this.devices.textContent = text;
  }

  /** A problem outside any action (shown in the chat list's error line). */
  showProblem(text: string): void {
    this.showError(text);
  }

  private showError(text: string): void {
    this.error.textContent = text;
    show(this.error, text !== "");
  }

  private async act(work: (m: Messenger) => Promise<void>): Promise<void> {
    if (!this.messenger) return;
    this.showError("");
    try {
      await work(this.messenger);
    } catch (error) {
      this.showError(describe(error));
    }
  }

  private sendComposer(): void {
    const text = this.composer.value;
    if (!text.trim() || !this.current || !this.messenger) return;
    this.composer.value = "";
    const conversation = this.current;
    const context = this.extras.take(); // a reply, or an edit of one's own message (§15)
    void this.act(async (m) => {
      if (context?.mode === "edit") await m.edit(context.message.id, text);
      else await m.sendText(conversation, text, context?.message.id);
    });
  }

  /** A recorded voice note (§16), uploaded with the same progress bar as a file. */
  private async sendVoiceNote(file: File, voice: VoiceNote): Promise<void> {
    if (!this.current) return;
    const conversation = this.current;
    this.progress.value = 0;
    show(this.progress);
    await this.act(async (m) => {
      try {
        await m.sendFile(conversation, file, "", (done, total) => (this.progress.value = total ? done / total : 0), {
          voice,
        });
      } finally {
        hide(this.progress);
      }
    });
  }

  /** The open chat, or null. */
  get openChat(): string | null {
    return this.current;
  }

  onOpen(listener: (conversation: string | null) => void): void {
    this.openListeners.push(listener);
  }

  /** Uploads and sends a file with its caption (attachDraft.ts offers it first), showing progress. */
  async sendFile(conversation: string, file: File, caption: string): Promise<void> {
    if (!this.messenger) return;
    this.progress.value = 0;
    show(this.progress);
    await this.act(async (m) => {
      try {
        await m.sendFile(conversation, file, caption, (done, total) => {
          this.progress.value = total ? done / total : 0;
        });
      } finally {
        hide(this.progress);
      }
    });
  }

  /** Opens a chat (null: none) at its newest message, or at `messageId`, highlighted (a search result). */
  open(conversation: string | null, messageId?: string): void {
    if (conversation !== this.current) this.extras.reset();
    this.current = conversation;
    this.shown = null; // a chat opens at its newest message
    this.root.classList.toggle("open-conv", conversation !== null);
    this.render();
    if (messageId) this.highlight(messageId);
    for (const listener of this.openListeners) listener(conversation);
    // On a phone the conversation covers the screen (messenger.css) and focusing the composer would pop
    // the keyboard up over the messages: there the person taps the composer when they want to write.
    // On a computer the whole conversation comes into the window (the page may have scrolled elsewhere).
    if (conversation && !PHONE_SCREEN.matches) {
      this.root.querySelector(".msgr")?.scrollIntoView({ block: "nearest" });
      this.composer.focus({ preventScroll: true });
    }
  }

  /** Scrolls to a message of the open chat (paged in if needed) and marks it for a moment. */
  private highlight(messageId: string): void {
    const row = this.timeline.reveal(messageId);
    if (!row) return;
    row.classList.add("highlighted");
    setTimeout(() => row.classList.remove("highlighted"), HIGHLIGHT_MS);
  }

  /**
   * Marks the open chat read in a task of its own once this frame is drawn: what that sets off (a change
   * every listener hears, receipts, a save) is not added to the frame, which in a burst already draws rows.
   */
  private markReadAfterFrame(): void {
    if (this.markReadScheduled) return;
    this.markReadScheduled = true;
    void yieldToPage().then(() => {
      this.markReadScheduled = false;
      this.markReadIfVisible();
    });
  }

  private markReadIfVisible(): void {
    if (this.current && this.messenger && document.visibilityState === "visible") this.messenger.markRead(this.current);
  }

  /** Draws the changes at the next animation frame, however many arrive before it. */
  private scheduleRender(changed: ReadonlySet<string>): void {
    for (const id of changed) this.changes.add(id);
    if (this.renderScheduled) return;
    this.renderScheduled = true;
    if (document.visibilityState === "visible") requestAnimationFrame(() => this.render());
    else setTimeout(() => this.render(), HIDDEN_RENDER_MS);
  }

  render(): void {
    this.renderScheduled = false;
    const changed = this.changes;
    this.changes = new Set();
    const m = this.messenger;
    show(this.banner, m !== null && !m.online);
    if (!m) return;
    if (m.lastError) this.showError(m.lastError);
    if (changed.size) this.search.refresh();
    const note = m.historyNote;
    this.history.textContent = note ? `History from your phone: ${note}.` : "";
    show(this.history, Boolean(note));
    // The phone keeps what it did not transfer: a companion can ask for it (messaging.md §12.1).
    show(this.historyMore, m.identity.role === "companion" && (note?.includes("stay only on the phone") ?? false));
    const conversations = m.conversations();
    this.renderChatList(conversations);
    const current = conversations.find((c) => c.id === this.current);
    show(this.empty, !current);
    show(this.conversationPane, current !== undefined);
    if (!current) {
      this.shown = null;
      return;
    }
    this.conversationPane.dataset.conversationId = current.id;
    this.title.textContent = current.title;
    this.headActions.dataset.peer = current.peer ?? "";
    show(this.headActions, current.kind === "direct" && current.peer !== undefined);
    this.renderSubtitle(current, m);
    this.groupPanel.render(current);
    const closed = current.left === true;
    this.composer.disabled = this.attach.disabled = closed;
    this.voice.disabled = closed;
    this.composer.placeholder = closed ? "You can no longer send messages to this group" : "Type a message";
    if (this.shown === current.id) this.timeline.refresh(m.messagesOf(current.id), changed);
    else {
      this.shown = current.id;
      this.timeline.show(m.messagesOf(current.id));
    }
    this.markReadAfterFrame();
  }

  /** The chat list, most recent first: a row is rebuilt only if what it shows changed, and moved only if its place did. */
  private renderChatList(conversations: Conversation[]): void {
    const wanted: HTMLLIElement[] = [];
    for (const c of conversations) {
      const typing = this.typingLine(c);
      const preview = typing ?? this.preview(c);
      const time = c.last ? formatClock(c.last.ts) : "";
      const shows = [c.title, c.kind, preview, typing !== null, time, c.unread, c.id === this.current].join("\n");
      let entry = this.chatRows.get(c.id);
      if (entry?.shows !== shows) {
        const row = this.chatRow(c, preview, time, typing !== null);
        entry?.row.replaceWith(row);
        entry = { row, shows };
        this.chatRows.set(c.id, entry);
      }
      wanted.push(entry.row);
    }
    const keep = new Set(wanted);
    for (const child of [...this.chatList.children]) if (!keep.has(child as HTMLLIElement)) child.remove();
    for (const [id, entry] of this.chatRows) if (!keep.has(entry.row)) this.chatRows.delete(id);
    let previous: HTMLLIElement | null = null;
    for (const row of wanted) {
      const expected: ChildNode | null = previous ? previous.nextSibling : this.chatList.firstChild;
      if (expected !== row) this.chatList.insertBefore(row, expected);
      previous = row;
    }
    if (!conversations.length)
      this.chatList.append(
        el("li", { className: "muted small empty", text: "No chats yet. Start one with “New chat”." }),
      );
  }

  /** Under the chat's title: who is typing, else the peer's "online"/"last seen", else what the chat is. */
  private renderSubtitle(conversation: Conversation, m: Messenger): void {
    const typing = this.typingLine(conversation);
    const presence = conversation.kind === "direct" && conversation.peer ? m.presenceOf(conversation.peer) : null;
    let live: "typing" | "online" | "last-seen" | "" = "";
    let text: string;
    if (typing !== null) [live, text] = ["typing", typing];
    else if (presence?.online) [live, text] = ["online", "online"];
    else if (presence) [live, text] = ["last-seen", formatLastSeen(presence.lastSeen)];
    else if (conversation.kind === "group" && conversation.groupId)
      text = conversation.left
        ? "You are no longer a member of this group."
        : `${m.groupMembers(conversation.groupId).length} members · end-to-end encrypted`;
    else text = "End-to-end encrypted";
    this.subtitle.textContent = text;
    this.subtitle.dataset.live = live;
  }

  /** "typing…" in a direct chat, "Bob is typing…" in a group (§15.5); null when no one is. */
  private typingLine(conversation: Conversation): string | null {
    const m = this.messenger;
    const typers = m?.typers(conversation.id) ?? [];
    if (!m || !typers.length) return null;
    if (conversation.kind === "direct") return "typing…";
    const names = typers.map((account) => m.nameOf(account));
    if (names.length === 1) return `${names[0]} is typing…`;
    if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
    return `${names.length} people are typing…`;
  }

  /** What the chat list says of a chat's newest message. */
  private preview(c: Conversation): string {
    const m = this.messenger;
    const last = c.last;
    let preview = "";
    if (last) {
      const who =
        c.kind === "group" && m
          ? `${last.outgoing ? "You" : m.nameOf(last.senderAccount)}: `
          : last.outgoing
            ? "You: "
            : "";
      preview =
        who +
        (last.kind === "media"
          ? `${last.media?.type === "image" ? "Photo" : `File: ${last.media?.name ?? "file"}`}${last.text ? ` ${last.text}` : ""}`
          : last.kind === "undecryptable"
            ? "⚠ Message could not be decrypted"
            : (last.text ?? ""));
    }
    return preview;
  }

  private chatRow(c: Conversation, preview: string, time: string, typing: boolean): HTMLLIElement {
    const unread = el("span", {
      className: "unread",
      testid: "unread-count",
      text: String(c.unread),
      attrs: { "aria-label": `${c.unread} unread` },
    });
    unread.hidden = c.unread === 0;
    const row = el(
      "li",
      {
        className: `chat-row${c.id === this.current ? " active" : ""}`,
        testid: "chat-row",
        attrs: { "data-conversation-id": c.id, tabindex: "0", role: "button" },
      },
      el("div", { className: "avatar", text: c.kind === "group" ? "#" : c.title.slice(0, 1).toUpperCase() || "?" }),
      el(
        "div",
        { className: "chat-main" },
        el("div", { className: "chat-title", testid: "chat-title", text: c.title }),
        el("div", { className: `chat-last muted small${typing ? " typing" : ""}`, testid: "chat-last", text: preview }),
      ),
      el("div", { className: "chat-side" }, el("div", { className: "muted small", text: time }), unread),
    );
    row.addEventListener("click", () => this.open(c.id));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") this.open(c.id);
    });
    return row;
  }

  private messageRow(message: ChatMessage): HTMLLIElement {
    const row = el("li", {
      className: `message ${message.outgoing ? "out" : "in"}`,
      testid: "message",
      attrs: { "data-message-id": message.id, "data-direction": message.outgoing ? "out" : "in" },
    });
    const m = this.messenger;
    const conversation = m?.conversationInfo(message.conversation);
    if (!message.outgoing && conversation?.groupId && m)
      row.append(el("div", { className: "sender small", text: m.nameOf(message.senderAccount) }));
    if (message.kind === "undecryptable") {
      row.append(
        el("div", {
          className: "muted",
          testid: "message-text",
          text: `⚠ This message could not be decrypted (${message.error ?? "unknown reason"}).`,
        }),
      );
    } else if (message.kind === "media" && message.media) {
      row.append(this.mediaBlock(message));
      if (message.text) row.append(el("div", { className: "text", testid: "message-text", text: message.text }));
    } else {
      row.append(el("div", { className: "text", testid: "message-text", text: message.text ?? "" }));
    }
    const ticks = el("span", { className: "ticks", testid: "ticks" });
    const meta = el(
      "div",
      { className: "meta small" },
      el("span", { text: formatClock(message.ts), attrs: { title: formatFull(message.ts) } }),
    );
    if (message.outgoing) meta.append(ticks);
    row.append(meta);
    this.updateRow(row, message);
    return row;
  }

  private updateRow(row: HTMLLIElement, message: ChatMessage): void {
    this.extras.decorate(row, message);
    if (!message.outgoing) return;
    const status = message.status ?? "sent";
    row.dataset.status = status;
    const ticks = row.querySelector<HTMLElement>('[data-testid="ticks"]');
    if (ticks) {
      ticks.textContent = TICKS[status] ?? "";
      ticks.className = `ticks ${status}`;
      ticks.title = message.error ? `${TICK_LABEL[status]}: ${message.error}` : (TICK_LABEL[status] ?? "");
      ticks.setAttribute("aria-label", TICK_LABEL[status] ?? "");
    }
    if (status !== "failed")
      row.querySelector(".retry")?.remove(); // sent after all (e.g. on reconnect)
    else if (!row.querySelector(".retry")) {
      const retry = el("button", {
        className: "retry small-button",
        text: "Retry",
        testid: "retry",
        attrs: { type: "button" },
      });
      retry.addEventListener("click", () => {
        retry.remove();
        void this.messenger?.retry(message.id);
      });
      row.append(retry);
    }
  }

  private mediaBlock(message: ChatMessage): HTMLElement {
    const media = message.media;
    const box = el("div", { className: "media" });
    if (!media) return box;
    const m = this.messenger;
    if (message.voice) {
      box.append(voicePlayer(message, message.voice, m));
      return box;
    }
    if (media.type === "image") {
      const img = el("img", { testid: "message-image", attrs: { alt: media.name } });
      // Decrypted images arrive after the row is drawn and make it taller: stay at the newest message.
      img.addEventListener("load", () => this.timeline.followNewest());
      const status = el("progress", { attrs: { max: "1", value: "0", "aria-label": "Downloading" } });
      box.append(img, status);
      img.hidden = true;
      const fill = (url: string): void => {
        img.src = url;
        img.hidden = false;
        status.remove();
      };
      const cached = m?.mediaUrls.get(message.id);
      if (cached) fill(cached);
      else if (m && !this.downloading.has(message.id)) {
        this.downloading.add(message.id);
        m.mediaUrl(message, (done, total) => (status.value = total ? done / total : 0))
          .then(fill)
          .catch((error: unknown) =>
            status.replaceWith(el("span", { className: "muted", testid: "media-error", text: `⚠ ${describe(error)}` })),
          )
          .finally(() => this.downloading.delete(message.id));
      }
    } else {
      const button = el("button", {
        className: "file",
        testid: "message-file",
        text: `${media.name} · ${formatBytes(media.file_length)}`,
        attrs: { type: "button" },
      });
      const status = el("progress", { attrs: { max: "1", value: "0" } });
      status.hidden = true;
      button.addEventListener("click", () => {
        if (!m) return;
        show(status);
        m.mediaUrl(message, (done, total) => (status.value = total ? done / total : 0))
          .then((url) => {
            hide(status);
            const link = el("a", { attrs: { href: url, download: media.name } });
            document.body.append(link);
            link.click();
            link.remove();
          })
          .catch((error: unknown) =>
            status.replaceWith(el("span", { className: "muted", testid: "media-error", text: `⚠ ${describe(error)}` })),
          );
      });
      box.append(button, status);
    }
    return box;
  }
}
