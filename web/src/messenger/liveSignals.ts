/**
 * Typing and presence on the wire (messaging.md §15.5): the I/O around ./liveStatus.ts. It sends this
 * device's `typing` and `presence` envelopes (ordinary Olm or Megolm messages, end to end like any other)
 * and takes the ones that arrive, arming one timer for what expires by itself ("typing…" after 6 s,
 * "online" after 75 s) and one for this device's own deadlines (`paused`, the next `online`).
 *
 * Signals are worth their moment only: one is sent only while connected (never queued for later, unlike
 * a message), a failed one is dropped, and none is kept, counted as unread or notified. Presence goes only
 * to the peers of the PRESENCE_PEERS most recently active direct chats, so a visible page costs at most
 * 20 small sends a minute, and not at all while the person shares no "last seen" (`sharing`).
 */
import type { Conversations } from "./conversations";
import type { Device } from "./device";
import { type MessageEnvelope, newMessageId, parseConversation } from "./envelope";
import { parseSignal } from "./actions";
import {
  HIDDEN_GRACE_MS,
  LiveStatus,
  PRESENCE_PEERS,
  PRESENCE_REPEAT_MS,
  type PresenceShown,
  type PresenceState,
  TypingSender,
} from "./liveStatus";
import type { Outbox } from "./outbox";

export class LiveSignals {
  private readonly status = new LiveStatus();
  private readonly typing = new TypingSender();
  private visible = false;
  /** Peers told `online` since the page last hid: they hear `offline` when it hides. */
  private toldOnline = new Set<string>();
  private expiryTimer: ReturnType<typeof setTimeout> | null = null;
  private pausedTimer: ReturnType<typeof setTimeout> | null = null;
  private presenceTimer: ReturnType<typeof setTimeout> | null = null;
  private hiddenTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly device: Device,
    private readonly outbox: Outbox,
    private readonly conversations: Conversations,
  ) {}

  close(): void {
    for (const timer of [this.expiryTimer, this.pausedTimer, this.presenceTimer, this.hiddenTimer])
      if (timer !== null) clearTimeout(timer);
    this.expiryTimer = this.pausedTimer = this.presenceTimer = this.hiddenTimer = null;
  }

  // --- what this device shows -------------------------------------------------------------------------
  /** Accounts typing in `conversation` now (never this account: its other devices' signals are ignored). */
  typers(conversation: string): string[] {
    return this.status.typers(conversation, this.device.now());
  }

  /** A contact's presence, or null when unknown or while this device shares no last seen. */
  presenceOf(account: string): PresenceShown {
    return this.sharing ? this.status.presenceOf(account, this.device.now()) : null;
  }

  /** A `typing` or `presence` envelope that passed the inbox's checks (`groupId`: it came through a group). */
  receive(envelope: MessageEnvelope, groupId: string | null): void {
    if (envelope.senderAccount === this.device.accountId) return; // our own devices: nothing to show
    const signal = parseSignal(envelope.kind, envelope.body);
    const now = this.device.now();
    if (signal.kind === "typing")
      this.status.noteTyping(envelope.conversation, envelope.senderAccount, signal.state, envelope.ts, now);
    // Presence is direct only (§15.5), and a device that shares none shows none (as WhatsApp does).
    else if (groupId === null && this.sharing)
      this.status.notePresence(envelope.senderAccount, signal.state, envelope.ts);
    this.armExpiry(); // the inbox tells the page to draw once its batch is handled
  }

  /** A message from `account` arrived: "typing…" ends with it. */
  messageArrived(conversation: string, account: string): void {
    this.status.stopTyping(conversation, account);
    this.greet(conversation);
  }

  private armExpiry(): void {
    if (this.expiryTimer !== null) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    const now = this.device.now();
    const next = this.status.nextChange(now);
    if (next === null) return;
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = null;
      this.device.changed();
      this.armExpiry();
    }, next - now);
  }

  // --- typing -----------------------------------------------------------------------------------------
  /** The person changed the composer of `conversation` to `text`. */
  composing(conversation: string, text: string): void {
    const state = this.typing.input(conversation, text.trim() === "", this.device.now());
    // Offline, nothing went out: no `paused` is owed later either.
    if (state && !this.send(conversation, "typing", { state })) this.typing.sent(conversation);
    this.armPaused();
  }

  /** A message went to `conversation`: receivers end "typing…" on it, so no `paused` follows. */
  messageSent(conversation: string): void {
    this.typing.sent(conversation);
    this.armPaused();
    this.greet(conversation);
  }

  private armPaused(): void {
    if (this.pausedTimer !== null) clearTimeout(this.pausedTimer);
    this.pausedTimer = null;
    const due = this.typing.nextDue();
    if (due === null) return;
    this.pausedTimer = setTimeout(
      () => {
        this.pausedTimer = null;
        for (const conversation of this.typing.idle(this.device.now()))
          this.send(conversation, "typing", { state: "paused" });
        this.armPaused();
      },
      Math.max(0, due - this.device.now()),
    );
  }

  // --- presence ---------------------------------------------------------------------------------------
  /** "Share last seen and online" (§15.5): this device's choice, kept sealed with its state; on by default. */
  get sharing(): boolean {
    return this.device.state.shareLastSeen !== false;
  }

  async setSharing(on: boolean): Promise<void> {
    const device = this.device;
    device.state.shareLastSeen = on;
    if (on) this.announce();
    else {
      // Off: send nothing more, and show no one's (what peers were told before stays theirs).
      if (this.presenceTimer !== null) clearTimeout(this.presenceTimer);
      this.presenceTimer = null;
      this.toldOnline.clear();
      this.status.forgetPresence();
    }
    device.changed();
    await device.serial(() => device.save());
  }

  /** The page became visible or hidden: `online` now, `offline` once it stayed hidden HIDDEN_GRACE_MS. */
  setVisible(visible: boolean): void {
    if (visible === this.visible) return;
    this.visible = visible;
    if (this.hiddenTimer !== null) clearTimeout(this.hiddenTimer); // back before `offline` went out
    this.hiddenTimer = null;
    if (visible) {
      this.announce();
      return;
    }
    if (this.presenceTimer !== null) clearTimeout(this.presenceTimer);
    this.presenceTimer = null;
    this.hiddenTimer = setTimeout(() => {
      this.hiddenTimer = null;
      this.hide();
    }, HIDDEN_GRACE_MS);
  }

  /** The socket is back: say `online` again (what was due while away was not queued). */
  connected(): void {
    this.announce();
  }

  /** `online` to the peers of the most recently active direct chats, again every PRESENCE_REPEAT_MS. */
  private announce(): void {
    if (this.presenceTimer !== null) clearTimeout(this.presenceTimer);
    this.presenceTimer = null;
    if (!this.visible || !this.sharing) return;
    for (const peer of this.recentPeers()) if (this.sendPresence(peer, "online")) this.toldOnline.add(peer);
    this.presenceTimer = setTimeout(() => this.announce(), PRESENCE_REPEAT_MS);
  }

  private hide(): void {
    for (const peer of this.toldOnline) this.sendPresence(peer, "offline");
    this.toldOnline.clear();
  }

  /** A direct chat just became active: its peer hears `online` now rather than at the next round. */
  private greet(conversation: string): void {
    const peer = parseConversation(conversation, this.device.accountId).peer;
    if (!peer || peer === this.device.accountId || this.toldOnline.has(peer)) return;
    if (this.visible && this.sharing && this.sendPresence(peer, "online")) this.toldOnline.add(peer);
  }

  private recentPeers(): string[] {
    const self = this.device.accountId;
    const peers: string[] = [];
    for (const chat of this.conversations.list()) {
      if (peers.length >= PRESENCE_PEERS) break;
      if (chat.kind === "direct" && chat.peer && chat.peer !== self) peers.push(chat.peer);
    }
    return peers;
  }

  /** Whether it went out (it does not while disconnected). */
  private sendPresence(peer: string, state: PresenceState): boolean {
    return this.sendTo({ peer }, "presence", { state });
  }

  // --- sending ----------------------------------------------------------------------------------------
  /** Whether it went out (not to oneself, not while disconnected). */
  private send(conversation: string, kind: "typing", body: Record<string, unknown>): boolean {
    const to = parseConversation(conversation, this.device.accountId);
    if (to.peer === this.device.accountId) return false; // a chat with oneself: no one to tell
    return this.sendTo(to, kind, body);
  }

  private sendTo(to: { peer?: string; groupId?: string }, kind: string, body: Record<string, unknown>): boolean {
    const device = this.device;
    if (!device.connected) return false; // never queued: a signal from the past would mislead
    void device
      .serial(() => (device.connected ? this.outbox.sendInto(to, kind, body, newMessageId()) : Promise.resolve(0)))
      .catch(() => undefined); // a lost signal costs nothing that the next one (or a timeout) does not mend
    return true;
  }
}
