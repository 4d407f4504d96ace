import { open } from "node:fs/promises";
import { nodeCrypto } from "./crypto.ts";
import type { Identity } from "./identity.ts";
import { NODE_ID_RE, verifySignature } from "./identity.ts";
import { macMatches, requestMac } from "./request-mac.ts";

/** Header names of a signed request (Docs/Security.md). */
export const AUTH_HEADERS = {
  node: "x-p2prc-node",
  timestamp: "x-p2prc-timestamp",
  nonce: "x-p2prc-nonce",
  contentSha256: "x-p2prc-content-sha256",
  signature: "x-p2prc-signature",
  /** Instead of the signature: the request's HMAC under the two nodes' request key (core/request-mac.ts). */
  mac: "x-p2prc-mac",
  /** On a node's answer to a signed request: `mac-v1` when it takes request MACs from the signer. */
  accepts: "x-p2prc-auth",
  /** The node the request is for (when the caller knows it): another node refuses it. */
  to: "x-p2prc-to",
} as const;

/**
 * What is signed: method, path, sorted query, timestamp, nonce and the body's SHA-256, one per line,
 * then the id of the node the request is for when the caller names one.
 */
export function canonicalRequest(p: {
  method: string;
  path: string;
  query: string;
  timestamp: string;
  nonce: string;
  contentSha256: string;
  to?: string | undefined;
}): string {
  const query = p.query.replace(/^\?/, "").split("&").filter(Boolean).sort().join("&");
  const lines = ["p2prc-v1", p.method.toUpperCase(), p.path, query, p.timestamp, p.nonce, p.contentSha256];
  if (p.to !== undefined) lines.push(p.to);
  return lines.join("\n");
}

/** The value of `x-p2prc-auth` from a node that takes request MACs. */
export const MAC_V1 = "mac-v1";

/**
 * What a request whose body is streamed signs as its body's SHA-256 (an image push): the body is not
 * covered by this signature, and the server checks it against a digest a later signed request carries.
 * The SHA-256 of the text `p2prc-v1 streamed body`.
 */
export const STREAMED_BODY_SHA256 = "bb86ce6814e88e01b1dd174e3a673cad92d821ea4177b4d9f091c977d7308c8f";

export function sha256Hex(body: Uint8Array | string): string {
  return nodeCrypto().createHash("sha256").update(body).digest("hex");
}

/** A file's SHA-256 and size, read through one reused buffer (memory flat, no garbage per chunk). */
export async function sha256OfFile(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = nodeCrypto().createHash("sha256");
  const fh = await open(path, "r");
  let bytes = 0;
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      bytes += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return { sha256: hash.digest("hex"), bytes };
}

/**
 * Headers that sign a request with this node's key. `to`, the id of the node it is for, binds the
 * request to that node: another node that receives it (a member forwarding it) refuses it.
 */
export function signRequest(
  identity: Identity,
  method: string,
  url: string,
  body: Uint8Array | string = "",
  now = Date.now(),
  to?: string,
): Record<string, string> {
  return signRequestHash(identity, method, url, sha256Hex(body), now, to);
}

/**
 * signRequest for a body known by its SHA-256 (hex) only: a large body streamed from a file or a
 * generator, hashed beforehand.
 */
export function signRequestHash(
  identity: Identity,
  method: string,
  url: string,
  contentSha256: string,
  now = Date.now(),
  to?: string,
): Record<string, string> {
  return authHeaders(identity, method, url, contentSha256, now, to, AUTH_HEADERS.signature, (text) =>
    identity.sign(text),
  );
}

/**
 * Headers that authenticate a request to node `to` with the two nodes' request key (an HMAC-SHA256 of the
 * same canonical text a signature covers) instead of a signature: for a node that said it takes them
 * (`x-p2prc-auth: mac-v1` on an answer). Throws E_IDENTITY for an id with no X25519 form.
 */
export function macRequestHash(
  identity: Identity,
  method: string,
  url: string,
  contentSha256: string,
  now: number,
  to: string,
): Record<string, string> {
  return authHeaders(identity, method, url, contentSha256, now, to, AUTH_HEADERS.mac, (text) =>
    requestMac(identity.requestKey(to, "out"), text),
  );
}

/**
 * The headers of an authenticated request: a fresh nonce, the canonical text over it, and `proof` of that
 * text (a signature or a MAC) under the header `proofHeader`; `x-p2prc-to` when the node is named.
 */
function authHeaders(
  identity: Identity,
  method: string,
  url: string,
  contentSha256: string,
  now: number,
  to: string | undefined,
  proofHeader: string,
  proof: (text: string) => string,
): Record<string, string> {
  const u = new URL(url);
  const timestamp = String(now);
  const nonce = nodeCrypto().randomBytes(16).toString("hex");
  const text = canonicalRequest({
    method,
    path: u.pathname,
    query: u.search,
    timestamp,
    nonce,
    contentSha256,
    to,
  });
  return {
    [AUTH_HEADERS.node]: identity.nodeId,
    [AUTH_HEADERS.timestamp]: timestamp,
    [AUTH_HEADERS.nonce]: nonce,
    [AUTH_HEADERS.contentSha256]: contentSha256,
    [proofHeader]: proof(text),
    ...(to ? { [AUTH_HEADERS.to]: to } : {}),
  };
}

export type RequestAuthResult =
  | { ok: true; nodeId: string; nonce: string; timestamp: number }
  | { ok: false; reason: string };

/** The auth headers of a request, well formed and within the clock window, not yet verified. */
export interface SignedHeaders {
  nodeId: string;
  timestamp: string;
  nonce: string;
  contentSha256: string;
  /** The Ed25519 signature, or undefined when the request carries a MAC instead. */
  signature: string | undefined;
  /** The request MAC (64 hex; `to` is then present), or undefined when it is signed. */
  mac: string | undefined;
  to: string | undefined;
}

/**
 * The cheap half of the check, done before any body is read: headers present and well formed,
 * timestamp within `skewMs` of `now`. Nothing here is verified yet: `nodeId` is only a claim.
 */
export function parseSignedHeaders(p: {
  headers: (name: string) => string | null | undefined;
  now: number;
  skewMs: number;
}): { ok: true; value: SignedHeaders } | { ok: false; reason: string } {
  const h = (name: string) => p.headers(name) ?? undefined;
  const nodeId = h(AUTH_HEADERS.node);
  const timestamp = h(AUTH_HEADERS.timestamp);
  const nonce = h(AUTH_HEADERS.nonce);
  const contentSha256 = h(AUTH_HEADERS.contentSha256);
  const signature = h(AUTH_HEADERS.signature);
  const mac = h(AUTH_HEADERS.mac);
  if (!nodeId || !timestamp || !nonce || !contentSha256 || (!signature && !mac))
    return { ok: false, reason: "request is not signed" };
  if (signature && mac)
    return { ok: false, reason: `send ${AUTH_HEADERS.signature} or ${AUTH_HEADERS.mac}, not both` };
  if (!NODE_ID_RE.test(nodeId)) return { ok: false, reason: `${AUTH_HEADERS.node}: not a node id` };
  const to = h(AUTH_HEADERS.to);
  if (to !== undefined && !NODE_ID_RE.test(to))
    return { ok: false, reason: `${AUTH_HEADERS.to}: not a node id` };
  if (mac !== undefined && to === undefined)
    return { ok: false, reason: `a request with ${AUTH_HEADERS.mac} names its node in ${AUTH_HEADERS.to}` };
  if (mac !== undefined && !/^[0-9a-f]{64}$/.test(mac))
    return { ok: false, reason: `${AUTH_HEADERS.mac}: expected 64 hex characters` };
  if (!/^\d{1,16}$/.test(timestamp))
    return { ok: false, reason: `${AUTH_HEADERS.timestamp}: not a timestamp` };
  if (!/^[0-9a-f]{32}$/.test(nonce))
    return { ok: false, reason: `${AUTH_HEADERS.nonce}: expected 32 hex characters` };
  if (!/^[0-9a-f]{64}$/.test(contentSha256))
    return { ok: false, reason: `${AUTH_HEADERS.contentSha256}: expected 64 hex characters` };
  if (Math.abs(p.now - Number(timestamp)) > p.skewMs)
    return { ok: false, reason: `timestamp outside ±${p.skewMs / 1000} s of this node's clock` };
  return {
    ok: true,
    value: { nodeId, timestamp, nonce, contentSha256, signature: signature || undefined, mac, to },
  };
}

/**
 * The costly half: the signature (over the signed body hash, so it needs no body) is the claimed
 * node's, `x-p2prc-to`, when present, is `selfId`, and, when `bodySha256` (hex) is given, the body
 * matches the signed hash. A server checks the body's hash after this, once it has read it.
 */
export function verifySignedHeaders(
  s: SignedHeaders,
  p: { method: string; url: string; bodySha256?: string; selfId?: string | undefined },
): RequestAuthResult {
  if (p.bodySha256 !== undefined && p.bodySha256 !== s.contentSha256)
    return { ok: false, reason: "body does not match its signed hash" };
  if (s.signature === undefined) return { ok: false, reason: "request is not signed" };
  if (!verifySignature(s.nodeId, signedText(s, p.method, p.url), s.signature))
    return { ok: false, reason: "bad signature" };
  return addressed(s, p.selfId);
}

/**
 * A request's MAC (`x-p2prc-mac`) under `key`, the request key of its claimed sender to this node
 * (Identity.requestKey(sender, "in")): the MAC holds and `x-p2prc-to` is `selfId`.
 */
export function verifyMacHeaders(
  s: SignedHeaders,
  p: { method: string; url: string; key: Buffer; selfId: string },
): RequestAuthResult {
  if (s.mac === undefined || s.to === undefined) return { ok: false, reason: "request has no MAC" };
  // addressed first: another node's MAC is under another key, and would read as a bad one
  if (s.to !== p.selfId) return { ok: false, reason: "request is addressed to another node (forwarded?)" };
  if (!macMatches(p.key, signedText(s, p.method, p.url), s.mac)) return { ok: false, reason: "bad MAC" };
  return addressed(s, p.selfId);
}

/** The canonical text a request's signature or MAC covers. */
function signedText(s: SignedHeaders, method: string, url: string): string {
  const u = new URL(url);
  return canonicalRequest({
    method,
    path: u.pathname,
    query: u.search,
    timestamp: s.timestamp,
    nonce: s.nonce,
    contentSha256: s.contentSha256,
    to: s.to,
  });
}

function addressed(s: SignedHeaders, selfId: string | undefined): RequestAuthResult {
  if (s.to !== undefined && selfId !== undefined && s.to !== selfId)
    return { ok: false, reason: "request is addressed to another node (forwarded?)" };
  return { ok: true, nodeId: s.nodeId, nonce: s.nonce, timestamp: Number(s.timestamp) };
}

/**
 * Checks a signed request: headers present and well formed, timestamp within `skewMs` of `now`, body
 * hash matching, signature by the claimed node. Replay (a nonce seen before) is the caller's check.
 */
export function verifyRequest(p: {
  method: string;
  url: string;
  headers: (name: string) => string | null | undefined;
  body: Uint8Array | string;
  now: number;
  skewMs: number;
  /** This node's id: a request addressed to another node is refused. */
  selfId?: string;
}): RequestAuthResult {
  const parsed = parseSignedHeaders(p);
  if (!parsed.ok) return parsed;
  return verifySignedHeaders(parsed.value, { ...p, bodySha256: sha256Hex(p.body) });
}
