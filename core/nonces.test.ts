// The replay memory's compact set and keys (NonceCache's behaviour is in signing.test.ts).
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { generateIdentity } from "./identity.ts";
import { NonceCache, NumberSet, nonceKey } from "./nonces.ts";

describe("the nonce keys and their set", () => {
  test("a NumberSet finds every key it took, through its growth, and no other", () => {
    const set = new NumberSet();
    const keys = Array.from({ length: 20_000 }, (_, i) =>
      nonceKey("a".repeat(64), i.toString(16).padStart(32, "0")),
    );
    for (const k of keys) expect(set.add(k)).toBe(true);
    expect(set.size).toBe(20_000);
    for (const k of keys) expect(set.has(k)).toBe(true);
    expect(set.add(keys[7] as number)).toBe(false);
    expect(set.has(nonceKey("a".repeat(64), "f".repeat(32)))).toBe(false);
  });

  test("a key is the same for the same signer and nonce, another for another signer; never 0", () => {
    const [a, b] = [generateIdentity().nodeId, generateIdentity().nodeId];
    const n = randomBytes(16).toString("hex");
    expect(nonceKey(a, n)).toBe(nonceKey(a, n));
    expect(nonceKey(a, n)).not.toBe(nonceKey(b, n));
    expect(nonceKey("0".repeat(64), "0".repeat(32))).not.toBe(0);
    // a nonce that is not 32 hex characters (never on the wire: the headers are checked first) has one too
    expect(nonceKey(a, "n1")).toBe(nonceKey(a, "n1"));
    expect(nonceKey(a, "n1")).not.toBe(nonceKey(a, "n2"));
  });

  test("100,000 random nonces of three signers: each fresh once, then a replay; another signer's is its own", () => {
    const signers = [generateIdentity().nodeId, generateIdentity().nodeId, generateIdentity().nodeId];
    const cache = new NonceCache(30_000);
    const nonces = Array.from({ length: 100_000 }, () => randomBytes(16).toString("hex"));
    for (const [i, n] of nonces.entries())
      expect(cache.check(signers[i % 3] as string, n, 1000 + i / 10)).toBe("fresh");
    expect(cache.size).toBe(100_000);
    for (let i = 0; i < 100_000; i += 97) {
      expect(cache.check(signers[i % 3] as string, nonces[i] as string, 20_000)).toBe("replay");
      expect(cache.check(signers[(i + 1) % 3] as string, nonces[i] as string, 20_000)).toBe("fresh");
    }
  });
});
