/**
 * The messenger's IndexedDB database, one per device (`lockstep-messenger-<device id>`): a `state` record
 * (Olm/Megolm pickles, queue position, contacts, groups) and the `messages` of every conversation. `save`
 * writes both in one transaction, so ratchets, `last_seq` and the messages they produced reach disk
 * together, before the server is told to forget the ciphertext.
 *
 * Every record is sealed under the origin's store key (../store/atRest.ts): the state as one record, each
 * message as `{id, sealed}` (its id, 128 random bits, stays visible as the key). A database written before
 * sealing is read once and written back sealed, all in one transaction.
 */
import { isSealed, openAtRest, seal, type SealedRecord, unseal } from "../store/atRest";

const KV = "kv";
const MESSAGES = "messages";

export function databaseName(deviceId: string): string {
  return `lockstep-messenger-${deviceId}`;
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("IndexedDB request failed"));
  });
}

export class MessengerDb {
  private constructor(private readonly db: IDBDatabase) {}

  static open(deviceId: string): Promise<MessengerDb> {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(databaseName(deviceId), 1);
      req.onupgradeneeded = () => {
        req.result.createObjectStore(KV);
        req.result.createObjectStore(MESSAGES, { keyPath: "id" });
      };
      req.onsuccess = () => resolve(new MessengerDb(req.result));
      req.onerror = () => reject(req.error ?? new Error("IndexedDB open failed"));
    });
  }

  /** Where a record lives (`database/object store/key`): the additional data its seal is bound to. */
  private label(store: string, key: string): string {
    return `${this.db.name}/${store}/${key}`;
  }

  /** What was stored, unchecked: the caller validates it (it may be from an older version). */
  async load(): Promise<{ state: unknown; messages: unknown[] }> {
    const tx = this.db.transaction([KV, MESSAGES], "readonly");
    const storedState = await request(tx.objectStore(KV).get("state") as IDBRequest<unknown>);
    const stored = await request(tx.objectStore(MESSAGES).getAll() as IDBRequest<unknown[]>);
    const storeKey = await openAtRest();
    const state = isSealed(storedState)
      ? await unseal<unknown>(storedState, this.label(KV, "state"), storeKey)
      : storedState;
    const messages: unknown[] = [];
    let unsealed = storedState !== undefined && !isSealed(storedState);
    for (const record of stored) {
      const sealed = (record as { sealed?: unknown }).sealed;
      if (isSealed(sealed))
        messages.push(await unseal<unknown>(sealed, this.label(MESSAGES, (record as { id: string }).id), storeKey));
      else {
        messages.push(record);
        unsealed = true;
      }
    }
    // Written before sealing: seal it all now.
    if (unsealed && state !== undefined) await this.save(state, messages as { id: string }[]);
    return { state, messages };
  }

  async save(state: unknown, messages: Iterable<{ id: string }>): Promise<void> {
    // Sealed first (WebCrypto is asynchronous), then written in one transaction.
    const storeKey = await openAtRest();
    const sealedState = await seal(state, this.label(KV, "state"), storeKey);
    const sealedMessages: { id: string; sealed: SealedRecord }[] = [];
    for (const message of messages)
      sealedMessages.push({ id: message.id, sealed: await seal(message, this.label(MESSAGES, message.id), storeKey) });
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction([KV, MESSAGES], "readwrite");
      tx.objectStore(KV).put(sealedState, "state");
      const store = tx.objectStore(MESSAGES);
      for (const message of sealedMessages) store.put(message);
      tx.oncomplete = () => resolve();
      tx.onerror = tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
    });
  }

  close(): void {
    this.db.close();
  }

  /** Deletes a device's messenger database (keys, sessions and messages), e.g. once it was unlinked. */
  static wipe(deviceId: string): Promise<void> {
    return new Promise((resolve) => {
      const req = indexedDB.deleteDatabase(databaseName(deviceId));
      req.onsuccess = req.onerror = req.onblocked = () => resolve();
    });
  }
}
