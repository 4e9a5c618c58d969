import { describe, expect, test } from "vitest";
import { b64uEncode } from "../../src/crypto/base64";
import { decodeBase64 } from "../../src/e2e";
import { OlmDevice, type PeerSessionsPickle } from "../../src/messenger/olmDevice";
import { utf8, fromUtf8 } from "../../src/crypto/bytes";

/** `to`'s one-time key, as a sender claims it from the server. */
async function claim(to: OlmDevice): Promise<Uint8Array> {
  await to.account.generateOneTimeKeys(1);
  const key = Object.values(to.account.oneTimeKeys())[0] as string;
  to.account.markKeysAsPublished();
  return decodeBase64(key);
}

async function send(from: OlmDevice, to: OlmDevice, text: string): Promise<string> {
  const message = await from.encrypt(to.identityKey, utf8(text));
  return fromUtf8(await to.decrypt(from.identityKey, message.type === 0 ? 0 : 1, message.body));
}

/** What a save writes and a reload reads: the pickle and every record written so far (by number). */
function save(device: OlmDevice, records: Map<number, PeerSessionsPickle>): number[] {
  const { records: changed } = device.takeChangedSessions();
  for (const [number, sessions] of changed) records.set(number, sessions);
  return [...changed.keys()];
}

describe("OlmDevice: one record per peer device, written when its sessions changed", () => {
  test("a save writes only the peers used since the last, and a reload from those records goes on", async () => {
    const [alice, bob, carol] = await Promise.all([OlmDevice.create(), OlmDevice.create(), OlmDevice.create()]);
    const records = new Map<number, PeerSessionsPickle>();
    await alice.startOutbound(bob.identityKey, await claim(bob));
    await alice.startOutbound(carol.identityKey, await claim(carol));
    expect(await send(alice, bob, "hello bob")).toBe("hello bob");
    expect(await send(alice, carol, "hello carol")).toBe("hello carol");
    expect(save(alice, records).length).toBe(2); // both peers are new
    expect(save(alice, records)).toEqual([]); // nothing happened since

    expect(await send(bob, alice, "hi alice")).toBe("hi alice"); // Alice decrypts from Bob only
    const bobsNumber = alice.pickle().peers?.[b64uEncode(bob.identityKey)];
    expect(save(alice, records)).toEqual([bobsNumber]);

    // A reload reads the account and the records as they were last written: both sessions go on.
    const reloaded = await OlmDevice.unpickle(alice.pickle(), records);
    expect(await send(reloaded, bob, "after the reload")).toBe("after the reload");
    expect(await send(reloaded, carol, "to carol too")).toBe("to carol too");
    expect(await send(carol, reloaded, "and back")).toBe("and back");
  });

  test("a failed save gives its peers back for the next one", async () => {
    const [alice, bob] = await Promise.all([OlmDevice.create(), OlmDevice.create()]);
    await alice.startOutbound(bob.identityKey, await claim(bob));
    await send(alice, bob, "one");
    const taken = alice.takeChangedSessions();
    expect(alice.takeChangedSessions().peers).toEqual([]);
    alice.restoreChanged(taken.peers);
    expect(alice.takeChangedSessions().peers).toEqual(taken.peers);
  });

  test("a pickle of the older form (every session in it) is read, and each peer is written on the next save", async () => {
    const [alice, bob] = await Promise.all([OlmDevice.create(), OlmDevice.create()]);
    await alice.startOutbound(bob.identityKey, await claim(bob));
    await send(alice, bob, "before the upgrade");
    const { records } = alice.takeChangedSessions();
    const older = { account: alice.account.pickle(), counter: 7, sessions: {} as Record<string, PeerSessionsPickle> };
    for (const [peer, number] of Object.entries(alice.pickle().peers ?? {}))
      older.sessions[peer] = records.get(number) ?? [];
    const upgraded = await OlmDevice.unpickle(older);
    expect(upgraded.takeChangedSessions().records.size).toBe(1);
    expect(upgraded.pickle().sessions).toBeUndefined();
    expect(await send(upgraded, bob, "after the upgrade")).toBe("after the upgrade");
  });
});
