/**
 * The messenger's IndexedDB database, one per device (`lockstep-messenger-<device id>`), version 2. What a
 * batch of messages costs to write does not depend on how much history the device holds:
 *
 *   kv        sealed sections of the messenger's state, one record each: `core` (queue position, contacts,
 *             groups, chats…), `olm` (the Olm account), `olm-sessions/<number>` (the Olm sessions with one
 *             peer device, written only when they changed), `megolm` (group sessions), the store's
 *             own `chat-numbers` (conversation id → a number used in the index below), and one summary per
 *             conversation, `summary/<number>`: its newest message and unread count, what the chat list
 *             shows before any message is unsealed
 *   messages  one record per message, `{id, chat, ts, sealed}`; index `chat_ts` on [chat, ts], so one
 *             conversation's newest (or older) messages are read without opening the others
 *   seen      one record per message id this device handled, `{id, n, sealed}` (n counts up); index `n`,
 *             so the oldest are dropped once there are more than MAX_SEEN_IDS
 *
 * `commit` writes in one transaction the sections it is given (each only if it changed since it was last
 * written), the messages it is given and the ids seen since the last commit: ratchets, queue
 * position and the messages they produced reach disk together, before the server forgets the ciphertext.
 *
 * `load` opens the sections, summaries and seen ids, never a message: a page with 10,000 messages starts as
 * fast as an empty one. Messages are unsealed a conversation at a time (`chatMessages`, in slices that let
 * the page paint in between) or a page at a time (`page`), when the messenger needs them (./storedChats.ts).
 *
 * Every section and message is sealed under the origin's store key (../store/atRest.ts), a message under
 * the label `<database>/messages/<id>` as in version 1, a seen id under `<database>/seen/<id>`. What stays
 * visible: message ids (128 random bits), a message's time and the number (not the id) of its conversation,
 * and the order of seen ids, so the indexes can be read in order without opening anything.
 *
 * Version 1 kept everything but the messages in one `state` record, rewritten per message with the whole
 * list of seen ids. `load` hands such a record over as `legacy`, with every message (they have no index
 * fields yet); the messenger splits it into sections and commits them with `dropLegacy` (every message is
 * written again with its index fields then).
 */
import {
  type Encoded,
  encodeRecord,
  isSealed,
  storeKeyNow,
  sameEncoding,
  seal,
  sealEncoded,
  type SealedRecord,
  unseal,
} from "../store/atRest";
import { deleteDatabase } from "../store/deleteDatabase";
import { Slicer, yieldToPage } from "./yieldToPage";

const VERSION = 2;
const KV = "kv";
const MESSAGES = "messages";
const SEEN = "seen";
const CHAT_TS = "chat_ts";
const SEEN_ORDER = "n";
const LEGACY_STATE = "state";
const CHAT_NUMBERS = "chat-numbers";
const SUMMARY = "summary/";
const OLM_SESSIONS = "olm-sessions/";
/** Records read from the index at once while unsealing a whole conversation. */
const READ_CHUNK = 500;
/** Ids of handled messages kept to drop copies that come again (retries, a lost acknowledgement). */
export const MAX_SEEN_IDS = 20_000;
/** Seen ids are pruned in steps of this many, not on every commit. */
const PRUNE_STEP = 1_000;

export type Section = "core" | "olm" | "megolm";

/** What the store needs of a message to index it. */
export interface Indexed {
  id: string;
  conversation: string;
  ts: number;
}

/** What the chat list shows of a conversation: its newest message and how many incoming ones are unread. */
export interface Summary<M> {
  last?: M;
  unread: number;
}

export interface Loaded<M> {
  sections: Partial<Record<Section, unknown>>;
  /** A version 1 state record (everything in one), to be split and committed with `dropLegacy`. */
  legacy: unknown;
  /** With `legacy` only: every message (version 1 wrote no index fields, so no chat can be read alone). */
  legacyMessages: M[];
  /** Every conversation with stored messages, and the summaries written of them (conversation → summary). */
  conversations: string[];
  summaries: Map<string, Summary<M>>;
  /** One peer device's Olm sessions per record, by the number the `olm` section gives it. */
  olmSessions: Map<number, unknown>;
  seen: string[];
}

export interface Commit<M> {
  sections?: Partial<Record<Section, unknown>>;
  messages?: Iterable<M>;
  /** Summaries of the conversations whose messages changed (conversation → summary). */
  summaries?: ReadonlyMap<string, Summary<M>>;
  /** The Olm sessions of the peers whose sessions changed (record number → sessions). */
  olmSessions?: ReadonlyMap<number, unknown>;
  seen?: Iterable<string>;
  dropLegacy?: boolean;
}

interface MessageRecord {
  id: string;
  chat?: number;
  ts?: number;
  sealed: unknown;
}

export function databaseName(deviceId: string): string {
  return `lockstep-messenger-${deviceId}`;
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("IndexedDB request failed"));
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
  });
}

/**
 * `work` on every item, results in order, in slices with a turn for the page between. `seal` and `unseal`
 * do their JSON and encoding synchronously when called (~0.1–0.3 ms a record), so a batch of hundreds
 * started at once would be one long task: each slice starts records until it has spent SLICE_MS doing so,
 * then waits for them all (their WebCrypto calls run side by side) before the page's turn.
 */
async function inSlices<T, R>(
  items: readonly T[],
  work: (item: T) => Promise<R>,
  priority: Parameters<typeof yieldToPage>[0] = "continue",
): Promise<R[]> {
  const out: R[] = [];
  const slicer = new Slicer();
  let next = 0;
  while (next < items.length) {
    if (next) await yieldToPage(priority);
    slicer.restart();
    const slice: Promise<R>[] = [];
    do slice.push(work(items[next++] as T));
    while (next < items.length && !slicer.due());
    out.push(...(await Promise.all(slice)));
  }
  return out;
}

/**
 * Places a transaction's writes a slice at a time: each `put` clones its record on the page's thread
 * (~0.1 ms), so a batch of hundreds placed at once is one long task. The next slice is placed when the
 * last request of the one before succeeds, which keeps the transaction open: all the writes still commit
 * together or not at all, and the page gets a turn between slices.
 */
function placeInSlices(writes: readonly (() => IDBRequest)[]): void {
  const slicer = new Slicer();
  let next = 0;
  const slice = (): void => {
    slicer.restart();
    let last: IDBRequest | undefined;
    while (next < writes.length && (!last || !slicer.due())) last = (writes[next++] as () => IDBRequest)();
    if (last && next < writes.length) last.onsuccess = slice;
  };
  slice();
}

/** The device's database is gone (another tab wiped it): nothing was opened or made. */
export class DatabaseGone extends Error {
  override name = "DatabaseGone";
}

export class MessageStore {
  private chatNumbers = new Map<string, number>();
  private numbersDirty = false;
  /**
   * Each section as last written: one that did not change is not sealed and written again. A batch that
   * moves no ratchet (marking messages read, say) then writes no Olm state, however many sessions it holds.
   */
  private sectionsWritten = new Map<string, Encoded>();
  private seenCount = 0;
  private nextSeen = 1;

  private constructor(private readonly db: IDBDatabase) {}

  /**
   * `existing`: open only a database that is there. A tab that took the device's lock over from another
   * tab must not make the database afresh: that tab deletes it (an unlink) before it lets the lock go, so
   * one made now would be a new device's keys and records in a browser that says "logged out".
   */
  static open(deviceId: string, existing = false): Promise<MessageStore> {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(databaseName(deviceId), VERSION);
      req.onupgradeneeded = (event) => {
        const db = req.result;
        if (existing && event.oldVersion === 0) {
          // Aborting the upgrade of a database made by this open deletes it again (IndexedDB §5.8).
          (req.transaction as IDBTransaction).abort();
          return;
        }
        if (event.oldVersion < 1) {
          db.createObjectStore(KV);
          db.createObjectStore(MESSAGES, { keyPath: "id" });
        }
        const messages = (req.transaction as IDBTransaction).objectStore(MESSAGES);
        if (!messages.indexNames.contains(CHAT_TS)) messages.createIndex(CHAT_TS, ["chat", "ts"]);
        if (!db.objectStoreNames.contains(SEEN))
          db.createObjectStore(SEEN, { keyPath: "id" }).createIndex(SEEN_ORDER, "n");
      };
      req.onsuccess = () => resolve(new MessageStore(req.result));
      req.onerror = () =>
        reject(
          existing && req.error?.name === "AbortError"
            ? new DatabaseGone(`the database ${databaseName(deviceId)} was deleted`)
            : (req.error ?? new Error("IndexedDB open failed")),
        );
    });
  }

  /** Where a record lives (`database/object store/key`): the additional data its seal is bound to. */
  private label(store: string, key: string): string {
    return `${this.db.name}/${store}/${key}`;
  }

  /** What the messenger starts with: sections, conversation summaries and seen ids (no message). */
  async load<M extends Indexed>(): Promise<Loaded<M>> {
    const tx = this.db.transaction([KV, MESSAGES, SEEN], "readonly");
    const kv = tx.objectStore(KV);
    const seenStore = tx.objectStore(SEEN);
    const [keys, values, seen, newestSeen] = await Promise.all([
      request(kv.getAllKeys()),
      request(kv.getAll() as IDBRequest<unknown[]>),
      request(seenStore.getAllKeys() as IDBRequest<string[]>), // the ids are the keys: nothing to open
      request(seenStore.index(SEEN_ORDER).openKeyCursor(null, "prev")),
    ]);
    const storeKey = await storeKeyNow();
    const opened = new Map<string, unknown>();
    await Promise.all(
      keys.map(async (key, i) => {
        const value = values[i];
        const name = typeof key === "string" ? key : "";
        opened.set(name, isSealed(value) ? await unseal(value, this.label(KV, name), storeKey) : value);
      }),
    );
    const numbers = opened.get(CHAT_NUMBERS);
    if (numbers && typeof numbers === "object")
      this.chatNumbers = new Map(Object.entries(numbers as Record<string, number>));
    const sections: Partial<Record<Section, unknown>> = {};
    for (const section of ["core", "olm", "megolm"] as const)
      if (opened.has(section)) sections[section] = opened.get(section);
    for (const [name, value] of Object.entries(sections)) this.sectionsWritten.set(name, encodeRecord(value));
    const summaries = new Map<string, Summary<M>>();
    for (const [conversation, number] of this.chatNumbers) {
      const summary = opened.get(`${SUMMARY}${number}`) as Summary<M> | undefined;
      if (summary) summaries.set(conversation, summary);
    }
    const olmSessions = new Map<number, unknown>();
    for (const [name, value] of opened)
      if (name.startsWith(OLM_SESSIONS)) olmSessions.set(Number(name.slice(OLM_SESSIONS.length)), value);
    this.seenCount = seen.length;
    this.nextSeen = (typeof newestSeen?.key === "number" ? newestSeen.key : 0) + 1;
    const legacy = opened.get(LEGACY_STATE);
    const legacyMessages = legacy === undefined ? [] : await this.allMessages<M>(storeKey);
    return {
      sections,
      legacy,
      legacyMessages,
      conversations: [...this.chatNumbers.keys()],
      summaries,
      olmSessions,
      seen,
    };
  }

  /** Every stored message (only to migrate a version 1 store, whose messages have no index fields). */
  private async allMessages<M>(storeKey: CryptoKey): Promise<M[]> {
    const tx = this.db.transaction(MESSAGES, "readonly");
    const stored = await request(tx.objectStore(MESSAGES).getAll() as IDBRequest<MessageRecord[]>);
    return this.unsealAll<M>(stored, storeKey);
  }

  /**
   * Every message of one conversation in index order (time, then id), read READ_CHUNK records at a time and
   * unsealed in the background: what the page does meanwhile, such as reading an opened chat's newest page,
   * is not held up by one large read or one long structured clone of thousands of records.
   */
  async chatMessages<M>(conversation: string): Promise<M[]> {
    const chat = this.chatNumbers.get(conversation);
    if (chat === undefined) return [];
    const storeKey = await storeKeyNow();
    const out: M[] = [];
    // The next read starts at time `from`, inclusive; `taken` are the ids already read at that time. The
    // index orders records of one time by id, so those come first again, and asking for that many more
    // always moves on, however many messages share a millisecond.
    let from = -Infinity;
    let taken = new Set<string>();
    for (;;) {
      const index = this.db.transaction(MESSAGES, "readonly").objectStore(MESSAGES).index(CHAT_TS);
      const wanted = READ_CHUNK + taken.size;
      const range = IDBKeyRange.bound([chat, from], [chat, Infinity]);
      const records = await request(index.getAll(range, wanted) as IDBRequest<MessageRecord[]>);
      const fresh = records.filter((r) => !(r.ts === from && taken.has(r.id)));
      out.push(...(await this.unsealAll<M>(fresh, storeKey, "background")));
      if (records.length < wanted) return out;
      const lastTs = (records[records.length - 1] as MessageRecord).ts ?? from;
      taken = new Set(records.filter((r) => r.ts === lastTs).map((r) => r.id));
      from = lastTs;
      await yieldToPage("background");
    }
  }

  private unsealAll<M>(
    records: MessageRecord[],
    storeKey: CryptoKey,
    priority: Parameters<typeof yieldToPage>[0] = "continue",
  ): Promise<M[]> {
    return inSlices(
      records,
      (record) =>
        isSealed(record.sealed)
          ? unseal<M>(record.sealed, this.label(MESSAGES, record.id), storeKey)
          : Promise.resolve(record as unknown as M),
      priority,
    );
  }

  /** The newest `limit` messages of a conversation older than `before` (ms), newest first. */
  async page<M>(conversation: string, limit: number, before = Number.MAX_SAFE_INTEGER): Promise<M[]> {
    const chat = this.chatNumbers.get(conversation);
    if (chat === undefined || limit <= 0) return [];
    const index = this.db.transaction(MESSAGES, "readonly").objectStore(MESSAGES).index(CHAT_TS);
    const range = IDBKeyRange.bound([chat, -Infinity], [chat, before], false, true);
    const records: MessageRecord[] = [];
    await new Promise<void>((resolve, reject) => {
      const cursor = index.openCursor(range, "prev");
      cursor.onsuccess = () => {
        const at = cursor.result;
        if (!at || records.length >= limit) {
          resolve();
          return;
        }
        records.push(at.value as MessageRecord);
        at.continue();
      };
      cursor.onerror = () => reject(cursor.error ?? new Error("IndexedDB cursor failed"));
    });
    const storeKey = await storeKeyNow();
    return Promise.all(records.map((r) => unseal<M>(r.sealed as SealedRecord, this.label(MESSAGES, r.id), storeKey)));
  }

  /** Writes sections, messages and newly seen ids in one transaction (sealed first: WebCrypto is asynchronous). */
  async commit<M extends Indexed>(changes: Commit<M>): Promise<void> {
    const storeKey = await storeKeyNow();
    const sections: [string, Promise<SealedRecord>][] = [];
    const encodedSections = new Map<string, Encoded>();
    for (const [name, value] of Object.entries(changes.sections ?? {})) {
      const encoded = encodeRecord(value);
      if (sameEncoding(this.sectionsWritten.get(name), encoded)) continue;
      encodedSections.set(name, encoded);
      sections.push([name, sealEncoded(encoded, this.label(KV, name), storeKey)]);
    }
    const messages = [...(changes.messages ?? [])];
    for (const message of messages) this.chatNumber(message.conversation);
    for (const [conversation, summary] of changes.summaries ?? []) {
      const key = `${SUMMARY}${this.chatNumber(conversation)}`;
      sections.push([key, seal(summary, this.label(KV, key), storeKey)]);
    }
    for (const [number, sessions] of changes.olmSessions ?? []) {
      const key = `${OLM_SESSIONS}${number}`;
      sections.push([key, seal(sessions, this.label(KV, key), storeKey)]);
    }
    const numbersWritten = this.numbersDirty;
    if (numbersWritten)
      sections.push([CHAT_NUMBERS, seal(Object.fromEntries(this.chatNumbers), this.label(KV, CHAT_NUMBERS), storeKey)]);
    const records = await inSlices(messages, async (m): Promise<MessageRecord> => ({
      id: m.id,
      chat: this.chatNumbers.get(m.conversation),
      ts: m.ts,
      sealed: await seal(m, this.label(MESSAGES, m.id), storeKey),
    }));
    const sealedSections = await Promise.all(sections.map(async ([name, sealing]) => [name, await sealing] as const));
    // Nothing is written unsealed: a seen record holds its id sealed too (the id is also its key).
    const seen = await inSlices([...(changes.seen ?? [])], async (id) => ({
      id,
      sealed: await seal(id, this.label(SEEN, id), storeKey),
    }));
    if (!sealedSections.length && !records.length && !seen.length && !changes.dropLegacy) return;

    const tx = this.db.transaction([KV, MESSAGES, SEEN], "readwrite");
    const finished = done(tx);
    const kv = tx.objectStore(KV);
    const store = tx.objectStore(MESSAGES);
    const seenStore = tx.objectStore(SEEN);
    const writes: (() => IDBRequest)[] = sealedSections.map(
      ([name, sealed]) =>
        () =>
          kv.put(sealed, name),
    );
    if (changes.dropLegacy) writes.push(() => kv.delete(LEGACY_STATE));
    for (const record of records) writes.push(() => store.put(record));
    for (const record of seen) {
      const numbered = { ...record, n: this.nextSeen++ };
      writes.push(() => seenStore.put(numbered));
    }
    placeInSlices(writes);
    this.seenCount += seen.length;
    if (this.seenCount > MAX_SEEN_IDS + PRUNE_STEP) {
      const excess = this.seenCount - MAX_SEEN_IDS;
      let deleted = 0;
      const cursor = seenStore.index(SEEN_ORDER).openCursor();
      cursor.onsuccess = () => {
        const at = cursor.result;
        if (!at || deleted >= excess) return;
        at.delete();
        deleted++;
        at.continue();
      };
      this.seenCount -= excess;
    }
    await finished;
    // Only what reached disk counts as written (a failed commit writes it all again next time).
    for (const [name, encoded] of encodedSections) this.sectionsWritten.set(name, encoded);
    if (numbersWritten) this.numbersDirty = false;
  }

  /** The number of a conversation in the index (a new one is numbered, and written with the next commit). */
  private chatNumber(conversation: string): number {
    let number = this.chatNumbers.get(conversation);
    if (number === undefined) {
      number = this.chatNumbers.size + 1;
      this.chatNumbers.set(conversation, number);
      this.numbersDirty = true;
    }
    return number;
  }

  close(): void {
    this.db.close();
  }

  /** Deletes a device's messenger database (keys, sessions and messages), e.g. once it was unlinked. */
  static wipe(deviceId: string): Promise<void> {
    return deleteDatabase(databaseName(deviceId)).catch(() => undefined);
  }
}
