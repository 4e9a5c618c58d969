/**
 * The messenger's IndexedDB database, one per device (`lockstep-messenger-<device id>`): a `state` record
 * (Olm/Megolm pickles with their non-extractable CryptoKeys, queue position, contacts, groups) and the
 * `messages` of every conversation. `save` writes both in one transaction, so ratchets, `last_seq` and
 * the messages they produced reach disk together, before the server is told to forget the ciphertext.
 */

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

  async load<S, M>(): Promise<{ state: S | undefined; messages: M[] }> {
    const tx = this.db.transaction([KV, MESSAGES], "readonly");
    const state = await request(tx.objectStore(KV).get("state") as IDBRequest<S | undefined>);
    const messages = await request(tx.objectStore(MESSAGES).getAll() as IDBRequest<M[]>);
    return { state, messages };
  }

  save(state: unknown, messages: Iterable<unknown>): Promise<void> {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction([KV, MESSAGES], "readwrite");
      tx.objectStore(KV).put(state, "state");
      const store = tx.objectStore(MESSAGES);
      for (const message of messages) store.put(message);
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
