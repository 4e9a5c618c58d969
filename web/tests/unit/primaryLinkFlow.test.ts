import { describe, expect, test, vi } from "vitest";
import { b64uEncode } from "../../src/crypto/base64";
import { exportEd25519Public, generateEd25519, keyId } from "../../src/crypto/ed25519";
import { generateX25519 } from "../../src/crypto/hpke";
import { type DeviceEntry, type DeviceList, MAX_COMPANIONS } from "../../src/link/deviceList";
import { type BuiltGrant, TooManyDevices } from "../../src/link/grant";
import { WrongNumber, matchingNumber } from "../../src/link/matching";
import { LinkCodeError, encodeLinkText } from "../../src/link/qr";
import { type LinkingAccount, PrimaryLinkFlow } from "../../src/pages/primary/linkFlow";
import { FakeSocket, ORIGIN } from "./fakes";

/** What link.inspect says of a companion on another network than the phone's. */
const ELSEWHERE = {
  companion: { description: "Laptop", address: "192.168.1.20", network: { kind: "private", prefix: "192.168.1.0/24" } },
  network: { same_network: false, primary_address: "10.0.0.7" },
  age_ms: 3_000,
};
const SAME_NETWORK = { ...ELSEWHERE, network: { same_network: true } };

async function device(name: string, role: "primary" | "companion"): Promise<DeviceEntry> {
  const key = await exportEd25519Public((await generateEd25519(false)).publicKey);
  return { device_id: await keyId(key), device_key: b64uEncode(key), role, name, linked_at: 1 };
}

async function setup(companionNames: string[] = ["Laptop"], context: Record<string, unknown> = SAME_NETWORK) {
  const keys = await generateEd25519(false);
  const accountPublic = await exportEd25519Public(keys.publicKey);
  const list: DeviceList = {
    v: 1,
    type: "device-list",
    account_id: await keyId(accountPublic),
    version: 1,
    issued_at: 1,
    devices: [
      await device("Phone", "primary"),
      ...(await Promise.all(companionNames.map((n) => device(n, "companion")))),
    ],
  };
  const account: LinkingAccount = {
    accountId: list.account_id,
    handle: "alice",
    displayName: "Alice",
    accountPublic,
    accountKey: keys.privateKey,
    list,
  };
  const socket = new FakeSocket({}).on("link.inspect", () => context);
  const kept: { grant: BuiltGrant; description: string }[] = [];
  const flow = new PrimaryLinkFlow({
    socket: () => socket,
    account: () => account,
    linked: (grant, description) => {
      kept.push({ grant, description });
      return Promise.resolve();
    },
  });
  return { flow, socket, account, kept };
}

/** The text of a companion's code, with a real ephemeral key (the grant is sealed to it). */
async function codeText(): Promise<string> {
  const ephemeral = await generateX25519(true);
  const deviceKey = await exportEd25519Public((await generateEd25519(false)).publicKey);
  return encodeLinkText(ORIGIN, {
    version: 1,
    ref: new Uint8Array(32).fill(5),
    ephemeralKey: new Uint8Array(await crypto.subtle.exportKey("raw", ephemeral.publicKey)),
    deviceKey,
    linkSecret: new Uint8Array(32).fill(6),
  });
}

describe("PrimaryLinkFlow", () => {
  test("a scanned code is inspected with the server and shown for consent, with a name of its own", async () => {
    const { flow, socket } = await setup(["Laptop"], ELSEWHERE);
    const scan = flow.startScan();
    expect(flow.step).toEqual({ step: "scanning", scan });
    await flow.scanned(scan as number, await codeText());
    expect(socket.requests).toEqual([{ op: "link.inspect", fields: { ref: b64uEncode(new Uint8Array(32).fill(5)) } }]);
    const step = flow.step;
    if (step.step !== "relay") throw new Error(step.step); // another network: the number comes first
    expect(step.offer).toMatchObject({
      description: "Laptop",
      address: "192.168.1.20",
      place: "private network 192.168.1.0/24",
      sameNetwork: false,
      primaryAddress: "10.0.0.7",
      suggestedName: "Laptop (2)",
      ageMs: 3_000,
    });
    const { ref, linkSecret } = step.offer.code;
    await flow.checkNumber(` ${await matchingNumber(ref, linkSecret)} `);
    expect(flow.step.step).toBe("confirming");
    expect(flow.ageSeconds(step.offer.inspectedAt + 2_000)).toBe(5);
  });

  test("on another network, a wrong number refuses the link and declines it", async () => {
    const { flow, socket } = await setup(["Laptop"], ELSEWHERE);
    await flow.scanned(flow.startScan() as number, await codeText());
    const step = flow.step;
    if (step.step !== "relay") throw new Error(step.step);
    const right = await matchingNumber(step.offer.code.ref, step.offer.code.linkSecret);
    await flow.checkNumber(right === "00" ? "01" : "00");
    const refused = flow.step;
    expect(refused.step === "refused" && refused.error instanceof WrongNumber && !refused.canRetry).toBe(true);
    expect(socket.requests.at(-1)).toMatchObject({ op: "link.decline", fields: { reason: "wrong_number" } });
  });

  test("only the newest scan counts, and closing while the server answers shows nothing", async () => {
    const { flow } = await setup();
    const first = flow.startScan() as number;
    const second = flow.startScan() as number;
    await flow.scanned(first, await codeText());
    expect(flow.step).toEqual({ step: "scanning", scan: second });

    const answered = flow.scanned(second, await codeText());
    expect(flow.step.step).toBe("inspecting");
    flow.close();
    await answered;
    expect(flow.step).toEqual({ step: "closed" });
  });

  test("a text that is not a link code is refused with its reason, and can be scanned again", async () => {
    const { flow, socket } = await setup();
    await flow.scanned(flow.startScan() as number, "https://example.com/not-a-code");
    const step = flow.step;
    expect(step.step === "refused" && step.error instanceof LinkCodeError && step.canRetry).toBe(true);
    expect(socket.requests).toEqual([]);
  });

  test("approving sends the grant and keeps the new list; a bad name changes nothing", async () => {
    const { flow, socket, kept } = await setup();
    await flow.scanned(flow.startScan() as number, await codeText());
    expect(await flow.approve("   ")).toBe(false);
    expect(flow.step.step).toBe("confirming");

    expect(await flow.approve("Laptop")).toBe(true);
    expect(flow.step).toEqual({ step: "linked", name: "Laptop (2)", handle: "alice" });
    const approve = socket.requests.find((r) => r.op === "link.approve");
    expect(Object.keys(approve?.fields ?? {}).sort()).toEqual([
      "certificate",
      "ciphertext",
      "device_list",
      "enc",
      "ref",
    ]);
    expect(kept).toHaveLength(1);
    expect(kept[0]?.description).toBe("Laptop");
    expect(kept[0]?.grant.list.devices.map((d) => d.name)).toEqual(["Phone", "Laptop", "Laptop (2)"]);
  });

  test(`a ${MAX_COMPANIONS + 1}th companion is refused on the phone, before the server is asked`, async () => {
    const { flow, socket } = await setup(["A", "B", "C", "D"]);
    await flow.scanned(flow.startScan() as number, await codeText());
    await flow.approve("E");
    const step = flow.step;
    expect(step.step === "refused" && step.error instanceof TooManyDevices && !step.canRetry).toBe(true);
    expect(socket.ops()).toEqual(["link.inspect"]);
  });

  test("declining tells the server and closes the flow", async () => {
    const { flow, socket } = await setup();
    await flow.scanned(flow.startScan() as number, await codeText());
    expect(await flow.decline()).toBe("Declined. Nothing was linked.");
    expect(flow.step).toEqual({ step: "closed" });
    expect(socket.ops()).toEqual(["link.inspect", "link.decline"]);
    await vi.waitFor(() => {
      expect(flow.startScan()).not.toBeNull();
    });
  });
});
