import { afterEach, describe, expect, test, vi } from "vitest";
import { Notifier } from "../../src/messenger/notifier";

// The device's choice "Show names and message text" is read from its own IndexedDB database: Node has
// none, so each test gives the page the one answer that matters here.
function withDatabases(databases: () => Promise<IDBDatabaseInfo[]>): void {
  vi.stubGlobal("navigator", {});
  vi.stubGlobal("indexedDB", { databases });
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("whether notifications show names and message text", () => {
  test("on a device's first use (nothing stored yet) they do: the default", async () => {
    withDatabases(() => Promise.resolve([]));
    const notifier = new Notifier(() => undefined);
    await notifier.bind(null, "device1");
    expect(notifier.showsPreviews).toBe(true);
  });

  test("when the stored choice cannot be read they do not: it may have been off", async () => {
    withDatabases(() => Promise.reject(new DOMException("The database is unavailable", "UnknownError")));
    const notifier = new Notifier(() => undefined);
    await notifier.bind(null, "device1");
    expect(notifier.showsPreviews).toBe(false);
  });
});
