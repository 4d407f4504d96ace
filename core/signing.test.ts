import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateIdentity, loadOrCreateIdentity } from "./identity.ts";
import { NonceCache } from "./nonces.ts";
import { requestMac } from "./request-mac.ts";
import {
  AUTH_HEADERS,
  canonicalRequest,
  macRequestHash,
  parseSignedHeaders,
  sha256Hex,
  signRequest,
  verifyMacHeaders,
  verifyRequest,
} from "./signing.ts";

const alice = generateIdentity();
const url = "http://127.0.0.1:8088/v1/containers?b=2&a=1";
const body = JSON.stringify({ image: "busybox" });

function check(
  headers: Record<string, string>,
  over: Partial<{ method: string; url: string; body: string; now: number; selfId: string }> = {},
) {
  return verifyRequest({
    method: over.method ?? "POST",
    url: over.url ?? url,
    headers: (n) => headers[n],
    body: over.body ?? body,
    now: over.now ?? Number(headers[AUTH_HEADERS.timestamp]),
    skewMs: 30_000,
    selfId: over.selfId,
  });
}

describe("signed requests", () => {
  test("a signed request verifies and names its node", () => {
    const r = check(signRequest(alice, "POST", url, body));
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.nodeId).toBe(alice.nodeId);
  });

  test("query order does not matter; any change to what is signed fails", () => {
    const h = signRequest(alice, "POST", url, body);
    expect(check(h, { url: "http://127.0.0.1:8088/v1/containers?a=1&b=2" }).ok).toBe(true);
    expect(check(h, { method: "DELETE" }).ok).toBe(false);
    expect(check(h, { url: "http://127.0.0.1:8088/v1/containers/x?a=1&b=2" }).ok).toBe(false);
    expect(check(h, { url: "http://127.0.0.1:8088/v1/containers?a=1&b=3" }).ok).toBe(false);
    expect(check(h, { body: `${body} ` }).ok).toBe(false);
  });

  test("missing headers, a foreign signature and a stale timestamp are refused", () => {
    const h = signRequest(alice, "POST", url, body);
    const { [AUTH_HEADERS.signature]: _s, ...unsigned } = h;
    expect(check(unsigned)).toEqual({ ok: false, reason: "request is not signed" });
    const mallory = generateIdentity();
    expect(check({ ...h, [AUTH_HEADERS.node]: mallory.nodeId }).ok).toBe(false);
    const r = check(h, { now: Number(h[AUTH_HEADERS.timestamp]) + 31_000 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain("timestamp");
  });

  test("a nonce is accepted once per window", () => {
    const cache = new NonceCache(30_000);
    expect(cache.use(alice.nodeId, "a".repeat(32), 1000)).toBe(true);
    expect(cache.use(alice.nodeId, "a".repeat(32), 2000)).toBe(false);
    expect(cache.use(alice.nodeId, "b".repeat(32), 2000)).toBe(true);
  });

  test("a nonce is refused for 2 windows after it arrived, then its bucket is dropped whole", () => {
    const cache = new NonceCache(30_000);
    const n = "c".repeat(32);
    expect(cache.check(alice.nodeId, n, 0)).toBe("fresh");
    expect(cache.check(alice.nodeId, n, 59_999)).toBe("replay");
    expect(cache.size).toBe(1);
    // another signer's identical nonce is its own
    expect(cache.check(generateIdentity().nodeId, n, 1000)).toBe("fresh");
    expect(cache.check(alice.nodeId, "d".repeat(32), 100_000)).toBe("fresh");
    expect(cache.size).toBe(1); // both old ones went with their buckets
  });

  test("50,000 nonces held, one more request looks into a few buckets, never the nonces (no scan)", () => {
    const cache = new NonceCache(30_000);
    const nonce = (i: number) => i.toString(16).padStart(32, "0");
    let fresh = 0;
    for (let i = 0; i < 50_000; i++) if (cache.use(alice.nodeId, nonce(i), 1000 + i)) fresh++;
    expect(fresh).toBe(50_000);
    expect(cache.size).toBe(50_000);
    const before = cache.probes;
    expect(cache.use(alice.nodeId, nonce(50_000), 51_000)).toBe(true);
    expect(cache.use(alice.nodeId, nonce(7), 51_001)).toBe(false);
    // at most 9 buckets per request (2 windows of 4 buckets, and the current one)
    expect(cache.probes - before).toBeLessThanOrEqual(2 * 9);
    expect(cache.size).toBe(50_001);
  });

  test("a full cache keeps nothing more and says so; it takes nonces again as its buckets age out", () => {
    const cache = new NonceCache(1000, 3);
    for (const n of ["1", "2", "3"]) expect(cache.check(alice.nodeId, n.repeat(32), 0)).toBe("fresh");
    expect(cache.check(alice.nodeId, "4".repeat(32), 10)).toBe("full");
    expect(cache.check(alice.nodeId, "1".repeat(32), 10)).toBe("replay");
    expect(cache.size).toBe(3);
    expect(cache.check(alice.nodeId, "4".repeat(32), 2500)).toBe("fresh");
    expect(cache.size).toBe(1);
  });

  test("a request addressed to one node is refused by another; the address cannot be dropped or changed", () => {
    const nodeA = generateIdentity().nodeId;
    const nodeB = generateIdentity().nodeId;
    const h = signRequest(alice, "POST", url, body, Date.now(), nodeA);
    expect(h[AUTH_HEADERS.to]).toBe(nodeA);
    expect(check(h, { selfId: nodeA }).ok).toBe(true);
    const forwarded = check(h, { selfId: nodeB });
    expect(forwarded.ok).toBe(false);
    if (!forwarded.ok) expect(forwarded.reason).toContain("addressed to another node");
    const { [AUTH_HEADERS.to]: _to, ...stripped } = h;
    expect(check(stripped, { selfId: nodeB })).toEqual({ ok: false, reason: "bad signature" });
    expect(check({ ...h, [AUTH_HEADERS.to]: nodeB }, { selfId: nodeB })).toEqual({
      ok: false,
      reason: "bad signature",
    });
    expect(check({ ...h, [AUTH_HEADERS.to]: "zz" }, { selfId: nodeA }).ok).toBe(false);
    // unaddressed requests stay valid everywhere (a first contact by host:port)
    expect(check(signRequest(alice, "POST", url, body), { selfId: nodeB }).ok).toBe(true);
  });
});

/** Headers with what is fresh on each request blanked: the nonce, and the signature or MAC over it. */
const freshBlanked = (h: Record<string, string>, proof: string) => ({
  ...h,
  [AUTH_HEADERS.nonce]: "",
  [proof]: "",
});

// The wire format, pinned: printed in Docs/Security.md ("A worked example"). If this test fails, the
// format changed and every other implementation (and every deployed node) disagrees with this one.
describe("signing test vector", () => {
  const VECTOR = {
    // PKCS#8 of the Ed25519 seed 00 01 02 … 1f
    privateKeyPem:
      "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n-----END PRIVATE KEY-----\n",
    nodeId: "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
    method: "POST",
    url: "http://127.0.0.1:8088/v1/containers?b=2&a=1",
    body: '{"image":"busybox","command":["echo","hi"]}',
    timestamp: "1767225600000",
    nonce: "000102030405060708090a0b0c0d0e0f",
    to: "ab".repeat(32),
    contentSha256: "9e0992f197bfcf51cbf53395dc39f96aac25351e7919e08daae190c148197e55",
    canonical: [
      "p2prc-v1",
      "POST",
      "/v1/containers",
      "a=1&b=2",
      "1767225600000",
      "000102030405060708090a0b0c0d0e0f",
      "9e0992f197bfcf51cbf53395dc39f96aac25351e7919e08daae190c148197e55",
      "abababababababababababababababababababababababababababababababab",
    ].join("\n"),
    signature: "9I29SWtOq7fKBr4zsH4P7y90nPilVRF2p/xL1y/ypIZ9HtD/PC7klOMp7Of61Gh1KQCa6/7Pa9fwRWAugQGtDA==",
  };

  test("a known key, request, canonical text and signature", () => {
    const dir = mkdtempSync(join(tmpdir(), "p2prc-vector-"));
    try {
      writeFileSync(join(dir, "node.key"), VECTOR.privateKeyPem);
      const key = loadOrCreateIdentity(join(dir, "node.key"), join(dir, "node.pub"));
      expect(key.nodeId).toBe(VECTOR.nodeId);
      expect(sha256Hex(VECTOR.body)).toBe(VECTOR.contentSha256);
      const text = canonicalRequest({
        method: VECTOR.method,
        path: "/v1/containers",
        query: "?b=2&a=1",
        timestamp: VECTOR.timestamp,
        nonce: VECTOR.nonce,
        contentSha256: VECTOR.contentSha256,
        to: VECTOR.to,
      });
      expect(text).toBe(VECTOR.canonical);
      expect(key.sign(text)).toBe(VECTOR.signature); // Ed25519 is deterministic
      const headers: Record<string, string> = {
        [AUTH_HEADERS.node]: VECTOR.nodeId,
        [AUTH_HEADERS.timestamp]: VECTOR.timestamp,
        [AUTH_HEADERS.nonce]: VECTOR.nonce,
        [AUTH_HEADERS.contentSha256]: VECTOR.contentSha256,
        [AUTH_HEADERS.to]: VECTOR.to,
        [AUTH_HEADERS.signature]: VECTOR.signature,
      };
      const ok = verifyRequest({
        method: VECTOR.method,
        url: VECTOR.url,
        headers: (n) => headers[n],
        body: VECTOR.body,
        now: Number(VECTOR.timestamp),
        skewMs: 30_000,
        selfId: VECTOR.to,
      });
      expect(ok).toEqual({ ok: true, nodeId: VECTOR.nodeId, nonce: VECTOR.nonce, timestamp: 1767225600000 });
      // what signRequest sends for the same request differs only in its fresh nonce (and so signature)
      const sent = signRequest(
        key,
        VECTOR.method,
        VECTOR.url,
        VECTOR.body,
        Number(VECTOR.timestamp),
        VECTOR.to,
      );
      expect(Object.keys(sent).sort()).toEqual(Object.keys(headers).sort());
      expect(freshBlanked(sent, AUTH_HEADERS.signature)).toEqual(
        freshBlanked(headers, AUTH_HEADERS.signature),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// The request MAC's wire format, pinned: printed in Docs/Security.md ("Request MACs"). The sender is the
// signing vector's key (seed 00 … 1f), the receiver the key of seed 20 … 3f; the same request, addressed to it.
describe("request MAC test vector", () => {
  const V = {
    sender:
      "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n-----END PRIVATE KEY-----\n",
    receiver:
      "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEICAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/\n-----END PRIVATE KEY-----\n",
    senderId: "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
    receiverId: "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7",
    key: "124a48a394b79eeba3f771cf5f1fde0c634182a47cc3d0e612fa145984a4f5a9",
    mac: "cd3279702586f44e1513e0f2252cbc0b0133612c8945a1918bdde94cbf3f1310",
  };

  test("known keys, the key each side computes, and the MAC of the signing vector's request", () => {
    const dir = mkdtempSync(join(tmpdir(), "p2prc-mac-vector-"));
    try {
      writeFileSync(join(dir, "a.key"), V.sender);
      writeFileSync(join(dir, "b.key"), V.receiver);
      const a = loadOrCreateIdentity(join(dir, "a.key"), join(dir, "a.pub"));
      const b = loadOrCreateIdentity(join(dir, "b.key"), join(dir, "b.pub"));
      expect([a.nodeId, b.nodeId]).toEqual([V.senderId, V.receiverId]);
      expect(a.requestKey(b.nodeId, "out").toString("hex")).toBe(V.key);
      expect(b.requestKey(a.nodeId, "in").toString("hex")).toBe(V.key);
      const body = '{"image":"busybox","command":["echo","hi"]}';
      const url = "http://127.0.0.1:8088/v1/containers?b=2&a=1";
      const text = canonicalRequest({
        method: "POST",
        path: "/v1/containers",
        query: "?b=2&a=1",
        timestamp: "1767225600000",
        nonce: "000102030405060708090a0b0c0d0e0f",
        contentSha256: sha256Hex(body),
        to: V.receiverId,
      });
      expect(requestMac(a.requestKey(b.nodeId, "out"), text)).toBe(V.mac);
      const headers: Record<string, string> = {
        [AUTH_HEADERS.node]: V.senderId,
        [AUTH_HEADERS.timestamp]: "1767225600000",
        [AUTH_HEADERS.nonce]: "000102030405060708090a0b0c0d0e0f",
        [AUTH_HEADERS.contentSha256]: sha256Hex(body),
        [AUTH_HEADERS.to]: V.receiverId,
        [AUTH_HEADERS.mac]: V.mac,
      };
      const parsed = parseSignedHeaders({ headers: (n) => headers[n], now: 1767225600000, skewMs: 30_000 });
      if (!parsed.ok) throw new Error(parsed.reason);
      const key = b.requestKey(V.senderId, "in");
      expect(verifyMacHeaders(parsed.value, { method: "POST", url, key, selfId: V.receiverId }).ok).toBe(
        true,
      );
      // what macRequestHash sends differs only in its fresh nonce (and so MAC)
      const sent = macRequestHash(a, "POST", url, sha256Hex(body), 1767225600000, V.receiverId);
      expect(freshBlanked(sent, AUTH_HEADERS.mac)).toEqual(freshBlanked(headers, AUTH_HEADERS.mac));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
