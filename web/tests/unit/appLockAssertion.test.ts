/**
 * The app lock's own half of WebAuthn §7.2 (src/lock/assertion.ts): an authenticator is played here with
 * WebCrypto keys of each algorithm the lock accepts, so every check can be made to fail on its own.
 */
import { describe, expect, test } from "vitest";
import { b64uEncode } from "../../src/crypto/base64";
import { buf, concat, randomBytes, utf8 } from "../../src/crypto/bytes";
import {
  type Assertion,
  AssertionRejected,
  EDDSA,
  ES256,
  type PasskeyRecord,
  RS256,
  ecdsaDerToRaw,
  verifyAssertion,
} from "../../src/lock/assertion";

const ORIGIN = "https://chat.example";
const RP_ID = "chat.example";
const UP = 0x01;
const UV = 0x04;

const KEYS = {
  [ES256]: { generate: { name: "ECDSA", namedCurve: "P-256" }, sign: { name: "ECDSA", hash: "SHA-256" } },
  [EDDSA]: { generate: { name: "Ed25519" }, sign: { name: "Ed25519" } },
  [RS256]: {
    generate: {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    sign: { name: "RSASSA-PKCS1-v1_5" },
  },
} as const;

/** r ‖ s → DER SEQUENCE { INTEGER r, INTEGER s } (minimal integers), as authenticators sign ES256. */
function rawToDer(raw: Uint8Array): Uint8Array {
  const integer = (value: Uint8Array): Uint8Array => {
    let start = 0;
    while (start < value.length - 1 && value[start] === 0) start++;
    let bytes = value.subarray(start);
    if ((bytes[0] ?? 0) & 0x80) bytes = concat(new Uint8Array([0]), bytes);
    return concat(new Uint8Array([0x02, bytes.length]), bytes);
  };
  const half = raw.length / 2;
  const body = concat(integer(raw.subarray(0, half)), integer(raw.subarray(half)));
  return concat(new Uint8Array([0x30, body.length]), body);
}

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf(data)));
}

/** A platform authenticator holding one passkey for RP_ID, whose answers the test can spoil one by one. */
async function authenticator(algorithm: keyof typeof KEYS) {
  const spec = KEYS[algorithm];
  const pair = (await crypto.subtle.generateKey(spec.generate, false, ["sign", "verify"])) as CryptoKeyPair;
  const record: PasskeyRecord = {
    credentialId: randomBytes(16),
    publicKey: new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey)),
    algorithm,
    rpId: RP_ID,
  };
  const answer = async (
    challenge: Uint8Array,
    spoil: { flags?: number; rpId?: string; type?: string; origin?: string; challenge?: Uint8Array } = {},
  ): Promise<Assertion> => {
    const clientDataJSON = utf8(
      JSON.stringify({
        type: spoil.type ?? "webauthn.get",
        challenge: b64uEncode(spoil.challenge ?? challenge),
        origin: spoil.origin ?? ORIGIN,
        crossOrigin: false,
      }),
    );
    const authenticatorData = concat(
      await sha256(utf8(spoil.rpId ?? RP_ID)),
      new Uint8Array([spoil.flags ?? UP | UV, 0, 0, 0, 0]),
    );
    const signed = concat(authenticatorData, await sha256(clientDataJSON));
    let signature: Uint8Array = new Uint8Array(await crypto.subtle.sign(spec.sign, pair.privateKey, buf(signed)));
    if (algorithm === ES256) signature = rawToDer(signature);
    return { credentialId: record.credentialId, clientDataJSON, authenticatorData, signature };
  };
  return { record, answer };
}

const expected = (challenge: Uint8Array) => ({ challenge, origin: ORIGIN });

describe.each([
  ["ES256", ES256],
  ["EdDSA", EDDSA],
  ["RS256", RS256],
] as const)("an %s passkey", (_name, algorithm) => {
  test("a user-verified answer to this challenge for this page opens the lock", async () => {
    const { record, answer } = await authenticator(algorithm);
    const challenge = randomBytes(32);
    await expect(verifyAssertion(record, await answer(challenge), expected(challenge))).resolves.toBeUndefined();
  });

  test.each([
    ["user not verified", { flags: UP }, "did not check that it is you"],
    ["nobody present", { flags: UV }, "did not see anyone"],
    ["another site's passkey", { rpId: "evil.example" }, "another site"],
    ["another page", { origin: "https://evil.example" }, "another page"],
    ["a registration, not a sign-in", { type: "webauthn.create" }, "not for a sign-in"],
    ["an old challenge", { challenge: new Uint8Array(32) }, "another challenge"],
  ])("refused: %s", async (_case, spoil, words) => {
    const { record, answer } = await authenticator(algorithm);
    const challenge = randomBytes(32);
    await expect(verifyAssertion(record, await answer(challenge, spoil), expected(challenge))).rejects.toThrow(words);
  });

  test("refused: a signature that does not verify (authenticator data changed after signing)", async () => {
    const { record, answer } = await authenticator(algorithm);
    const challenge = randomBytes(32);
    const assertion = await answer(challenge, { flags: UP });
    const forged = {
      ...assertion,
      authenticatorData: concat(assertion.authenticatorData.subarray(0, 32), new Uint8Array([UP | UV, 0, 0, 0, 0])),
    };
    await expect(verifyAssertion(record, forged, expected(challenge))).rejects.toThrow("signature does not verify");
  });

  test("refused: another passkey's answer", async () => {
    const mine = await authenticator(algorithm);
    const other = await authenticator(algorithm);
    const challenge = randomBytes(32);
    const theirs = await other.answer(challenge);
    await expect(verifyAssertion(mine.record, theirs, expected(challenge))).rejects.toThrow("another passkey");
    const relabelled = { ...theirs, credentialId: mine.record.credentialId };
    await expect(verifyAssertion(mine.record, relabelled, expected(challenge))).rejects.toThrow(AssertionRejected);
  });
});

describe("ecdsaDerToRaw", () => {
  test("takes back what DER encoding made, for 500 random r and s (some with leading zero bytes)", () => {
    for (let i = 0; i < 500; i++) {
      const raw = randomBytes(64);
      if (i % 5 === 0) raw.fill(0, 0, 1 + (i % 3));
      if (i % 7 === 0) raw.fill(0, 32, 33 + (i % 2));
      expect(ecdsaDerToRaw(rawToDer(raw), 32)).toEqual(raw);
    }
  });

  test("random bytes and every truncation of a signature raise AssertionRejected and nothing else", () => {
    const good = rawToDer(randomBytes(64));
    const inputs = [
      ...Array.from({ length: good.length }, (_, n) => good.subarray(0, n)),
      concat(good, new Uint8Array([0])),
    ];
    for (let i = 0; i < 500; i++) inputs.push(randomBytes(i % 80));
    for (const input of inputs) {
      try {
        ecdsaDerToRaw(input, 32);
      } catch (error) {
        expect(error).toBeInstanceOf(AssertionRejected);
      }
    }
    expect(() => ecdsaDerToRaw(good.subarray(0, good.length - 1), 32)).toThrow(AssertionRejected);
  });

  test("refuses a negative or non-minimal integer", () => {
    const r = new Uint8Array(32).fill(0x11);
    const negative = concat(
      new Uint8Array([0x30, 0x44, 0x02, 0x20]),
      r.map(() => 0x90),
      new Uint8Array([0x02, 0x20]),
      r,
    );
    expect(() => ecdsaDerToRaw(negative, 32)).toThrow(AssertionRejected);
    const padded = concat(new Uint8Array([0x30, 0x45, 0x02, 0x21, 0x00]), r, new Uint8Array([0x02, 0x20]), r);
    expect(() => ecdsaDerToRaw(padded, 32)).toThrow(AssertionRejected);
  });
});
