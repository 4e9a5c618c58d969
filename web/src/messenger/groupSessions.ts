/**
 * Megolm group sessions of one device (messaging.md §6; the twin of lockstep.e2e.megolm.GroupSessions).
 * No I/O. One outbound session per group, with the devices that got its key; before each send the
 * caller passes the group's current target devices:
 *
 * - a device that got the key is no longer a target (member removed, device unlinked) → rotate;
 * - after 100 messages → rotate anyway;
 * - a new target → share the current key with it only (it reads what follows, not what came before).
 *
 * Inbound sessions are keyed by (sender device, session id), bound to the group they were shared for,
 * and remember the indexes already decrypted (replays are refused; kept in bounded space, ./seenIndexes.ts),
 * also across a re-share of the same session from an earlier index.
 */
import { b64uEncode } from "../crypto/base64";
import {
  type InboundGroupSessionPickle,
  InboundGroupSession,
  type OutboundGroupSessionPickle,
  OutboundGroupSession,
  RemoteE2EError,
  SessionMismatchError,
} from "../e2e";
import { SeenIndexes, type SeenJson } from "./seenIndexes";

export const ROTATE_AFTER_MESSAGES = 100;

export interface GroupSessionsPickle {
  outbound: Record<
    string,
    { pickle: OutboundGroupSessionPickle; sharedWith: string[]; messages: number; shareId?: string }
  >;
  inbound: {
    senderDevice: string;
    sessionId: string;
    groupId: string;
    senderKey: string;
    pickle: InboundGroupSessionPickle;
    /** Ranges (a plain list of indexes in state from before ranges). */
    seen: SeenJson | number[];
  }[];
}

interface Outbound {
  session: OutboundGroupSession;
  sharedWith: Set<string>;
  messages: number;
  /** The message id of this session's key share: one logical message, however many requests and retries
   * it takes, so a copy that reached a device is never queued for it twice (messaging.md §6.3). */
  shareId: string;
}

function newShareId(): string {
  return b64uEncode(crypto.getRandomValues(new Uint8Array(16)));
}

interface Inbound {
  session: InboundGroupSession;
  groupId: string;
  senderKey: string;
  seen: SeenIndexes;
}

/** A group message that fails a check of this layer (replay, another group's key). */
export class GroupMessageError extends RemoteE2EError {
  override name = "GroupMessageError";
}

export interface KeyShare {
  /** Devices that still need the current session key (over Olm, as a `group-key` envelope). */
  devices: string[];
  body: { group_id: string; session_id: string; session_key: string };
  rotated: boolean;
  /** The key share's message id (the same for every request and retry of this session's share). */
  messageId: string;
}

export class GroupSessions {
  private readonly outbound = new Map<string, Outbound>();
  private readonly inbound = new Map<string, Inbound>();

  static unpickle(pickle: GroupSessionsPickle): GroupSessions {
    const sessions = new GroupSessions();
    for (const [groupId, g] of Object.entries(pickle.outbound)) {
      sessions.outbound.set(groupId, {
        session: OutboundGroupSession.unpickle(g.pickle),
        sharedWith: new Set(g.sharedWith),
        messages: g.messages,
        shareId: g.shareId ?? newShareId(), // state from before share ids
      });
    }
    for (const g of pickle.inbound) {
      sessions.inbound.set(`${g.senderDevice} ${g.sessionId}`, {
        session: InboundGroupSession.unpickle(g.pickle),
        groupId: g.groupId,
        senderKey: g.senderKey,
        seen: SeenIndexes.fromJson(g.seen),
      });
    }
    return sessions;
  }

  pickle(): GroupSessionsPickle {
    const outbound: GroupSessionsPickle["outbound"] = {};
    for (const [groupId, g] of this.outbound)
      outbound[groupId] = {
        pickle: g.session.pickle(),
        sharedWith: [...g.sharedWith],
        messages: g.messages,
        shareId: g.shareId,
      };
    const inbound: GroupSessionsPickle["inbound"] = [];
    for (const [key, g] of this.inbound) {
      const [senderDevice = "", sessionId = ""] = key.split(" ");
      inbound.push({
        senderDevice,
        sessionId,
        groupId: g.groupId,
        senderKey: g.senderKey,
        pickle: g.session.pickle(),
        seen: g.seen.toJson(),
      });
    }
    return { outbound, inbound };
  }

  /** Rotates if needed and says who still needs the current session key. */
  async prepare(groupId: string, targets: Set<string>): Promise<KeyShare> {
    let current = this.outbound.get(groupId);
    const rotated =
      !current || [...current.sharedWith].some((d) => !targets.has(d)) || current.messages >= ROTATE_AFTER_MESSAGES;
    if (rotated || !current) {
      current = {
        session: await OutboundGroupSession.create(),
        sharedWith: new Set(),
        messages: 0,
        shareId: newShareId(),
      };
      this.outbound.set(groupId, current);
    }
    const shared = current.sharedWith;
    return {
      devices: [...targets].filter((d) => !shared.has(d)).sort(),
      body: {
        group_id: groupId,
        session_id: current.session.sessionId,
        session_key: await current.session.sessionKey(),
      },
      rotated,
      messageId: current.shareId,
    };
  }

  markShared(groupId: string, devices: string[]): void {
    const current = this.outbound.get(groupId);
    if (current) for (const d of devices) current.sharedWith.add(d);
  }

  forgetOutbound(groupId: string): void {
    this.outbound.delete(groupId);
  }

  async encrypt(groupId: string, plaintext: Uint8Array): Promise<{ sessionId: string; ciphertext: Uint8Array }> {
    const current = this.outbound.get(groupId);
    if (!current) throw new SessionMismatchError("prepare the group session before encrypting");
    current.messages += 1;
    return { sessionId: current.session.sessionId, ciphertext: await current.session.encrypt(plaintext) };
  }

  /** Stores a session key that came over Olm from `senderDevice` (Curve25519 `senderKey`). */
  async addInbound(
    senderDevice: string,
    senderKey: string,
    body: { group_id: string; session_id: string; session_key: string },
  ): Promise<void> {
    const session = await InboundGroupSession.fromSessionKey(body.session_key);
    if (session.sessionId !== body.session_id)
      throw new GroupMessageError("a group key whose session id does not match");
    const key = `${senderDevice} ${session.sessionId}`;
    const existing = this.inbound.get(key);
    if (existing && existing.groupId !== body.group_id)
      throw new GroupMessageError("a group key already shared for another group");
    // Keep the one reaching further back.
    if (existing && existing.session.firstKnownIndex <= session.firstKnownIndex) return;
    // A re-share from an earlier index replaces the session but not what it already decrypted: the
    // indexes seen stay seen, or every earlier message could be shown again (a replay).
    this.inbound.set(key, { session, groupId: body.group_id, senderKey, seen: existing?.seen ?? new SeenIndexes() });
  }

  /** Decrypts with the session `senderDevice` shared as `sessionId`, only for the group it was shared for. */
  async decrypt(senderDevice: string, sessionId: string, ciphertext: Uint8Array, groupId: string): Promise<Uint8Array> {
    const entry = this.inbound.get(`${senderDevice} ${sessionId}`);
    if (!entry) throw new SessionMismatchError("no group key from this device for this message");
    if (entry.groupId !== groupId) throw new GroupMessageError("a group message under another group's key");
    const result = await entry.session.decrypt(ciphertext);
    if (!entry.seen.add(result.messageIndex)) throw new GroupMessageError("a group message index already decrypted");
    return result.plaintext;
  }
}
