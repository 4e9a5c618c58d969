/**
 * Deleting an IndexedDB database as a wipe needs it: done, not merely asked for. A delete is "blocked"
 * while a connection is open, including this page's own that were just closed but still finish their
 * transactions (a background read, say); resolving on "blocked" would report a wipe as done while the
 * records are still there, and the store key's own delete (./atRest.ts) would then keep the key too.
 * So a blocked delete is waited for a while; past that, another tab must be holding the database, and
 * Chromium deletes it once that tab lets go.
 */

const BLOCKED_WAIT_MS = 3_000;

export function deleteDatabase(name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let giveUp: ReturnType<typeof setTimeout> | undefined;
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = () => {
      clearTimeout(giveUp);
      resolve();
    };
    request.onerror = () => {
      clearTimeout(giveUp);
      reject(request.error ?? new Error(`deleting the database ${name} failed`));
    };
    request.onblocked = () => {
      giveUp ??= setTimeout(resolve, BLOCKED_WAIT_MS);
    };
  });
}
