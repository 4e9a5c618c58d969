/**
 * Contacts: accounts looked up on the server and verified here (messaging.md §3), the twin of
 * client/messaging/contacts.py. Nothing the server hands out (an account's key, its primary-signed device
 * list, each device's signed key bundle) is trusted before it verifies. A handle is pinned to the first
 * account key seen for it (a change is refused, like a safety-number change), and a device list may never
 * go back to an older version (rollback). Verified contacts are cached for the page.
 */
import { b64uEncode } from "../crypto/base64";
import { equalBytes } from "../crypto/bytes";
import { ServerError } from "../net/socket";
import type { Device } from "./device";
import { MessengerError } from "./errors";
import {
  type Contact,
  type DeviceKeys,
  type FormerDevice,
  KeyBundleError,
  verifyFormerDevice,
  verifyLookup,
} from "./keys";

/** Accounts per batched `accounts.lookup` (messaging.md §7.1). */
const LOOKUP_AT_ONCE = 128;

export class Contacts {
  private readonly verified = new Map<string, Contact>();

  constructor(private readonly device: Device) {}

  /** An account's verified devices and keys, cached for this page unless `refresh`. */
  async get(query: { handle?: string; accountId?: string }, refresh = false): Promise<Contact> {
    let accountId = query.accountId;
    const handle = query.handle === undefined ? undefined : normalHandle(query.handle);
    if (handle !== undefined) accountId = accountId ?? this.device.state.handles[handle];
    if (accountId !== undefined && !refresh) {
      const cached = this.verified.get(accountId);
      if (cached) return cached;
    }
    let result: Record<string, unknown>;
    try {
      result = await this.device.request(
        "accounts.lookup",
        accountId === undefined ? { handle } : { account_id: accountId },
      );
    } catch (error) {
      if (error instanceof ServerError && error.code === "account_unknown")
        throw new MessengerError(`There is no account ${handle ? "@" + handle : accountId} on this server.`);
      throw error;
    }
    return this.accept(result, { handle, accountId });
  }

  /**
   * Verified contacts for the accounts in `keyed` (account id → the device ids the server says can
   * receive), in that order; a cached one is used while its devices still match, the rest are looked up
   * LOOKUP_AT_ONCE accounts per request (a large group's members, messaging.md §6.1).
   */
  async getMany(keyed: Map<string, Set<string>>, refresh = false): Promise<Contact[]> {
    const matches = (contact: Contact | undefined, devices: Set<string>): boolean =>
      contact !== undefined &&
      contact.keys.size === devices.size &&
      [...contact.keys.keys()].every((d) => devices.has(d));
    const stale = [...keyed].filter(([id, devices]) => refresh || !matches(this.verified.get(id), devices));
    await this.lookUp(
      "account_ids",
      stale.map(([id]) => id),
    );
    return [...keyed.keys()].map((accountId) => {
      const contact = this.verified.get(accountId);
      if (!contact) throw new MessengerError(`There is no account ${accountId} on this server.`);
      return contact;
    });
  }

  /**
   * Verified contacts for `handles` (with or without "@", any case), in that order, each once: looked up
   * LOOKUP_AT_ONCE per request, so a group of a thousand members costs eight look-ups of the server's
   * rate limit, not a thousand (the twin of contacts.py `get_by_handles`).
   */
  async getByHandles(handles: string[]): Promise<Contact[]> {
    const wanted = [...new Set(handles.map(normalHandle))];
    const found = await this.lookUp("handles", wanted);
    return wanted.map((handle) => {
      const contact = found.get(handle);
      if (!contact) throw new MessengerError(`There is no account @${handle} on this server.`);
      return contact;
    });
  }

  /**
   * Looks `wanted` up (account ids or handles, as `field` says) LOOKUP_AT_ONCE per request and verifies each
   * (messaging.md §7.1; the twin of contacts.py `_look_up`): asked → contact. One the server does not know
   * is left out; one that does not verify throws, or is left out too if `skipUnverified`.
   */
  private async lookUp(
    field: "account_ids" | "handles",
    wanted: string[],
    skipUnverified = false,
  ): Promise<Map<string, Contact>> {
    const contacts = new Map<string, Contact>();
    for (let start = 0; start < wanted.length; start += LOOKUP_AT_ONCE) {
      const batch = wanted.slice(start, start + LOOKUP_AT_ONCE);
      const found = (await this.device.request("accounts.lookup", { [field]: batch })).accounts as Record<
        string,
        Record<string, unknown> | undefined
      >;
      for (const key of batch) {
        const result = found[key];
        if (!result) continue;
        try {
          contacts.set(key, await this.accept(result, field === "handles" ? { handle: key } : { accountId: key }));
        } catch (error) {
          if (!skipUnverified) throw error;
        }
      }
    }
    return contacts;
  }

  /** Verifies one account of an `accounts.lookup` answer and keeps it. */
  private async accept(
    result: Record<string, unknown>,
    asked: { handle?: string; accountId?: string },
  ): Promise<Contact> {
    const contact = await verifyLookup(result);
    this.check(contact, asked);
    const info = contact.account;
    const state = this.device.state; // now, not before the awaits: `save` replaces the record
    state.handles[info.handle] = info.id;
    state.contacts[info.id] = {
      handle: info.handle,
      display_name: info.display_name,
      key: info.key,
      version: contact.list.version,
    };
    this.verified.set(info.id, contact);
    return contact;
  }

  /** A verified look-up must also be the account asked for, keep its pinned key and never roll back. */
  private check(contact: Contact, asked: { handle?: string; accountId?: string }): void {
    const { identity, state } = this.device;
    const info = contact.account;
    if (
      (asked.accountId === undefined && info.handle !== asked.handle) ||
      (asked.accountId !== undefined && info.id !== asked.accountId)
    ) {
      throw new KeyBundleError("the server answered a look-up with another account; nothing was sent");
    }
    if (info.id === identity.accountId && info.key !== b64uEncode(identity.accountKey)) {
      throw new KeyBundleError("the server sent a different key for this very account");
    }
    const pinned = state.handles[info.handle];
    if (pinned !== undefined && pinned !== info.id) {
      throw new KeyBundleError(
        `@${info.handle}'s account key changed since you first talked; this may be another person (or the server) using that handle, so nothing was sent`,
      );
    }
    if (info.id === identity.accountId && contact.list.version < identity.listVersion) {
      throw new KeyBundleError("the server sent an older device list for this account (rollback)");
    }
    const known = state.contacts[info.id];
    if (known && known.key !== info.key)
      throw new KeyBundleError(`@${info.handle}'s account key changed; nothing was sent`);
    if (known && contact.list.version < known.version)
      throw new KeyBundleError(`the server sent an older device list for @${info.handle} (rollback)`);
  }

  /** Drops the cached devices of an account (its list changed): the next `get` looks it up again. */
  forget(accountId: string): void {
    this.verified.delete(accountId);
  }

  /** This device has verified the account before (it has a contact record). */
  knows(accountId: string): boolean {
    return this.device.state.contacts[accountId] !== undefined;
  }

  /**
   * Looks up (and verifies) the accounts this device has no contact record of yet, so that a group's members
   * show by name: all of a 1,024-member group's in eight requests. One that does not verify stays unknown
   * (shown as "Someone"); a look-up refused or cut off is tried again at the next change.
   */
  async learn(accounts: Iterable<string>): Promise<void> {
    const unknown = [...new Set(accounts)].filter((id) => !this.knows(id));
    await this.lookUp("account_ids", unknown, true).catch(() => undefined);
  }

  handleOf(accountId: string): string | undefined {
    return this.device.state.contacts[accountId]?.handle;
  }

  nameOf(accountId: string): string {
    if (accountId === this.device.accountId) return "You";
    const c = this.device.state.contacts[accountId];
    return c ? c.display_name || `@${c.handle}` : "Someone";
  }

  /** "Name (@handle)" for a conversation's title, or undefined for an account never verified here. */
  titleOf(accountId: string): string | undefined {
    const c = this.device.state.contacts[accountId];
    return c ? `${c.display_name} (@${c.handle})` : undefined;
  }

  /**
   * Checks an Olm sender key against the account's signed list. A device unlinked since comes back as a
   * FormerDevice: its caller checks the message was sent before the unlink (§3.1).
   */
  async checkSenderKey(accountId: string, deviceId: string, senderKey: Uint8Array): Promise<FormerDevice | null> {
    const sameKey = (keys: DeviceKeys | undefined): boolean =>
      keys !== undefined && equalBytes(keys.identityKey, senderKey);
    if (sameKey((await this.get({ accountId })).keys.get(deviceId))) return null;
    const contact = await this.get({ accountId }, true);
    if (sameKey(contact.keys.get(deviceId))) return null;
    if (!contact.list.devices.some((d) => d.device_id === deviceId)) {
      const result = await this.device.request("accounts.lookup", { account_id: accountId, former_device: deviceId });
      if (result.former_device) {
        const former = await verifyFormerDevice(result.former_device, contact, deviceId);
        if (sameKey(former.keys)) return former;
      }
    }
    throw new KeyBundleError("the sending device's key is not in its account's signed device list");
  }
}

/** A handle as accounts are looked up by it: lower case, without "@". */
function normalHandle(handle: string): string {
  return handle.replace(/^@/, "").trim().toLowerCase();
}
