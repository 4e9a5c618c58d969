/**
 * IndexedDB persistence: one database per role, one object store, one record ("state"), sealed under the
 * origin's store key (./atRest.ts): private keys are kept wrapped, never as Chromium's serialised
 * CryptoKeys. A record from before sealing is read once and written back sealed.
 */
import { isSealed, seal, unseal } from "./atRest";
import { deleteDatabase } from "./deleteDatabase";

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

  private get label(): string {
    return `${this.dbName}/${STORE}/${KEY}`;
  }

  /** The stored state, if any; never creates the database just to look. */
  async load(): Promise<T | undefined> {
    const existing = await indexedDB.databases();
    if (!existing.some((db) => db.name === this.dbName)) return undefined;
    const stored = await run<unknown>(this.dbName, "readonly", (store) => store.get(KEY));
    if (stored === undefined || isSealed(stored))
      return stored === undefined ? undefined : unseal<T>(stored, this.label);
    await this.save(stored as T); // written before sealing: seal it now
    return stored as T;
  }

  async save(value: T): Promise<void> {
    const sealed = await seal(value, this.label);
    await run(this.dbName, "readwrite", (store) => store.put(sealed, KEY));
  }

  /** Deletes the whole database (keys included). */
  wipe(): Promise<void> {
    return deleteDatabase(this.dbName);
  }
}
