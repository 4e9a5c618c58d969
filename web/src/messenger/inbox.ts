/**
 * Receiving (messaging.md §7.2), the twin of client/messaging/inbox.py: the server's queue fetched and
 * handled in sequence order, each message exactly once; a copy opened only after its sender's key checks
 * out against the sender's signed device list; ratchets and messages on disk before the server is told to
 * forget the ciphertext; a delivered receipt for what arrived. A copy that cannot be opened or breaks a rule
 * is kept as an `undecryptable` placeholder with the reason, so nothing vanishes silently.
 *
 * Each kind of message has one handler (`act`); a kind this app does not know is dropped unshown.
 */
import { b64uDecode, b64uEncode } from "../crypto/base64";
import type { MessageEvent, ServerEvent } from "../net/events";
import { ServerError, SocketClosed } from "../net/socket";
import type { Contacts } from "./contacts";
import type { Conversations } from "./conversations";
import type { Device } from "./device";
import {
  EnvelopeError,
  type MessageEnvelope,
  checkRouting,
  decodeEnvelope,
  directConversation,
  groupConversation,
} from "./envelope";
import { MessengerError, describe } from "./errors";
import type { Groups } from "./groups";
import type { HistoryTransfer } from "./historyTransfer";
import type { LiveSignals } from "./liveSignals";
import { type MessageChanges, recordOf } from "./messageChanges";
import { parseVoice } from "./actions";
import { type FormerDevice, KeyBundleError, sentWhileListed } from "./keys";
import type { MediaDescriptor } from "./media";
import { type ChatMessage, statusFrom } from "./model";
import type { Outbox } from "./outbox";
import { publishKeys } from "./publishKeys";
import { MarkTracker, parseReceipt } from "./receipts";
import { Slicer } from "./yieldToPage";

const FETCH_LIMIT = 200;
/** When a primary tries again to send history to a newly linked companion, which publishes its keys only
 * after it signed in (ms after `devices.changed`). */
const HISTORY_RETRIES_MS = [500, 2_000, 5_000, 10_000, 20_000, 40_000];

/** A message as the server queues it (the `message` event, or one item of `messages.fetch`). */
type ServerMessage = Omit<MessageEvent, "event">;

export class Inbox {
  /** Message events pushed while earlier ones are handled: handled together, as one batch. */
  private pushed: ServerMessage[] = [];
  /** How far receipts' marks reached, so a long chat is walked once, not once per receipt. */
  private readonly marks = new MarkTracker();

  constructor(
    private readonly device: Device,
    private readonly contacts: Contacts,
    private readonly groups: Groups,
    private readonly conversations: Conversations,
    private readonly outbox: Outbox,
    private readonly history: HistoryTransfer,
    private readonly changes: MessageChanges,
    private readonly live: LiveSignals,
  ) {}

  /** A server event: each is handled in turn with everything else that touches ratchets (`serial`). */
  onEvent(event: ServerEvent): void {
    const device = this.device;
    const note = (error: unknown): void => device.noteError(error);
    switch (event.event) {
      case "message":
        // Events that arrive while earlier ones are handled wait, and are then handled as one batch: one
        // save, one acknowledgement and one receipt per sender for all of them (a burst costs few of each).
        this.pushed.push(event);
        if (this.pushed.length === 1) void device.serial(() => this.handlePushed()).catch(note);
        break;
      case "keys.low":
        void device.serial(() => publishKeys(device)).catch(note);
        break;
      case "groups.changed":
        void device.serial(() => this.groups.onChanged(event)).catch(note);
        break;
      case "devices.changed":
        this.contacts.forget(device.accountId);
        // A newly linked companion publishes its keys only after it signed in: try a few times.
        if (device.identity.role === "primary") {
          for (const delay of HISTORY_RETRIES_MS) {
            setTimeout(() => {
              if (device.socket) void device.serial(() => this.history.sync()).catch(note);
            }, delay);
          }
        }
        break;
      default:
        break;
    }
  }

  /** Everything the server holds for this device, from the start: it also re-offers what was never acknowledged. */
  async fetchAll(): Promise<void> {
    let after = 0;
    for (;;) {
      const result = await this.device.request("messages.fetch", { after, limit: FETCH_LIMIT });
      const items = (result.messages ?? []) as ServerMessage[];
      await this.handleBatch(items);
      if (!result.more || !items.length) return;
      after = Math.max(...items.map((m) => m.seq));
    }
  }

  /** The pushed message events that follow on from `lastSeq`; a gap makes it fetch what is missing, in order. */
  private async handlePushed(): Promise<void> {
    const events = this.pushed.sort((a, b) => a.seq - b.seq);
    this.pushed = [];
    const batch: ServerMessage[] = [];
    let expected = this.device.state.lastSeq + 1;
    for (const event of events) {
      if (event.seq < expected) continue;
      if (event.seq > expected) break;
      batch.push(event);
      expected++;
    }
    await this.handleBatch(batch);
    const newest = events[events.length - 1];
    if (newest && newest.seq > this.device.state.lastSeq) await this.fetchAll();
  }

  private async handleBatch(items: ServerMessage[]): Promise<void> {
    if (!items.length) return;
    const device = this.device;
    const fresh: ChatMessage[] = [];
    // A message's WebCrypto steps resolve within one task, so a batch of 200 would decrypt in one long
    // task (~0.3 ms each): the page gets a turn every few ms instead. Ratchets stay consistent meanwhile,
    // since everything else that touches them waits in `serial`; what the page draws in between is only
    // acknowledged once saved below.
    const slices = new Slicer();
    for (const item of [...items].sort((a, b) => a.seq - b.seq)) {
      await slices.pause();
      const seq = item.seq;
      if (seq <= device.state.lastSeq) continue; // handled before a reload or a lost acknowledgement
      if (!device.hasSeen(item.message_id)) {
        const shown = await this.open(item);
        device.markSeen(item.message_id);
        if (shown && !shown.outgoing && (shown.kind === "text" || shown.kind === "media")) fresh.push(shown);
      }
      device.state.lastSeq = seq;
    }
    await device.save(); // ratchets and messages on disk before the server forgets the ciphertext
    await device.request("messages.ack", { up_to: device.state.lastSeq });
    device.changed();
    this.outbox.noteReceipts("delivered", fresh);
  }

  /** Decrypts, checks and acts on one queued copy; returns the message to show, if it is one. */
  private async open(item: ServerMessage): Promise<ChatMessage | null> {
    const device = this.device;
    const sender = item.sender;
    const groupId = item.group_id ?? null;
    const payload = item.payload;
    try {
      let plaintext: Uint8Array;
      let senderKey = "";
      let former: FormerDevice | null = null;
      if (payload.type === "olm") {
        const key = b64uDecode(String(payload.sender_key));
        if (key.length !== 32) throw new EnvelopeError("a sender key is 32 bytes");
        former = await this.contacts.checkSenderKey(sender.account_id, sender.device_id, key);
        const type = payload.olm_type === 0 ? 0 : payload.olm_type === 1 ? 1 : null;
        if (type === null) throw new EnvelopeError("an unknown Olm message type");
        plaintext = await device.olm.decrypt(key, type, b64uDecode(String(payload.ciphertext)));
        senderKey = b64uEncode(key);
      } else if (payload.type === "megolm" && groupId !== null) {
        plaintext = await device.megolm.decrypt(
          sender.device_id,
          String(payload.session_id),
          b64uDecode(String(payload.ciphertext)),
          groupId,
        );
      } else {
        throw new EnvelopeError("an unknown payload type");
      }
      const envelope = decodeEnvelope(plaintext);
      checkRouting(envelope, item.message_id, sender.account_id, sender.device_id);
      if (former && !sentWhileListed(former, item.server_time, envelope.ts))
        throw new KeyBundleError("this message was sent after its device was unlinked");
      this.checkConversation(envelope, groupId);
      return await this.act(envelope, payload.type === "olm", senderKey, groupId, item.server_time);
    } catch (error) {
      // The connection failed (or the server refused a look-up): leave the copy queued and retry later.
      // Anything else is this message's fault: show it as undecryptable, with the reason, and move on.
      if (
        error instanceof SocketClosed ||
        error instanceof ServerError ||
        (error instanceof MessengerError && !device.connected)
      )
        throw error;
      const conversation = groupId
        ? groupConversation(groupId)
        : directConversation(device.accountId, sender.account_id);
      if (!groupId) device.onUndecryptable?.(sender.account_id, describe(error));
      if (!groupId && sender.account_id === device.accountId) return null; // our own device's control message
      if (device.messages.has(item.message_id)) return null; // a placeholder never replaces a stored message
      const message: ChatMessage = {
        id: item.message_id,
        conversation,
        kind: "undecryptable",
        senderAccount: sender.account_id,
        senderDevice: sender.device_id,
        ts: item.server_time,
        outgoing: false,
        read: true,
        error: describe(error),
      };
      device.ensureChat(conversation);
      device.put(message);
      return message;
    }
  }

  /** A group message must name its group; a direct one a conversation of this account and its sender. */
  private checkConversation(envelope: MessageEnvelope, groupId: string | null): void {
    if (groupId !== null) {
      if (envelope.conversation !== groupConversation(groupId))
        throw new EnvelopeError("a group message that names another conversation");
      return;
    }
    const parts = envelope.conversation.split(":");
    if (parts[0] !== "direct" || parts.length !== 3 || !parts.slice(1).includes(this.device.accountId))
      throw new EnvelopeError("a direct message for a conversation this account is not in");
    if (!parts.slice(1).includes(envelope.senderAccount))
      throw new EnvelopeError("a direct message from outside its conversation");
  }

  private async act(
    envelope: MessageEnvelope,
    overOlm: boolean,
    senderKey: string,
    groupId: string | null,
    serverTime: number,
  ): Promise<ChatMessage | null> {
    switch (envelope.kind) {
      case "group-key":
        await this.onGroupKey(envelope, overOlm, senderKey, groupId);
        return null;
      case "group-info":
        this.onGroupInfo(envelope, groupId);
        return null;
      case "receipt":
        this.onReceipt(envelope);
        return null;
      case "history-request":
        await this.history.serve(envelope);
        return null;
      case "history":
        await this.history.import(envelope);
        return null;
      case "call": // to the page's phone, in order; never awaited here (it sends through this queue)
        this.device.onCall?.(
          envelope.body,
          { accountId: envelope.senderAccount, deviceId: envelope.senderDevice },
          envelope.conversation,
          envelope.ts,
        );
        return null;
      case "text":
      case "media":
        return this.onChatMessage(envelope);
      case "reaction":
      case "edit":
      case "delete":
        this.changes.keep(recordOf(envelope, serverTime));
        return null;
      case "typing":
      case "presence": // shown for a moment, never kept (§15.5)
        this.live.receive(envelope, groupId);
        return null;
      default:
        return null;
    }
  }

  private async onGroupKey(
    envelope: MessageEnvelope,
    overOlm: boolean,
    senderKey: string,
    groupId: string | null,
  ): Promise<void> {
    const body = envelope.body as { group_id: string; session_id: string; session_key: string }; // checked by decodeEnvelope
    if (!overOlm) throw new EnvelopeError("group keys travel only over Olm");
    if (body.group_id !== groupId) throw new EnvelopeError("a group key routed through another group");
    await this.device.megolm.addInbound(envelope.senderDevice, senderKey, {
      group_id: body.group_id,
      session_id: body.session_id,
      session_key: body.session_key,
    });
  }

  private onGroupInfo(envelope: MessageEnvelope, groupId: string | null): void {
    const body = envelope.body;
    if (groupId && body.group_id === groupId && typeof body.name === "string") this.groups.setName(groupId, body.name);
  }

  /**
   * A receipt (§5.3): marks ("up to this message") or, from the first version, ids. From another account it
   * moves the ticks of our messages; from another device of ours it says the person read these there.
   */
  private onReceipt(envelope: MessageEnvelope): void {
    const device = this.device;
    const from = envelope.senderAccount;
    const receipt = parseReceipt(envelope.body);
    const own = from === device.accountId;
    if (own && receipt.status !== "read") return;
    const reached: ChatMessage[] = [];
    for (const id of receipt.ids) {
      const message = device.messages.get(id);
      if (message) reached.push(message);
    }
    for (const mark of receipt.marks) {
      const key = `${from}\n${receipt.status}\n${mark.conversation}`;
      reached.push(...this.marks.reach(key, device.messages.messagesOf(mark.conversation), mark));
    }
    for (const message of reached) {
      if (own) {
        // Another device of ours read these (its receipt to the sender reaches us too): read here as well.
        if (!message.outgoing && message.read === false) {
          message.read = true;
          device.put(message);
        }
        continue;
      }
      if (!message.outgoing || message.by?.[from] === "read" || message.by?.[from] === receipt.status) continue;
      message.by = { ...(message.by ?? {}), [from]: receipt.status };
      message.recipients ??= this.conversations.recipientsOf(message.conversation);
      message.status = statusFrom(message);
      device.put(message);
    }
  }

  private async onChatMessage(envelope: MessageEnvelope): Promise<ChatMessage> {
    const device = this.device;
    const body = envelope.body;
    const outgoing = envelope.senderAccount === device.accountId;
    // Message ids are random and name one message for good: one already stored (ours, or anyone's)
    // is never replaced, whoever sends it again.
    if (device.messages.has(envelope.id)) throw new EnvelopeError("a message id that is already used");
    const message: ChatMessage = {
      id: envelope.id,
      conversation: envelope.conversation,
      kind: envelope.kind === "media" ? "media" : "text",
      senderAccount: envelope.senderAccount,
      senderDevice: envelope.senderDevice,
      ts: envelope.ts,
      outgoing,
      text: typeof body.text === "string" ? body.text : typeof body.caption === "string" ? body.caption : undefined,
      media: envelope.kind === "media" ? (body.media as MediaDescriptor) : undefined,
      replyTo: typeof body.reply_to === "string" ? body.reply_to : undefined, // checked by decodeEnvelope
      voice: parseVoice(body) ?? undefined,
      ...(outgoing
        ? { status: "sent" as const, by: {}, recipients: this.conversations.recipientsOf(envelope.conversation) }
        : { read: false }),
    };
    if (!this.contacts.knows(envelope.senderAccount))
      await this.contacts.get({ accountId: envelope.senderAccount }).catch(() => undefined);
    const peer = this.conversations.info(envelope.conversation).peer;
    if (peer && !this.contacts.knows(peer)) await this.contacts.get({ accountId: peer }).catch(() => undefined);
    device.ensureChat(envelope.conversation);
    device.put(message);
    this.changes.adopt(message);
    this.live.messageArrived(envelope.conversation, envelope.senderAccount);
    return message;
  }
}
