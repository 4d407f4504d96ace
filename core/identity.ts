import type { KeyObject } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { canonicalJson } from "./canonical-json.ts";
import { nodeCrypto } from "./crypto.ts";
import { P2prcError } from "./errors.ts";
import { RequestKeys, x25519PrivateOfEd25519 } from "./request-mac.ts";

/** SPKI DER prefix of an Ed25519 public key; the raw 32 key bytes follow it. */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** A node id: the raw Ed25519 public key as 64 lowercase hex characters (as in kachery-p2p). */
export const NODE_ID_RE = /^[0-9a-f]{64}$/;

/** This node's key pair. The id is derived from the public key, so anyone can verify from the id alone. */
export interface Identity {
  readonly nodeId: string;
  readonly publicKeyPem: string;
  /** Ed25519 signature (base64) over raw bytes. */
  sign(data: Uint8Array | string): string;
  /** Ed25519 signature (base64) over the canonical JSON of a value. */
  signJson(value: unknown): string;
  /**
   * The request MAC key (core/request-mac.ts) of this node's requests to `peerId` ("out") or of peerId's
   * requests to this node ("in"). Throws E_IDENTITY for an id with no X25519 form.
   */
  requestKey(peerId: string, direction: "out" | "in"): Buffer;
}

function nodeIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: "spki", format: "der" });
  return Buffer.from(der.subarray(der.length - 32)).toString("hex");
}

function fromPrivateKey(privateKey: KeyObject): Identity {
  const publicKey = nodeCrypto().createPublicKey(privateKey);
  const nodeId = nodeIdOf(publicKey);
  const publicKeyPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  const sign = (data: Uint8Array | string) =>
    nodeCrypto()
      .sign(null, typeof data === "string" ? Buffer.from(data) : data, privateKey)
      .toString("base64");
  let keys: RequestKeys | undefined; // made on first use: most commands never need it
  const requestKey = (peerId: string, direction: "out" | "in") => {
    keys ??= new RequestKeys(nodeId, x25519PrivateOfEd25519(privateKey));
    return direction === "out" ? keys.out(peerId) : keys.in(peerId);
  };
  return { nodeId, publicKeyPem, sign, signJson: (value) => sign(canonicalJson(value)), requestKey };
}

/**
 * The node id recorded in a public key file (PEM, SPKI), read without loading node:crypto;
 * undefined when the file is absent or not an Ed25519 key.
 */
export function readNodeId(publicKeyPath: string): string | undefined {
  if (!existsSync(publicKeyPath)) return undefined;
  const pem = readFileSync(publicKeyPath, "utf8");
  const body = /-----BEGIN PUBLIC KEY-----([\s\S]*?)-----END PUBLIC KEY-----/.exec(pem)?.[1];
  if (!body) return undefined;
  const der = Buffer.from(body.replace(/\s+/g, ""), "base64");
  if (der.length !== 44 || !der.subarray(0, 12).equals(ED25519_SPKI_PREFIX)) return undefined;
  return der.subarray(12).toString("hex");
}

/** The public key of a node id (throws E_IDENTITY for a malformed id). */
export function publicKeyOfNodeId(nodeId: string): KeyObject {
  if (!NODE_ID_RE.test(nodeId))
    throw new P2prcError("E_IDENTITY", `malformed node id "${nodeId.slice(0, 80)}"`);
  return nodeCrypto().createPublicKey({
    key: Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(nodeId, "hex")]),
    format: "der",
    type: "spki",
  });
}

/** Public keys of the ids verified lately; emptied at KEY_CACHE_MAX (no id can make it grow). */
const keyCache = new Map<string, KeyObject>();
const KEY_CACHE_MAX = 4096;

function cachedPublicKey(nodeId: string): KeyObject {
  let key = keyCache.get(nodeId);
  if (!key) {
    key = publicKeyOfNodeId(nodeId);
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
    keyCache.set(nodeId, key);
  }
  return key;
}

/** True when `signature` (base64) is nodeId's signature over `data`. Never throws. */
export function verifySignature(nodeId: string, data: Uint8Array | string, signature: string): boolean {
  try {
    // Exactly one spelling is valid: Buffer.from would ignore stray characters.
    if (!/^[A-Za-z0-9+/]{86}==$/.test(signature)) return false;
    const sig = Buffer.from(signature, "base64");
    return nodeCrypto().verify(
      null,
      typeof data === "string" ? Buffer.from(data) : data,
      cachedPublicKey(nodeId),
      sig,
    );
  } catch {
    return false;
  }
}

/** True when `signature` is nodeId's signature over the canonical JSON of `value`. Never throws. */
export function verifyJson(nodeId: string, value: unknown, signature: string): boolean {
  let text: string;
  try {
    text = canonicalJson(value);
  } catch {
    return false;
  }
  return verifySignature(nodeId, text, signature);
}

/** A fresh in-memory identity (tests, throwaway clients). */
export function generateIdentity(): Identity {
  return fromPrivateKey(nodeCrypto().generateKeyPairSync("ed25519").privateKey);
}

/**
 * Loads the node key from `privateKeyPath`, or creates it (mode 0600, directory 0700) on first use.
 * The public key is written beside it for people to read; the id is always derived from the private key.
 */
export function loadOrCreateIdentity(privateKeyPath: string, publicKeyPath: string): Identity {
  if (existsSync(privateKeyPath)) {
    let key: KeyObject;
    try {
      key = nodeCrypto().createPrivateKey(readFileSync(privateKeyPath));
    } catch (err) {
      throw new P2prcError(
        "E_IDENTITY",
        `cannot read node key ${privateKeyPath}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (key.asymmetricKeyType !== "ed25519") {
      throw new P2prcError("E_IDENTITY", `node key ${privateKeyPath} is not an Ed25519 key`);
    }
    const identity = fromPrivateKey(key);
    if (!existsSync(publicKeyPath)) writeFileSync(publicKeyPath, identity.publicKeyPem, { mode: 0o644 });
    return identity;
  }
  const dir = privateKeyPath.slice(0, privateKeyPath.lastIndexOf("/")) || ".";
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey } = nodeCrypto().generateKeyPairSync("ed25519");
  writeFileSync(privateKeyPath, privateKey.export({ type: "pkcs8", format: "pem" }), {
    mode: 0o600,
    flag: "wx",
  });
  chmodSync(privateKeyPath, 0o600);
  const identity = fromPrivateKey(privateKey);
  writeFileSync(publicKeyPath, identity.publicKeyPem, { mode: 0o644 });
  return identity;
}
