// Test-only entry (built by `vite build --mode test` into dist-test/, never into dist/): exposes the
// Olm/Megolm modules to Playwright so tests/e2ecrypto can drive them against vodozemac.
import * as e2e from "../src/e2e";
import { ed25519Sign, importEd25519 } from "../src/e2e/primitives";
import { GroupSessions } from "../src/messenger/groupSessions";
import { OlmDevice } from "../src/messenger/olmDevice";

/** Objects the tests keep between page.evaluate calls, by name. */
const objects = new Map<string, unknown>();

/** A key source that hands out the given X25519 secrets (base64) in order, then fails. */
function queuedKeys(secrets: string[]): e2e.X25519KeySource {
  const queue = [...secrets];
  return async () => {
    const next = queue.shift();
    if (next === undefined) throw new Error("test key source exhausted");
    return e2e.importX25519(e2e.decodeBase64(next));
  };
}

/** Runs `work` and reports a thrown error as {error: class name} instead of rejecting. */
async function outcome<T>(
  work: () => Promise<T>,
): Promise<{ ok: T } | { error: string; message: string; typed: boolean }> {
  try {
    return { ok: await work() };
  } catch (error) {
    if (!(error instanceof Error)) return { error: String(error), message: "", typed: false };
    return { error: error.name, message: error.message, typed: error instanceof e2e.E2EError };
  }
}

/** An Ed25519 signature by the key with this seed (to forge test messages signed by a known key). */
async function signWithSeed(seed: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  return ed25519Sign((await importEd25519(seed)).privateKey, message);
}

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
const fromUtf8 = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

declare global {
  interface Window {
    e2e: typeof e2e;
    e2eTest: {
      objects: Map<string, unknown>;
      queuedKeys: typeof queuedKeys;
      outcome: typeof outcome;
      utf8: typeof utf8;
      fromUtf8: typeof fromUtf8;
      signWithSeed: typeof signWithSeed;
      GroupSessions: typeof GroupSessions;
      OlmDevice: typeof OlmDevice;
    };
    e2eReady: boolean;
  }
}

window.e2e = e2e;
window.e2eTest = { objects, queuedKeys, outcome, utf8, fromUtf8, signWithSeed, GroupSessions, OlmDevice };
window.e2eReady = true;
