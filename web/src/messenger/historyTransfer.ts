/**
 * History for a newly linked companion (messaging.md §12), the twin of client/messaging/history.py. The
 * primary sends every companion that publishes keys and has not had one a history bundle (./history.ts: the
 * last 30 days, at most 1,000 messages, and what was not transferred), encrypted and uploaded like a file;
 * its key goes to that companion alone over Olm. A companion imports a bundle only from its own primary and
 * verifies the people in it as it would for live messages.
 */
import { findDevice } from "../link/deviceList";
import { judgedNow, onProbation, untilText } from "../link/probation";
import { probationText } from "../link/wording";
import { before } from "./chatIndex";
import type { Contacts } from "./contacts";
import type { Device } from "./device";
import { EnvelopeError, MAX_HISTORY_REQUEST, type MessageEnvelope, parseConversation } from "./envelope";
import { MessengerError } from "./errors";
import type { Groups } from "./groups";
import { type HistoryBundle, buildHistory, buildOlderHistory, readHistory } from "./history";
import type { DeviceKeys } from "./keys";
import type { MediaDescriptor } from "./media";
import type { MediaTransfer } from "./mediaTransfer";
import type { MessageChanges } from "./messageChanges";
import type { ChatMessage } from "./model";
import type { Outbox } from "./outbox";

/** The longest note of what was transferred that is shown. */
const MAX_NOTE = 500;

export class HistoryTransfer {
  constructor(
    private readonly device: Device,
    private readonly contacts: Contacts,
    private readonly groups: Groups,
    private readonly outbox: Outbox,
    private readonly media: MediaTransfer,
    private readonly changes: MessageChanges,
  ) {}

  /** What the last imported bundle says was transferred (companions). */
  get note(): string | undefined {
    return this.device.state.historyNote;
  }

  /** Primary only: a bundle to each companion that publishes keys and has not had one. A companion on
   * probation (linking.md §4.6) waits: it is not marked as served, so a sync after its probation sends it. */
  async sync(): Promise<void> {
    const device = this.device;
    if (device.identity.role !== "primary") return;
    const me = await this.contacts.get({ accountId: device.accountId }, true);
    const sentTo = new Set(device.state.historySentTo ?? []);
    const now = judgedNow(device.now(), Date.now());
    for (const keys of [...me.keys.values()].sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1))) {
      if (keys.deviceId === device.deviceId || sentTo.has(keys.deviceId)) continue;
      if (onProbation(findDevice(me.list, keys.deviceId), now)) continue;
      await this.send(keys);
      sentTo.add(keys.deviceId);
      device.state.historySentTo = [...sentTo];
      await device.save();
    }
  }

  private async send(keys: DeviceKeys, history?: HistoryBundle): Promise<void> {
    history ??= buildHistory(this.device.messages.values(), this.device.now(), this.groups.names());
    const bundle = history.bytes;
    const file = {
      name: "history.json",
      type: "application/json",
      size: bundle.length,
      read: () => Promise.resolve(bundle),
    };
    const { media } = await this.media.upload(file, "document", () => undefined);
    const body = { media, count: history.count, not_transferred: history.notTransferred, note: history.note };
    await this.outbox.sendToOwnDevice(keys, "history", body);
  }

  /**
   * Companion: ask this account's primary for up to `limit` messages older than the oldest one here
   * (§12.1); they come back as a history bundle, imported like the first.
   */
  async requestOlder(limit: number): Promise<void> {
    const device = this.device;
    const me = await this.contacts.get({ accountId: device.accountId }, true);
    const primary = me.list.devices.find((d) => d.role === "primary");
    const keys = primary ? me.keys.get(primary.device_id) : undefined;
    if (!keys) throw new MessengerError("Your phone cannot be reached for older messages right now.");
    // Where what this device holds begins, in display order (./history.ts cuts bundles in that order).
    let oldest: ChatMessage | undefined;
    for (const message of device.messages.values())
      if (message.kind !== "undecryptable" && (!oldest || before(message, oldest))) oldest = message;
    const cursor = oldest ? { before: oldest.ts, before_id: oldest.id } : { before: device.now() };
    await this.outbox.sendToOwnDevice(keys, "history-request", {
      ...cursor,
      limit: Math.min(limit, MAX_HISTORY_REQUEST),
    });
  }

  /** Primary: a companion of this account asked for older messages (§12.1): they go to that companion alone. */
  async serve(envelope: MessageEnvelope): Promise<void> {
    const device = this.device;
    if (device.identity.role !== "primary") return; // another companion's copy of the request: not ours
    const me = await this.contacts.get({ accountId: device.accountId });
    const entry = me.list.devices.find((d) => d.device_id === envelope.senderDevice);
    const keys = me.keys.get(envelope.senderDevice);
    if (envelope.senderAccount !== device.accountId || entry?.role !== "companion" || !keys)
      throw new EnvelopeError("only this account's companions ask for its history");
    if (onProbation(entry, judgedNow(device.now(), Date.now())))
      throw new EnvelopeError(probationText("no_history", { until: untilText(entry.probation_until ?? 0) }));
    const {
      before: ts,
      limit,
      before_id: beforeId,
    } = envelope.body as { before: number; limit: number; before_id?: string }; // checked
    const request = { before: ts, limit, beforeId };
    await this.send(keys, buildOlderHistory(device.messages.values(), device.now(), request, this.groups.names()));
  }

  /** A bundle from this account's primary (a Python primary sends it to new companions too). */
  async import(envelope: MessageEnvelope): Promise<void> {
    const device = this.device;
    const me = await this.contacts.get({ accountId: device.accountId });
    const entry = me.list.devices.find((d) => d.device_id === envelope.senderDevice);
    if (envelope.senderAccount !== device.accountId || !entry || entry.role !== "primary")
      throw new EnvelopeError("history comes only from this account's primary");
    const bundle = await this.media.download(envelope.body.media as MediaDescriptor, () => undefined);
    const { messages: records, groups, actions } = readHistory(bundle, device.accountId);
    for (const record of records) {
      if (device.messages.has(record.id)) continue;
      device.ensureChat(record.conversation);
      device.put(record);
      device.markSeen(record.id);
      this.changes.adopt(record);
    }
    for (const action of actions) {
      try {
        this.changes.keep(action); // what the primary shows, this device shows (§15.6)
      } catch {
        // a malformed action in a bundle changes nothing
      }
    }
    for (const { group_id: groupId, name } of groups) {
      const group = this.groups.get(groupId);
      if (!group.name) group.name = name; // a name this device learnt itself (group-info) is newer
    }
    // Who wrote, who the chats are with, and who is in each group: verified here, as for live messages.
    const people = new Set<string>();
    for (const record of records) {
      people.add(record.senderAccount);
      const peer = parseConversation(record.conversation, device.accountId).peer;
      if (peer) people.add(peer);
    }
    await this.contacts.learn(people);
    await this.groups.refresh();
    device.state.historyNote =
      typeof envelope.body.note === "string"
        ? envelope.body.note.slice(0, MAX_NOTE)
        : `${records.length} messages were transferred from your phone`;
  }
}
