/**
 * IndexedDB persistence: one database per role, one object store, one record ("state").
 * CryptoKeys are stored as structured clones, so non-extractable private keys stay non-extractable.
 */

const STORE = "state";
const KEY = "current";

function openDb(name: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(name, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore(STORE);
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB open failed"));
  });
}

function run<T>(name: string, mode: IDBTransactionMode, action: (store: IDBObjectStore) => IDBRequest): Promise<T> {
  return openDb(name).then(
    (db) =>
      new Promise<T>((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        const request = action(tx.objectStore(STORE));
        tx.oncomplete = () => {
          db.close();
          resolve(request.result as T);
        };
        tx.onerror = tx.onabort = () => {
          db.close();
          reject(tx.error ?? new Error("IndexedDB transaction failed"));
        };
      }),
  );
}

export class StateStore<T> {
  constructor(readonly dbName: string) {}

  /** The stored state, if any; never creates the database just to look. */
  async load(): Promise<T | undefined> {
    const existing = await indexedDB.databases();
    if (!existing.some((db) => db.name === this.dbName)) return undefined;
    return run<T | undefined>(this.dbName, "readonly", (store) => store.get(KEY));
  }

  async save(value: T): Promise<void> {
    await run(this.dbName, "readwrite", (store) => store.put(value, KEY));
  }

  /** Deletes the whole database (keys included). */
  wipe(): Promise<void> {
    return new Promise((resolve, reject) => {
      const request = indexedDB.deleteDatabase(this.dbName);
      request.onsuccess = () => resolve();
      request.onblocked = () => resolve();
      request.onerror = () => reject(request.error ?? new Error("IndexedDB delete failed"));
    });
  }
}
