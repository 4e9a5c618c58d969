/**
 * Typing and presence (messaging.md §15.5), the pure part: what this device should send while its person
 * types, and what it shows of others — "typing…", "online", "last seen" — as a function of the signals it
 * received and the time. No timers, sockets or storage here: every call takes `now` (this device's estimate
 * of server time, ms) and `nextChange`/`nextDue` say when to look again, so tests drive it on any clock and
 * ./liveSignals.ts only arms one timer. Nothing here is ever kept: a reload starts from nothing, as the spec
 * wants of signals that are "shown for a moment".
 */
import { PRESENCE_ONLINE_MS, TYPING_FRESH_MS } from "./actions";

/** A device sends `composing` again at most this often while its person keeps typing. */
export const TYPING_REPEAT_MS = 5_000;
/** …and `paused` after this long without input. */
export const TYPING_IDLE_MS = 5_000;
/** Receivers stop showing "typing…" this long after the last `composing` (a lost `paused` cannot stick). */
export const TYPING_SHOWN_MS = 6_000;
/** A visible page repeats `online` this often (receivers trust one for PRESENCE_ONLINE_MS). */
export const PRESENCE_REPEAT_MS = 60_000;
/**
 * `offline` waits this long after the page hides, and is not sent if the page is gone by then. A closing
 * tab hides too, and a message sent as the page dies may never reach the database after leaving for the
 * server: its Olm session would then be ahead on the peer and behind here, and the next message either
 * way would not open. A closed page's last `online` simply turns into "last seen" (PRESENCE_ONLINE_MS).
 */
export const HIDDEN_GRACE_MS = 1_000;
/** `online` goes to the peers of this many most recently active direct chats: its cost is bounded. */
export const PRESENCE_PEERS = 20;

export type TypingState = "composing" | "paused";
export type PresenceState = "online" | "offline";

/**
 * The typing signals of this device, per conversation: `composing` when typing starts and again at most
 * every TYPING_REPEAT_MS while it goes on; `paused` after TYPING_IDLE_MS without input or when the text is
 * cleared. Sending the message ends it silently (receivers end "typing…" on the message itself).
 */
export class TypingSender {
  /** Conversations with a `composing` out: when it was sent and when the person last typed. */
  private readonly typing = new Map<string, { sentAt: number; inputAt: number }>();

  /** The composer of `conversation` changed (`empty`: nothing left in it); what to send now, if anything. */
  input(conversation: string, empty: boolean, now: number): TypingState | null {
    const chat = this.typing.get(conversation);
    if (empty) {
      if (!chat) return null;
      this.typing.delete(conversation);
      return "paused";
    }
    if (chat && now - chat.sentAt < TYPING_REPEAT_MS) {
      chat.inputAt = now;
      return null;
    }
    this.typing.set(conversation, { sentAt: now, inputAt: now });
    return "composing";
  }

  /** The message went out: it ends "typing…" on every receiver by itself. */
  sent(conversation: string): void {
    this.typing.delete(conversation);
  }

  /** Conversations whose person stopped typing TYPING_IDLE_MS ago: each needs a `paused`, once. */
  idle(now: number): string[] {
    const due: string[] = [];
    for (const [conversation, chat] of this.typing)
      if (now - chat.inputAt >= TYPING_IDLE_MS) {
        due.push(conversation);
        this.typing.delete(conversation);
      }
    return due;
  }

  /** When `idle` will next return something (null: no one is typing). */
  nextDue(): number | null {
    let next: number | null = null;
    for (const chat of this.typing.values()) next = earliest(next, chat.inputAt + TYPING_IDLE_MS);
    return next;
  }
}

/** How a contact's presence reads: "online", "last seen …" (at `lastSeen`), or nothing known. */
export type PresenceShown = { online: true } | { online: false; lastSeen: number } | null;

/** What this device shows of others: who is typing where, and each contact's latest presence. */
export class LiveStatus {
  /** Conversation → account → until when "typing…" shows. */
  private readonly typing = new Map<string, Map<string, number>>();
  /** Account → its newest presence signal (by the sender's signed time). */
  private readonly presence = new Map<string, { state: PresenceState; ts: number }>();

  /** A typing signal `account` signed at `ts`; true if what is shown changed. Stale ones (queued while this
   * device was away) are not shown. */
  noteTyping(conversation: string, account: string, state: TypingState, ts: number, now: number): boolean {
    if (state === "paused") return this.stopTyping(conversation, account);
    if (now - ts > TYPING_FRESH_MS) return false;
    let accounts = this.typing.get(conversation);
    if (!accounts) this.typing.set(conversation, (accounts = new Map<string, number>()));
    const shown = accounts.has(account);
    accounts.set(account, now + TYPING_SHOWN_MS);
    return !shown;
  }

  /** A message from `account` arrived in `conversation`: its typing is over. */
  stopTyping(conversation: string, account: string): boolean {
    const accounts = this.typing.get(conversation);
    if (!accounts?.delete(account)) return false;
    if (accounts.size === 0) this.typing.delete(conversation);
    return true;
  }

  /** The accounts typing in `conversation` now, in the order they started. */
  typers(conversation: string, now: number): string[] {
    const accounts = this.typing.get(conversation);
    return accounts ? [...accounts].filter(([, until]) => until > now).map(([account]) => account) : [];
  }

  /** A presence signal; only a newer one than what is known counts (they may arrive out of order). */
  notePresence(account: string, state: PresenceState, ts: number): boolean {
    const known = this.presence.get(account);
    if (known && known.ts >= ts) return false;
    this.presence.set(account, { state, ts });
    return true;
  }

  /** "online" while the newest signal is `online` and younger than PRESENCE_ONLINE_MS, else last seen then. */
  presenceOf(account: string, now: number): PresenceShown {
    const known = this.presence.get(account);
    if (!known) return null;
    if (known.state === "online" && now - known.ts < PRESENCE_ONLINE_MS) return { online: true };
    return { online: false, lastSeen: known.ts };
  }

  /** Forget everyone's presence (the person turned "last seen" off: they see no one's). */
  forgetPresence(): void {
    this.presence.clear();
  }

  /** Drops what stopped showing by `now`; when something shown next changes by itself (null: nothing will). */
  nextChange(now: number): number | null {
    let next: number | null = null;
    for (const [conversation, accounts] of this.typing) {
      for (const [account, until] of accounts)
        if (until <= now) accounts.delete(account);
        else next = earliest(next, until);
      if (accounts.size === 0) this.typing.delete(conversation);
    }
    for (const { state, ts } of this.presence.values()) {
      const expires = ts + PRESENCE_ONLINE_MS;
      if (state === "online" && expires > now) next = earliest(next, expires);
    }
    return next;
  }
}

function earliest(a: number | null, b: number): number {
  return a === null ? b : Math.min(a, b);
}
