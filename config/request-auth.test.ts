import { describe, expect, test } from "bun:test";
import { generateIdentity } from "./identity.ts";
import { AUTH_HEADERS, NonceCache, signRequest, verifyRequest } from "./request-auth.ts";

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
