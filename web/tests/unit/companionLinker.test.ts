import { describe, expect, test, vi } from "vitest";
import { b64uEncode } from "../../src/crypto/base64";
import { exportEd25519Public, generateEd25519, keyId } from "../../src/crypto/ed25519";
import { type DeviceList, signDeviceList } from "../../src/link/deviceList";
import { buildGrant } from "../../src/link/grant";
import { matchingNumber } from "../../src/link/matching";
import { decodeLinkText } from "../../src/link/qr";
import type { LinkRef } from "../../src/net/events";
import { CLOSE_UNLINKED, ServerError } from "../../src/net/socket";
import {
  type CompanionHooks,
  CompanionLinker,
  type CompanionPhase,
  type CompanionState,
} from "../../src/pages/companion/linker";
import { FakeServer, type FakeSocket, ManualClock, MemoryStore, ORIGIN } from "./fakes";

function ref(byte: number, last = false): LinkRef {
  return {
    event: "link.ref",
    ref: b64uEncode(new Uint8Array(32).fill(byte)),
    issued_at: 1_000_000,
    expires_at: 1_060_000,
    server_time: 1_000_000,
    index: byte,
    last,
  };
}

function setup(script: (socket: FakeSocket) => void = () => undefined) {
  const server = new FakeServer(script);
  const clock = new ManualClock();
  const store = new MemoryStore<CompanionState>();
  const calls = { signedIn: 0, wiped: [] as (string | undefined)[], unlinked: [] as boolean[], linked: 0 };
  const hooks: CompanionHooks<FakeSocket> = {
    opened: () => undefined,
    signedIn: () => {
      calls.signedIn += 1;
    },
    event: () => undefined,
    disconnected: () => undefined,
    devicesChanged: () => undefined,
    linked: () => {
      calls.linked += 1;
    },
    wipe: (deviceId) => {
      calls.wiped.push(deviceId);
      return Promise.resolve();
    },
    unlinked: (here) => {
      calls.unlinked.push(here);
      return Promise.resolve();
    },
  };
  const linker = new CompanionLinker(server.open, store, hooks, clock);
  return { server, clock, store, calls, linker };
}

async function phaseIs(linker: CompanionLinker<FakeSocket>, name: CompanionPhase["name"]): Promise<void> {
  await vi.waitFor(() => {
    expect(linker.phase.name).toBe(name);
  });
}

/** What the phone reads off the code on screen. */
function scan(linker: CompanionLinker<FakeSocket>) {
  const phase = linker.phase;
  if (phase.name !== "showing") throw new Error(`no code on screen (${phase.name})`);
  return decodeLinkText(phase.text, ORIGIN);
}

/** An account with a primary, and a grant for the code on screen as the phone would build it. */
async function grantFor(linker: CompanionLinker<FakeSocket>) {
  const account = await generateEd25519(false);
  const accountPublic = await exportEd25519Public(account.publicKey);
  const accountId = await keyId(accountPublic);
  const primary = await exportEd25519Public((await generateEd25519(false)).publicKey);
  const list: DeviceList = {
    v: 1,
    type: "device-list",
    account_id: accountId,
    version: 1,
    issued_at: 1,
    devices: [
      {
        device_id: await keyId(primary),
        device_key: b64uEncode(primary),
        role: "primary",
        name: "Phone",
        linked_at: 1,
      },
    ],
  };
  await signDeviceList(account.privateKey, list);
  const code = scan(linker);
  const grant = await buildGrant({
    code,
    origin: ORIGIN,
    account: { id: accountId, handle: "alice", display_name: "Alice", key: b64uEncode(accountPublic) },
    accountPrivateKey: account.privateKey,
    currentList: list,
    deviceName: "Laptop",
    now: 1_000_000,
  });
  return { grant, code };
}

describe("CompanionLinker", () => {
  test("shows each ref as a code with a fresh secret, hides it once scanned, then offers a new code", async () => {
    const { server, linker, clock } = setup();
    await linker.start();
    await phaseIs(linker, "waiting");
    expect(server.last.ops()).toEqual(["link.start"]);
    await vi.waitFor(() => {
      expect(linker.phase.name === "waiting" && linker.phase.session !== null).toBe(true);
    });

    server.last.send(ref(1));
    const first = scan(linker);
    server.last.send(ref(2, true));
    const second = scan(linker);
    expect(second.ref).toEqual(new Uint8Array(32).fill(2));
    expect(second.linkSecret).not.toEqual(first.linkSecret);
    expect(second.ephemeralKey).toEqual(first.ephemeralKey); // one session, one key pair
    expect(linker.phase.name === "showing" && linker.phase.session.last).toBe(true);
    expect(linker.secondsLeft()).toBe(60);

    const number = await matchingNumber(second.ref, second.linkSecret);
    server.last.send({ event: "link.scanned" });
    expect(linker.phase.name).toBe("scanned");
    expect(linker.secondsLeft()).toBeNull();
    await vi.waitFor(() => {
      expect(linker.phase.name === "scanned" && linker.phase.number).toBe(number); // for a phone elsewhere
    });

    server.last.send({ event: "link.idle" });
    expect(linker.phase.name).toBe("idle");
    server.last.drop(); // the server's unauthenticated deadline: wait for the click, do not reconnect
    expect(clock.pending()).toEqual([]);
    linker.newCode();
    await phaseIs(linker, "waiting");
    expect(server.sockets).toHaveLength(2);
  });

  test("a dropped socket hides the code at once, zeroes its secrets and starts a new session", async () => {
    const { server, linker, clock } = setup();
    await linker.start();
    await vi.waitFor(() => {
      expect(server.last.ops()).toContain("link.start");
    });
    server.last.send(ref(1));
    const phase = linker.phase;
    if (phase.name !== "showing") throw new Error(phase.name);
    const secrets = phase.session.refs.map((r) => r.secret);

    server.last.drop();
    expect(linker.phase).toEqual({ name: "connecting", why: "reconnecting" });
    expect(secrets.every((s) => s.every((b) => b === 0))).toBe(true);
    expect(clock.pending()).toHaveLength(1);

    clock.fire();
    await vi.waitFor(() => {
      expect(server.sockets).toHaveLength(2);
    });
    await vi.waitFor(() => {
      expect(server.last.ops()).toContain("link.start");
    });
  });

  test("a declined code says why and waits for a click; a refused link.start offers to try again", async () => {
    const { server, linker } = setup((socket) => socket.on("link.start", () => Promise.reject(new Error("no"))));
    await linker.start();
    await phaseIs(linker, "unavailable");
    expect(linker.phase).toEqual({ name: "unavailable", rateLimited: false });

    server.last.on("link.start", () => ({}));
    linker.newCode(); // the socket is still open: the same socket starts a new session
    await vi.waitFor(() => {
      expect(server.last.ops()).toEqual(["link.start", "link.start"]);
    });
    await vi.waitFor(() => {
      expect(linker.phase.name === "waiting" && linker.phase.session !== null).toBe(true);
    });
    server.last.send(ref(3));
    server.last.send({ event: "link.declined", reason: "mismatch" });
    expect(linker.phase).toEqual({ name: "declined", reason: "mismatch" });
    expect(server.sockets).toHaveLength(1);
  });

  test("with a code instead, link.start asks for a code session and the page shows its code", async () => {
    const { server, linker } = setup((socket) =>
      socket.on("link.start", (fields) => (fields.mode === "code" ? { code_id: "K7P" } : {})),
    );
    await linker.start();
    await vi.waitFor(() => {
      expect(linker.phase.name === "waiting" && linker.phase.session !== null).toBe(true);
    });
    expect(linker.toggleTypedMode()).toBe(true); // the socket is open: a code session starts at once
    await vi.waitFor(() => {
      expect(server.last.requests.map((r) => r.fields)).toEqual([
        { client: "browser" },
        { client: "browser", mode: "code" },
      ]);
    });
    await vi.waitFor(() => {
      expect(linker.phase.name === "waiting" && linker.phase.session?.typed).toBeTruthy();
    });
    server.last.send(ref(1));
    const phase = linker.phase;
    expect(phase.name === "showing" && phase.session.typed).toMatch(/^K7P[0-9A-HJKMNP-TV-Z]{5}$/);
  });

  test("a grant the phone built links, is kept, and signs in", async () => {
    const { server, linker, store, calls, grant } = await linked(() => ({}));
    await vi.waitFor(() => {
      expect(linker.phase.name === "linked" && linker.phase.connection).toBe("online");
    });
    expect(store.value?.deviceId).toBe(grant.deviceId);
    expect(store.value?.account.handle).toBe("alice");
    expect(server.last.requests.at(-1)).toMatchObject({ op: "auth", fields: { device_id: grant.deviceId } });
    expect(calls).toMatchObject({ linked: 1, signedIn: 1 });
  });

  test("a grant that does not open is refused, nothing is kept, and the socket is let go", async () => {
    const { server, linker, store, clock } = setup();
    await linker.start();
    await vi.waitFor(() => {
      expect(linker.phase.name === "waiting" && linker.phase.session !== null).toBe(true);
    });
    server.last.send(ref(1));
    const bad = b64uEncode(new Uint8Array(48).fill(9));
    server.last.send({ event: "link.granted", ref: b64uEncode(new Uint8Array(32).fill(1)), enc: bad, ciphertext: bad });
    await phaseIs(linker, "failed");
    expect(store.value).toBeUndefined();
    expect(server.last.closedByPage).toBe(true);
    expect(clock.pending()).toEqual([]);
  });

  test("closed as unlinked (4001), a linked device logs out: keys wiped, no reconnect", async () => {
    const { server, linker, store, calls, clock, grant } = await linked(() => ({}));
    server.last.drop(CLOSE_UNLINKED);
    await phaseIs(linker, "logged_out");
    expect(store.value).toBeUndefined();
    expect(calls.wiped).toEqual([grant.deviceId]);
    expect(calls.unlinked).toEqual([true]);
    expect(clock.pending()).toEqual([]);
  });

  test("a device the server no longer knows logs out; another refusal of auth retries", async () => {
    const refused = await linked(() => Promise.reject(new ServerError("rate_limited", "slow down")));
    await vi.waitFor(() => {
      expect(refused.linker.phase.name === "linked" && refused.linker.phase.connection).toBe("refused");
    });
    expect(refused.server.last.closedByPage).toBe(true);
    expect(refused.clock.pending()).toHaveLength(1);

    const unknown = await linked(() => Promise.reject(new ServerError("device_unknown", "who?")));
    await phaseIs(unknown.linker, "logged_out");
    expect(unknown.linker.phase).toMatchObject({ reason: "This browser is no longer one of your account's devices." });
    expect(unknown.store.value).toBeUndefined();
  });
});

/** A linker that just linked with a grant, its `auth` answered by `auth`. */
async function linked(
  auth: (fields: Record<string, unknown>) => Record<string, unknown> | Promise<Record<string, unknown>>,
) {
  const parts = setup((socket) => socket.on("auth", auth));
  const { server, linker } = parts;
  await linker.start();
  await vi.waitFor(() => {
    expect(linker.phase.name === "waiting" && linker.phase.session !== null).toBe(true);
  });
  server.last.send(ref(1));
  const { grant, code } = await grantFor(linker);
  server.last.send({
    event: "link.granted",
    ref: b64uEncode(code.ref),
    enc: b64uEncode(grant.enc),
    ciphertext: b64uEncode(grant.ciphertext),
  });
  await vi.waitFor(() => {
    expect(parts.calls.linked).toBe(1); // kept, and the other tabs told
  });
  return { ...parts, grant };
}
