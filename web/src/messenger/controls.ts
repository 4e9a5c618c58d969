/**
 * What the messenger view gets on top of chats and messages: notifications and per-chat mute
 * (notifier.ts), attachment drafts with drag-and-drop and paste (attachDraft.ts), keyboard shortcuts
 * (shortcuts.ts) with their help dialog, the unread count in the tab's title (ui/title.ts), and the
 * "Share last seen and online" switch (lastSeenToggle.ts).
 * It works through the view's small public surface (`open`, `current`, `sendFile`, `chatControls`,
 * `onOpen`) and its stable test ids, so the view's rendering can change underneath it.
 */
import "../ui/layout.css";
import { byTestId, el, show } from "../ui/dom";
import { Menu } from "../ui/menu";
import { setTitleUnread } from "../ui/title";
import { AttachmentDraft, acceptDropAndPaste } from "./attachDraft";
import { LastSeenToggle } from "./lastSeenToggle";
import type { Messenger } from "./messenger";
import { Notifier } from "./notifier";
import { SHORTCUTS, type ShortcutAction, ariaKeys, installShortcuts } from "./shortcuts";

/** What MessengerControls needs of the view. */
export interface ControlledView {
  readonly root: HTMLElement;
  /** The open chat, or null. */
  readonly current: string | null;
  /** Room in the conversation's header for buttons about the open chat. */
  readonly chatControls: HTMLElement;
  open(conversation: string | null): void;
  onOpen(listener: (conversation: string | null) => void): void;
  sendFile(conversation: string, file: File, caption: string): Promise<void>;
}

export class MessengerControls {
  readonly notifier: Notifier;
  private readonly lastSeen = new LastSeenToggle();
  private messenger: Messenger | null = null;
  private readonly draft: AttachmentDraft;
  private readonly mute: HTMLButtonElement;
  private readonly prompt: HTMLElement;
  private readonly help: HTMLDialogElement;
  private unsubscribe: () => void = () => undefined;

  /** `settings`: where the page keeps settings (the phone app's Settings screen); else a menu over the chats. */
  constructor(
    private readonly view: ControlledView,
    settings: HTMLElement | null = null,
  ) {
    const root = view.root;
    const chatsHead = root.querySelector<HTMLElement>(".chats-head");
    if (settings) this.lastSeen.checkbox(settings);
    else if (chatsHead) this.lastSeen.chatListMenu(chatsHead);
    this.notifier = new Notifier((conversation) => view.open(conversation));

    // Mute, in the open chat's menu: a phone's header keeps its width for the title and the calls.
    this.mute = el("button", {
      className: "mute",
      testid: "mute",
      attrs: { type: "button", role: "menuitemcheckbox", "aria-checked": "false" },
    });
    const menu = new Menu("Chat options", "chat-menu");
    menu.add(this.mute, () => {
      const c = view.current;
      if (c) void this.notifier.setMuted(c, !this.notifier.isMuted(c));
    });
    view.chatControls.append(menu.root);

    // Notifications are off until the person turns them on (browsers prompt only after a click).
    const enable = el("button", { text: "Turn on", testid: "enable-notifications", attrs: { type: "button" } });
    this.prompt = el(
      "p",
      { className: "muted small notify-prompt", testid: "notification-prompt" },
      "Get notified of new messages.",
      enable,
    );
    enable.addEventListener("click", () => void this.notifier.requestPermission());
    const chatList = byTestId("chat-list", root);
    chatList.before(this.prompt);

    // Attachments: chosen, dropped or pasted, then previewed with a caption before sending.
    this.draft = new AttachmentDraft((file, caption) => {
      const c = view.current;
      return c ? view.sendFile(c, file, caption) : Promise.resolve();
    });
    const composer = byTestId<HTMLTextAreaElement>("composer", root);
    const form = composer.closest("form");
    (form ?? composer).before(this.draft.root);
    const attach = byTestId<HTMLInputElement>("attach", root);
    const offer = (file: File): void => {
      this.draft.offer(file, composer.value.trim());
      composer.value = "";
    };
    attach.addEventListener("change", () => {
      const file = attach.files?.[0];
      attach.value = "";
      if (file && view.current) offer(file);
    });
    acceptDropAndPaste(
      byTestId("conversation", root),
      composer,
      () => view.current !== null && !composer.disabled,
      offer,
    );

    // Keyboard shortcuts, announced on the controls they stand for.
    byTestId("new-chat", root).setAttribute("aria-keyshortcuts", ariaKeys("new-chat"));
    byTestId("back", root).setAttribute("aria-keyshortcuts", ariaKeys("close-chat"));
    chatList.setAttribute("aria-keyshortcuts", `${ariaKeys("next-chat")} ${ariaKeys("previous-chat")}`);
    this.help = this.helpDialog();
    root.append(this.help);
    installShortcuts({ run: (action) => this.run(action) }, () => !root.hidden && this.messenger !== null);

    view.onOpen(() => {
      this.draft.close();
      this.render();
    });
    this.notifier.onChange(() => this.render());
    this.render();
  }

  bind(messenger: Messenger | null, deviceId: string | null): void {
    this.unsubscribe();
    this.messenger = messenger;
    this.unsubscribe = messenger?.subscribe(() => this.render()) ?? (() => undefined);
    void this.notifier.bind(messenger, deviceId);
    this.lastSeen.bind(messenger);
    this.render();
  }

  private render(): void {
    this.lastSeen.render();
    const m = this.messenger;
    const conversations = m?.conversations() ?? [];
    setTitleUnread(conversations.reduce((total, c) => total + c.unread, 0));
    const c = this.view.current;
    const muted = c !== null && this.notifier.isMuted(c);
    this.mute.textContent = "Mute notifications";
    this.mute.setAttribute("aria-checked", String(muted));
    show(this.prompt, m !== null && this.notifier.permission === "default");
    for (const row of this.view.root.querySelectorAll<HTMLElement>('[data-testid="chat-row"]')) {
      const id = row.dataset.conversationId;
      row.dataset.muted = String(id !== undefined && this.notifier.isMuted(id));
    }
  }

  /** Carries out a keyboard shortcut (shortcuts.ts). */
  run(action: ShortcutAction): void {
    const root = this.view.root;
    const rows = [...root.querySelectorAll<HTMLElement>('[data-testid="chat-row"]')];
    const index = rows.findIndex((row) => row.dataset.conversationId === this.view.current);
    switch (action) {
      case "new-chat": {
        const form = byTestId("new-chat-form", root);
        if (form.hidden) byTestId("new-chat", root).click();
        byTestId("new-chat-handle", root).focus();
        break;
      }
      case "search": {
        // The chat list's search box, where there is one.
        root.querySelector<HTMLInputElement>('input[type="search"]')?.focus();
        break;
      }
      case "next-chat":
      case "previous-chat": {
        if (!rows.length) return;
        const step = action === "next-chat" ? 1 : -1;
        const next = index < 0 ? (step > 0 ? 0 : rows.length - 1) : (index + step + rows.length) % rows.length;
        const id = rows[next]?.dataset.conversationId;
        if (id) {
          this.view.open(id);
          root
            .querySelector<HTMLElement>(`[data-testid="chat-row"][data-conversation-id="${CSS.escape(id)}"]`)
            ?.focus({ preventScroll: false });
        }
        break;
      }
      case "mark-read": {
        // The chat row the keyboard is on (read without opening it), else the open chat.
        const focused =
          document.activeElement instanceof HTMLElement
            ? document.activeElement.closest<HTMLElement>('[data-testid="chat-row"]')
            : null;
        const c = focused?.dataset.conversationId ?? this.view.current;
        if (c) this.messenger?.markRead(c);
        break;
      }
      case "close-chat":
        if (this.draft.open) this.draft.close();
        else if (this.view.current) this.view.open(null);
        break;
      case "help":
        this.help.showModal();
        break;
    }
  }

  private helpDialog(): HTMLDialogElement {
    const list = el("dl");
    for (const shortcut of SHORTCUTS)
      list.append(el("dt", { text: shortcut.keys }), el("dd", { text: shortcut.label }));
    const close = el("button", { text: "Close", attrs: { type: "button" } });
    const dialog = el(
      "dialog",
      { className: "shortcuts", testid: "shortcuts-help", attrs: { "aria-label": "Keyboard shortcuts" } },
      el("h2", { text: "Keyboard shortcuts" }),
      list,
      close,
    );
    close.addEventListener("click", () => dialog.close());
    return dialog;
  }
}
