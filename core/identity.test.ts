import { afterAll, describe, expect, test } from "bun:test";
import { createPublicKey, verify } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalJson } from "./canonical-json.ts";
import { P2prcError } from "./errors.ts";
import {
  generateIdentity,
  loadOrCreateIdentity,
  NODE_ID_RE,
  publicKeyOfNodeId,
  readNodeId,
  verifyJson,
  verifySignature,
} from "./identity.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-identity-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("loadOrCreateIdentity", () => {
  const dir = join(root, "home", "identity");
  const keyPath = join(dir, "node.key");
  const pubPath = join(dir, "node.pub");

  test("creates the key with mode 0600 in a 0700 directory", () => {
    expect(existsSync(keyPath)).toBe(false);
    const id = loadOrCreateIdentity(keyPath, pubPath);
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readFileSync(keyPath, "utf8")).toContain("BEGIN PRIVATE KEY");
    expect(readFileSync(pubPath, "utf8")).toBe(id.publicKeyPem);
  });

  test("a second load gives the same node id", () => {
    const a = loadOrCreateIdentity(keyPath, pubPath);
    const b = loadOrCreateIdentity(keyPath, pubPath);
    expect(b.nodeId).toBe(a.nodeId);
    expect(b.publicKeyPem).toBe(a.publicKeyPem);
  });

  test("node id is 64 lowercase hex = the raw Ed25519 public key", () => {
    const id = loadOrCreateIdentity(keyPath, pubPath);
    expect(id.nodeId).toMatch(/^[0-9a-f]{64}$/);
    expect(NODE_ID_RE.test(id.nodeId)).toBe(true);
    const jwk = createPublicKey(id.publicKeyPem).export({ format: "jwk" });
    expect(Buffer.from(jwk.x as string, "base64url").toString("hex")).toBe(id.nodeId);
    // and the reverse mapping gives the same key back
    expect(publicKeyOfNodeId(id.nodeId).export({ type: "spki", format: "pem" }).toString()).toBe(
      id.publicKeyPem,
    );
  });

  test("a missing public key file is rewritten from the private key", () => {
    const id = loadOrCreateIdentity(keyPath, pubPath);
    rmSync(pubPath);
    const again = loadOrCreateIdentity(keyPath, pubPath);
    expect(again.nodeId).toBe(id.nodeId);
    expect(readFileSync(pubPath, "utf8")).toBe(id.publicKeyPem);
  });

  test("two fresh homes get different ids", () => {
    const other = loadOrCreateIdentity(join(root, "other", "node.key"), join(root, "other", "node.pub"));
    expect(other.nodeId).not.toBe(loadOrCreateIdentity(keyPath, pubPath).nodeId);
  });

  test("an unreadable key file is E_IDENTITY naming the path", () => {
    const bad = join(root, "bad.key");
    writeFileSync(bad, "not a key");
    let err: unknown;
    try {
      loadOrCreateIdentity(bad, join(root, "bad.pub"));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(P2prcError);
    expect((err as P2prcError).code).toBe("E_IDENTITY");
    expect((err as P2prcError).message).toContain(bad);
  });
});

describe("signatures", () => {
  const alice = generateIdentity();
  const bob = generateIdentity();
  const value = {
    kind: "peer:joined",
    at: 1700000000000,
    peer: { host: "10.0.0.7", port: 8088 },
    tags: ["a"],
  };

  test("signJson / verifyJson round trip", () => {
    const sig = alice.signJson(value);
    expect(Buffer.from(sig, "base64")).toHaveLength(64);
    expect(verifyJson(alice.nodeId, value, sig)).toBe(true);
    // key order does not matter: the signature is over canonical JSON
    const reordered = {
      tags: ["a"],
      peer: { port: 8088, host: "10.0.0.7" },
      at: 1700000000000,
      kind: "peer:joined",
    };
    expect(verifyJson(alice.nodeId, reordered, sig)).toBe(true);
  });

  test("the signature is a real Ed25519 signature over canonical JSON", () => {
    const sig = alice.signJson(value);
    const ok = verify(
      null,
      Buffer.from(canonicalJson(value)),
      publicKeyOfNodeId(alice.nodeId),
      Buffer.from(sig, "base64"),
    );
    expect(ok).toBe(true);
  });

  test("sign / verifySignature over raw bytes and strings", () => {
    const bytes = new Uint8Array([1, 2, 3, 255]);
    expect(verifySignature(alice.nodeId, bytes, alice.sign(bytes))).toBe(true);
    expect(verifySignature(alice.nodeId, "hello", alice.sign("hello"))).toBe(true);
    expect(verifySignature(alice.nodeId, "hellO", alice.sign("hello"))).toBe(false);
  });

  test("changing one field fails verification", () => {
    const sig = alice.signJson(value);
    expect(verifyJson(alice.nodeId, { ...value, at: value.at + 1 }, sig)).toBe(false);
    expect(verifyJson(alice.nodeId, { ...value, peer: { host: "10.0.0.8", port: 8088 } }, sig)).toBe(false);
    expect(verifyJson(alice.nodeId, { ...value, extra: true }, sig)).toBe(false);
  });

  test("changing one signature byte fails verification", () => {
    const raw = Buffer.from(alice.signJson(value), "base64");
    for (const i of [0, 31, 63]) {
      const copy = Buffer.from(raw);
      copy[i] = (copy[i] as number) ^ 0x01;
      expect(verifyJson(alice.nodeId, value, copy.toString("base64"))).toBe(false);
    }
  });

  test("another node's id fails verification", () => {
    expect(verifyJson(bob.nodeId, value, alice.signJson(value))).toBe(false);
  });

  test("a malformed node id fails (and publicKeyOfNodeId throws E_IDENTITY)", () => {
    const sig = alice.signJson(value);
    for (const id of [
      alice.nodeId.toUpperCase(),
      alice.nodeId.slice(2),
      `${alice.nodeId}00`,
      "",
      "zz".repeat(32),
    ]) {
      expect(verifyJson(id, value, sig)).toBe(false);
    }
    expect(() => publicKeyOfNodeId("nope")).toThrow(P2prcError);
  });

  test("a signature of the wrong length fails", () => {
    const raw = Buffer.from(alice.signJson(value), "base64");
    expect(verifyJson(alice.nodeId, value, raw.subarray(0, 63).toString("base64"))).toBe(false);
    expect(verifyJson(alice.nodeId, value, Buffer.concat([raw, Buffer.from([0])]).toString("base64"))).toBe(
      false,
    );
    expect(verifyJson(alice.nodeId, value, "")).toBe(false);
  });

  test("a value canonicalJson cannot encode fails instead of throwing", () => {
    expect(verifyJson(alice.nodeId, { n: Number.NaN }, alice.signJson({ n: 0 }))).toBe(false);
  });
});

describe("canonicalJson", () => {
  test("sorts keys recursively, no whitespace", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: "x" } })).toBe(
      '{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });

  test("differently ordered objects give the same text", () => {
    const a = { x: 1, y: { p: true, q: null, r: ["s", "t"] }, z: "é\n" };
    const b = { z: "é\n", y: { r: ["s", "t"], q: null, p: true }, x: 1 };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(JSON.parse(canonicalJson(a))).toEqual(a);
  });

  test("array order is kept", () => {
    expect(canonicalJson([2, 1])).not.toBe(canonicalJson([1, 2]));
  });

  test("undefined object members are dropped like JSON.stringify", () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
  });

  test.each([
    ["NaN", { n: Number.NaN }],
    ["Infinity", { n: Number.POSITIVE_INFINITY }],
    ["-Infinity", [Number.NEGATIVE_INFINITY]],
    ["a function", { f: () => 1 }],
    ["a bigint", { b: 1n }],
    ["undefined in an array", [1, undefined]],
    ["a symbol", { s: Symbol("x") }],
  ])("rejects %s with E_INVALID", (_label, input) => {
    let err: unknown;
    try {
      canonicalJson(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(P2prcError);
    expect((err as P2prcError).code).toBe("E_INVALID");
  });

  test("the error names the path of the bad value", () => {
    expect(() => canonicalJson({ a: { b: [0, Number.NaN] } })).toThrow("$.a.b[1]");
  });
});

// Gaps found by these tests and fixed since.
describe("regressions", () => {
  // canonical-json.ts encodes any object by its own enumerable keys, so a Date (or Map, Set) becomes
  // "{}": two different dates sign the same, and a signature over one verifies for the other.
  test("a Date is rejected or encoded by value, not as {}", () => {
    const alice = generateIdentity();
    // Rejected: only plain objects, arrays and primitives can be signed.
    expect(() => canonicalJson({ at: new Date(0) })).toThrow(P2prcError);
    expect(() => canonicalJson({ m: new Map([["a", 1]]) })).toThrow(P2prcError);
    expect(verifyJson(alice.nodeId, { at: new Date(5) }, alice.signJson({ at: 99999 }))).toBe(false);
  });

  // verifySignature decodes base64 leniently, so "<sig>!!" or " <sig>" verifies as well: the same
  // signature has many spellings (matters if signatures are ever used as dedupe keys).
  test("only the canonical base64 spelling of a signature verifies", () => {
    const alice = generateIdentity();
    const sig = alice.signJson({ x: 1 });
    expect(verifyJson(alice.nodeId, { x: 1 }, `${sig}!!`)).toBe(false);
    expect(verifyJson(alice.nodeId, { x: 1 }, ` ${sig}`)).toBe(false);
  });
});

test("readNodeId reads the id from the public key file without the private key", () => {
  const dir = mkdtempSync(join(tmpdir(), "p2prc-readid-"));
  try {
    const id = loadOrCreateIdentity(join(dir, "node.key"), join(dir, "node.pub"));
    expect(readNodeId(join(dir, "node.pub"))).toBe(id.nodeId);
    expect(readNodeId(join(dir, "missing.pub"))).toBeUndefined();
    writeFileSync(join(dir, "bad.pub"), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    expect(readNodeId(join(dir, "bad.pub"))).toBeUndefined();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
