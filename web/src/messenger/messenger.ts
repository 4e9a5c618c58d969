/**
 * The browser's messaging client (messaging.md), the twin of src/lockstep/client/messenger.py: one facade
 * over the parts that each do one job, as the page uses them.
 *
 *   const messenger = await Messenger.open(identity);
 *   messenger.attach(socket);            // after `auth`; events go to messenger.onEvent(event)
 *   await messenger.sendText(conversationId, "hi");
 *
 * The parts (docs/ARCHITECTURE.md has the map):
 * - ./device.ts: what every part shares: identity, Olm/Megolm state, what is kept (./messageStore.ts, and
 *   in memory by conversation, ./chatIndex.ts), the socket;
 * - ./envelope.ts: the plaintext inside every ciphertext (e2e/envelope.py's twin);
 * - ./publishKeys.ts: this device's key bundle and one-time keys;
 * - ./contacts.ts: looking accounts up and verifying their device lists and keys;
 * - ./groups.ts: groups as this device knows them, creating and changing them;
 * - ./outbox.ts: encrypting and sending (Olm fan-out with one retry for changed device lists, Megolm,
 *   receipts as "up to" markers, ./receipts.ts), and the person's messages until they are sent;
 * - ./inbox.ts: server events, and fetching, opening and acting on what arrives, exactly once and in order;
 * - ./historyTransfer.ts: the primary's history bundle for a new companion, and importing one;
 * - ./mediaTransfer.ts: encrypted files in and out of the server;
 * - ./conversations.ts: the chats and their messages as the page shows them;
 * - ./liveSignals.ts: typing and presence, sent and shown for a moment, never kept.
 */
import type { LockstepSocket, ServerEvent } from "../net/socket";
import { ServerError } from "../net/socket";
import { Contacts } from "./contacts";
import { Conversations } from "./conversations";
import { Device, type Identity } from "./device";
import { directConversation, groupConversation, newMessageId } from "./envelope";
import { describe } from "./errors";
import { Groups } from "./groups";
import { HistoryTransfer } from "./historyTransfer";
import { Inbox } from "./inbox";
import { LiveSignals } from "./liveSignals";
import type { PresenceShown } from "./liveStatus";
import type { Progress } from "./media";
import { MediaTransfer } from "./mediaTransfer";
import type { ChatMessage, Conversation } from "./model";
import { MessageChanges } from "./messageChanges";
import { Outbox } from "./outbox";
import { publishKeys } from "./publishKeys";

export type { Identity } from "./device";

export class Messenger {
  private readonly contacts: Contacts;
  private readonly groups: Groups;
  private readonly media: MediaTransfer;
  private readonly outbox: Outbox;
  private readonly history: HistoryTransfer;
  private readonly inbox: Inbox;
  private readonly chats: Conversations;
  private readonly changes: MessageChanges;
  private readonly live: LiveSignals;

  private constructor(private readonly device: Device) {
    this.contacts = new Contacts(device);
    this.groups = new Groups(device, this.contacts);
    this.media = new MediaTransfer(device);
    this.outbox = new Outbox(device, this.contacts, this.groups, this.media);
    this.changes = new MessageChanges(device, this.outbox);
    this.history = new HistoryTransfer(device, this.contacts, this.groups, this.outbox, this.media, this.changes);
    this.chats = new Conversations(device, this.contacts, this.groups);
    this.live = new LiveSignals(device, this.outbox, this.chats);
    this.inbox = new Inbox(
      device,
      this.contacts,
      this.groups,
      this.chats,
      this.outbox,
      this.history,
      this.changes,
      this.live,
    );
  }

  /** `existing`: open only a database that is there (DatabaseGone if another tab wiped it). */
  static async open(identity: Identity, existing = false): Promise<Messenger> {
    return new Messenger(await Device.open(identity, existing));
  }

  /** Deletes this device's messenger database (used when the device is unlinked). */
  static wipe(deviceId: string): Promise<void> {
    return Device.wipe(deviceId);
  }

  close(): void {
    this.live.close();
    this.outbox.close();
    this.detach();
    this.device.close();
    this.media.close();
  }

  get identity(): Identity {
    return this.device.identity;
  }

  /** Connected to the server (a socket is attached). */
  get online(): boolean {
    return this.device.online;
  }

  /** What went wrong last, in words for the person ("" once a sync succeeded). */
  get lastError(): string {
    return this.device.lastError;
  }

  /** Object URLs of media this page already decrypted or sent (message id → blob: URL). */
  get mediaUrls(): ReadonlyMap<string, string> {
    return this.media.urls;
  }

  /** Resolves once every stored conversation is unsealed (the page draws before: ./storedChats.ts). */
  loaded(): Promise<void> {
    return this.device.serial(() => Promise.resolve());
  }

  get historyNote(): string | undefined {
    return this.history.note;
  }

  /** Primary: send history to every companion still waiting for it (one whose probation just ended). */
  syncHistory(): Promise<void> {
    return this.device.serial(() => this.history.sync());
  }

  /** Companion: ask the phone for up to `limit` messages older than the oldest one here (§12.1). */
  requestOlderHistory(limit = 1000): Promise<void> {
    return this.device.serial(() => this.history.requestOlder(limit));
  }

  /** `listener` hears of every change, with the ids of the messages that changed (new ones included). */
  subscribe(listener: (changed: ReadonlySet<string>) => void): () => void {
    return this.device.subscribe(listener);
  }

  // --- calls (docs/protocol/messaging.md §14): signals in and out, their entries in the chat -----------
  set onCall(handler: Device["onCall"]) {
    this.device.onCall = handler;
  }

  set onUndecryptable(handler: Device["onUndecryptable"]) {
    this.device.onUndecryptable = handler;
  }

  sendCall(peerId: string, body: Record<string, unknown>): Promise<void> {
    return this.device.serial(async () => {
      await this.outbox.sendDirect(peerId, "call", body, newMessageId());
    });
  }

  async iceServers(): Promise<RTCIceServer[]> {
    const result = await this.device.request("calls.ice_servers");
    return Array.isArray(result.ice_servers) ? (result.ice_servers as RTCIceServer[]) : [];
  }

  /** The entry a call leaves in the direct chat with `peerId` ("missed voice call"), once per call. */
  noteCall(peerId: string, callId: string, text: string, ts: number, outgoing: boolean): Promise<void> {
    const device = this.device;
    return device.serial(async () => {
      const conversation = directConversation(device.accountId, peerId);
      const id = `call-${callId}`;
      if (device.messages.has(id)) return;
      device.ensureChat(conversation);
      device.put({
        id,
        conversation,
        kind: "note",
        senderAccount: outgoing ? device.accountId : peerId,
        senderDevice: outgoing ? device.deviceId : "",
        ts,
        outgoing: false,
        text,
        read: true,
      });
      await device.save();
      device.changed();
    });
  }

  // --- connection -----------------------------------------------------------------------------------
  /** Use an authenticated socket: publish keys, fetch everything queued, resend what never left. */
  attach(socket: LockstepSocket): Promise<void> {
    const device = this.device;
    device.socket = socket;
    device.online = true;
    device.changed();
    return device.serial(async () => {
      try {
        await publishKeys(device).catch((error: unknown) => {
          // On a full server disk, still fetch what is waiting (SECURITY.md, "Full disk").
          if (!(error instanceof ServerError && (error.code === "storage_full" || error.code === "unavailable")))
            throw error;
        });
        await this.inbox.fetchAll();
        await this.groups.refresh();
        await this.outbox.resendInFlight(); // the very ciphertexts a page that died had sent, or was sending
        await this.outbox.resendPending();
        await this.changes.resendUnsent(); // after the messages they may name
        await this.history.sync();
        this.outbox.scheduleReceipts(); // what waited while the connection was down
        this.live.connected();
        device.lastError = "";
      } catch (error) {
        device.lastError = describe(error);
      }
      device.changed();
    });
  }

  detach(): void {
    this.device.socket = null;
    this.device.online = false;
    this.device.changed();
  }

  /** The page accepted a newer list of this account's devices: never accept an older one from a look-up. */
  noteListVersion(version: number): void {
    this.device.identity.listVersion = Math.max(this.device.identity.listVersion, version);
  }

  onEvent(event: ServerEvent): void {
    this.inbox.onEvent(event);
  }

  // --- people ---------------------------------------------------------------------------------------
  handleOf(accountId: string): string | undefined {
    return this.contacts.handleOf(accountId);
  }

  nameOf(accountId: string): string {
    return this.contacts.nameOf(accountId);
  }

  // --- sending --------------------------------------------------------------------------------------
  /** A text; with `replyTo`, as a reply quoting that message (§15.1). */
  sendText(conversation: string, text: string, replyTo?: string): Promise<ChatMessage> {
    this.live.messageSent(conversation);
    return this.outbox.sendText(conversation, text, replyTo).then((message) => this.sent(message));
  }

  /** A message of this device is kept: it joins what replies and actions know of. */
  private sent(message: ChatMessage): ChatMessage {
    this.changes.adopt(message);
    return message;
  }

  /** Encrypts and uploads the file (progress 0..1), then sends its key and hashes inside E2E; `extra` makes
   * it a reply or a voice note (§16). */
  sendFile(
    conversation: string,
    file: File,
    caption: string,
    progress: Progress,
    extra: Pick<ChatMessage, "replyTo" | "voice"> = {},
  ): Promise<ChatMessage> {
    this.live.messageSent(conversation);
    return this.outbox.sendFile(conversation, file, caption, progress, extra).then((message) => this.sent(message));
  }

  // --- typing and presence (§15.5): shown for a moment, never kept ------------------------------------
  /** The person changed what they are writing in `conversation` (sends `composing`/`paused`, throttled). */
  typing(conversation: string, text: string): void {
    this.live.composing(conversation, text);
  }

  /** The accounts typing in `conversation` now. */
  typers(conversation: string): string[] {
    return this.live.typers(conversation);
  }

  /** "online", "last seen …", or null (unknown, or this device shares no last seen). */
  presenceOf(account: string): PresenceShown {
    return this.live.presenceOf(account);
  }

  /** "Share last seen and online": off, this device sends no presence and shows no one's. */
  get sharesLastSeen(): boolean {
    return this.live.sharing;
  }

  setShareLastSeen(on: boolean): Promise<void> {
    return this.live.setSharing(on);
  }

  /** The page is visible (presence says `online` to recent direct peers) or hidden (`offline`). */
  setVisible(visible: boolean): void {
    this.live.setVisible(visible);
  }

  // --- reactions, edits, deletes, search (§15) -------------------------------------------------------
  /** This account's reaction to a message; "" takes it back. */
  react(messageId: string, emoji: string): Promise<void> {
    return this.changes.react(messageId, emoji);
  }

  edit(messageId: string, text: string): Promise<void> {
    return this.changes.edit(messageId, text);
  }

  /** Delete a message of this account for everyone. */
  deleteForEveryone(messageId: string): Promise<void> {
    return this.changes.remove(messageId);
  }

  /** Whether the menu offers to edit or delete `message` now (own message, within the time limit). */
  can(kind: "edit" | "delete", message: ChatMessage): boolean {
    return this.changes.can(kind, message);
  }

  /** Messages on this device whose text, caption or file name contains `query`, newest first. */
  search(query: string): ChatMessage[] {
    return this.changes.search(query);
  }

  message(id: string): ChatMessage | undefined {
    return this.device.messages.get(id);
  }

  /** Retries a failed message (same id: receivers that already have it drop the copy). */
  retry(messageId: string): Promise<void> {
    return this.outbox.retry(messageId);
  }

  /** The person looked at a conversation: mark its messages read and tell their senders. */
  markRead(conversation: string): void {
    this.outbox.markRead(conversation);
  }

  /** The decrypted file of a media message as a blob: URL (downloaded, checked and cached once). */
  mediaUrl(message: ChatMessage, progress: Progress): Promise<string> {
    return this.media.url(message, progress);
  }

  // --- conversations and groups ---------------------------------------------------------------------
  /** Opens (or finds) the 1:1 chat with a handle; the contact is verified first. */
  startDirect(handle: string): Promise<string> {
    return this.chats.startDirect(handle);
  }

  createGroup(name: string, handles: string[]): Promise<string> {
    return this.device.serial(async () => {
      const groupId = await this.groups.create(name, handles);
      await this.outbox.sendGroupInfo(groupId);
      this.device.changed();
      return groupConversation(groupId);
    });
  }

  addMember(groupId: string, handle: string): Promise<void> {
    return this.device.serial(async () => {
      await this.groups.add(groupId, handle);
      await this.outbox.sendGroupInfo(groupId);
      this.device.changed();
    });
  }

  removeMember(groupId: string, accountId: string): Promise<void> {
    return this.device.serial(async () => {
      await this.groups.remove(groupId, accountId);
      this.device.changed();
    });
  }

  groupMembers(groupId: string): string[] {
    return this.groups.members(groupId);
  }

  conversationInfo(conversation: string): { peer?: string; groupId?: string } {
    return this.chats.info(conversation);
  }

  conversations(): Conversation[] {
    return this.chats.list();
  }

  messagesOf(conversation: string): readonly ChatMessage[] {
    return this.chats.messagesOf(conversation);
  }
}
