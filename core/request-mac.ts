// Request MACs (Docs/Security.md "Request MACs"). Once a node has accepted one of another's signed requests
// and said it takes MACs, the caller authenticates its next requests there with an HMAC-SHA256 under a key
// only the two of them can compute, instead of an Ed25519 signature each: verifying a signature costs the
// receiving node ~50 µs of CPU, an HMAC ~2 µs. The key needs no round trip and no session: it is X25519
// between the two nodes' own keys — each Ed25519 key in its X25519 form, as libsodium's
// crypto_sign_ed25519_pk_to_curve25519 and crypto_sign_ed25519_sk_to_curve25519 map them — through
// HKDF-SHA256 with both ids, one key per direction. A node id is its Ed25519 public key, so the receiver
// computes the sender's key from the id the request claims, after the membership check.
import type { KeyObject } from "node:crypto";
import { nodeCrypto } from "./crypto.ts";
import { P2prcError } from "./errors.ts";

/** The field prime of Curve25519 and Edwards25519: 2^255 - 19. */
const P = (1n << 255n) - 19n;
/** DER prefixes of an X25519 public key (SPKI) and private key (PKCS#8); the 32 raw bytes follow. */
const X25519_SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");
const X25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
/** HKDF's salt: what the derived keys are for. */
const KEY_SALT = "p2prc-v1 request mac";

function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n;
  let b = base % mod;
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % mod;
    b = (b * b) % mod;
    e >>= 1n;
  }
  return result;
}

/**
 * The X25519 public key of a node id (its Ed25519 public key): the Edwards point's Montgomery u-coordinate,
 * u = (1 + y) / (1 - y) mod p. Throws E_IDENTITY for an id with no such form (y ≥ p, or y = 1: the
 * identity point).
 */
export function x25519PublicOfNodeId(nodeId: string): KeyObject {
  const bytes = Buffer.from(nodeId, "hex");
  if (bytes.length !== 32) throw new P2prcError("E_IDENTITY", `malformed node id "${nodeId.slice(0, 80)}"`);
  bytes[31] = (bytes[31] as number) & 0x7f; // the top bit is the sign of x, not part of y
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(bytes[i] as number);
  if (y >= P || y === 1n)
    throw new P2prcError("E_IDENTITY", `node id ${nodeId.slice(0, 12)}… has no X25519 form`);
  let u = ((1n + y) * modPow(P + 1n - y, P - 2n, P)) % P;
  const raw = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) {
    raw[i] = Number(u & 0xffn);
    u >>= 8n;
  }
  return nodeCrypto().createPublicKey({
    key: Buffer.concat([X25519_SPKI_PREFIX, raw]),
    format: "der",
    type: "spki",
  });
}

/** The X25519 private key of an Ed25519 private key: the first half of SHA-512 of its seed (X25519 clamps it). */
export function x25519PrivateOfEd25519(privateKey: KeyObject): KeyObject {
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d as string, "base64url");
  const scalar = nodeCrypto().createHash("sha512").update(seed).digest().subarray(0, 32);
  return nodeCrypto().createPrivateKey({
    key: Buffer.concat([X25519_PKCS8_PREFIX, scalar]),
    format: "der",
    type: "pkcs8",
  });
}

/** Shared secrets and keys kept per peer; emptied at this many (no peer can make it grow). */
const MAX_PEERS = 4096;

/**
 * A node's request keys: `out(peer)` authenticates this node's requests to `peer`, `in(peer)` checks peer's
 * requests to this node. Each peer's X25519 secret is computed once (~100 µs) and kept.
 */
export class RequestKeys {
  private readonly keys = new Map<string, { out: Buffer; in: Buffer }>();

  constructor(
    private readonly selfId: string,
    private readonly x25519Private: KeyObject,
  ) {}

  /** The key of this node's requests to `peerId`. Throws E_IDENTITY for an id with no X25519 form. */
  out(peerId: string): Buffer {
    return this.pair(peerId).out;
  }

  /** The key of `peerId`'s requests to this node. Throws E_IDENTITY for an id with no X25519 form. */
  in(peerId: string): Buffer {
    return this.pair(peerId).in;
  }

  private pair(peerId: string): { out: Buffer; in: Buffer } {
    const known = this.keys.get(peerId);
    if (known) return known;
    const crypto = nodeCrypto();
    let shared: Buffer;
    try {
      shared = crypto.diffieHellman({
        privateKey: this.x25519Private,
        publicKey: x25519PublicOfNodeId(peerId),
      });
    } catch (err) {
      if (err instanceof P2prcError) throw err;
      throw new P2prcError("E_IDENTITY", `no key agreement with node ${peerId.slice(0, 12)}…`, {
        cause: err,
      });
    }
    // a low-order point gives an all-zero secret: anyone could compute it
    if (shared.every((b) => b === 0))
      throw new P2prcError("E_IDENTITY", `node id ${peerId.slice(0, 12)}… is a low-order point`);
    const derive = (from: string, to: string) =>
      Buffer.from(crypto.hkdfSync("sha256", shared, KEY_SALT, `${from}\n${to}`, 32));
    const pair = { out: derive(this.selfId, peerId), in: derive(peerId, this.selfId) };
    if (this.keys.size >= MAX_PEERS) this.keys.clear();
    this.keys.set(peerId, pair);
    return pair;
  }
}

/** HMAC-SHA256 of `text` under `key`, hex. */
export function requestMac(key: Buffer, text: string): string {
  return nodeCrypto().createHmac("sha256", key).update(text).digest("hex");
}

/** Whether `mac` (64 hex) is the HMAC of `text` under `key`; in constant time. Never throws. */
export function macMatches(key: Buffer, text: string, mac: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(mac)) return false;
  const crypto = nodeCrypto();
  const expected = crypto.createHmac("sha256", key).update(text).digest();
  return crypto.timingSafeEqual(expected, Buffer.from(mac, "hex"));
}
