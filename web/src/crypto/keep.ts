/**
 * Private keys the app keeps. In memory they are always non-extractable CryptoKeys. When a keeper is set
 * (web/src/store/atRest.ts, by the pages before anything is stored), each key is made extractable for a
 * moment, wrapped by the keeper for storage, and handed back as a non-extractable copy: IndexedDB then
 * holds only the wrapped bytes, never the key as Chromium serialises a CryptoKey (its raw bytes).
 * Without a keeper (test pages that store nothing) keys are simply made non-extractable.
 */

/** Wraps an extractable private key for storage and returns its non-extractable twin. */
export type KeyKeeper = (extractable: CryptoKey) => Promise<CryptoKey>;

let keeper: KeyKeeper | null = null;

export function setKeyKeeper(next: KeyKeeper | null): void {
  keeper = next;
}

/** A private key from `make(extractable)`: non-extractable, and wrapped for storage if a keeper is set. */
export async function keptPrivateKey(make: (extractable: boolean) => Promise<CryptoKey>): Promise<CryptoKey> {
  return keeper ? keeper(await make(true)) : make(false);
}
