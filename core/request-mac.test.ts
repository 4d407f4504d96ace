// Request MAC keys: the Ed25519 → X25519 maps against published vectors, agreement between two nodes, one
// key per direction, and the ids that must not give a key.
import { describe, expect, test } from "bun:test";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { P2prcError } from "./errors.ts";
import { generateIdentity } from "./identity.ts";
import {
  macMatches,
  RequestKeys,
  requestMac,
  x25519PrivateOfEd25519,
  x25519PublicOfNodeId,
} from "./request-mac.ts";

const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const ed25519OfSeed = (seedHex: string) =>
  createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, Buffer.from(seedHex, "hex")]),
    format: "der",
    type: "pkcs8",
  });
const raw = (key: ReturnType<typeof createPublicKey>) =>
  Buffer.from(key.export({ type: "spki", format: "der" }).subarray(-32)).toString("hex");
const idOf = (seedHex: string) => raw(createPublicKey(ed25519OfSeed(seedHex)));

// libsodium test/default/ed25519_convert.{c,exp}, and RFC 8032 section 7.1 test 1 (its X25519 form as
// libsodium computes it)
const VECTORS = [
  {
    seed: "421151a459faeade3d247115f94aedae42318124095afabe4d1451a559faedee",
    id: "b5076a8474a832daee4dd5b4040983b6623b5f344aca57d4d6ee4baf3f259e6e",
    x25519: "f1814f0e8ff1043d8a44d25babff3cedcae6c22c3edaa48f857ae70de2baae50",
  },
  {
    seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    id: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    x25519: "d85e07ec22b0ad881537c2f44d662d1a143cf830c57aca4305d85c7a90f6b62e",
  },
];

describe("Ed25519 → X25519", () => {
  test.each(VECTORS)("the published vector of seed $seed: from the id and from the private key", (v) => {
    expect(idOf(v.seed)).toBe(v.id);
    expect(raw(x25519PublicOfNodeId(v.id))).toBe(v.x25519);
    expect(raw(createPublicKey(x25519PrivateOfEd25519(ed25519OfSeed(v.seed))))).toBe(v.x25519);
  });

  test("for fresh keys, the public form of the id is the public half of the private form", () => {
    for (let i = 0; i < 20; i++) {
      const seed = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");
      expect(raw(x25519PublicOfNodeId(idOf(seed)))).toBe(
        raw(createPublicKey(x25519PrivateOfEd25519(ed25519OfSeed(seed)))),
      );
    }
  });

  test("an id with no X25519 form is E_IDENTITY: y = 1 (the identity point), y ≥ p", () => {
    const y1 = `01${"00".repeat(31)}`;
    const overP = `${"ff".repeat(31)}7f`; // 2^255 - 1
    for (const id of [y1, overP]) {
      expect(() => x25519PublicOfNodeId(id)).toThrow(P2prcError);
    }
  });
});

describe("RequestKeys", () => {
  const a = generateIdentity();
  const b = generateIdentity();

  test("two nodes compute the same key for each direction, and the two directions differ", () => {
    expect(a.requestKey(b.nodeId, "out").equals(b.requestKey(a.nodeId, "in"))).toBe(true);
    expect(b.requestKey(a.nodeId, "out").equals(a.requestKey(b.nodeId, "in"))).toBe(true);
    expect(a.requestKey(b.nodeId, "out").equals(a.requestKey(b.nodeId, "in"))).toBe(false);
    // a third node's key with b is another
    const c = generateIdentity();
    expect(c.requestKey(b.nodeId, "out").equals(a.requestKey(b.nodeId, "out"))).toBe(false);
  });

  test("a low-order id (y = 0, y = p - 1: anyone could compute the secret) gives no key", () => {
    const keys = new RequestKeys(a.nodeId, x25519PrivateOfEd25519(ed25519OfSeed(VECTORS[0]?.seed as string)));
    const y0 = "00".repeat(32);
    const pMinus1 = `ec${"ff".repeat(30)}7f`;
    for (const id of [y0, pMinus1]) {
      expect(() => keys.in(id)).toThrow(P2prcError);
    }
  });

  test("a MAC holds under its key only, and for its text only", () => {
    const key = a.requestKey(b.nodeId, "out");
    const mac = requestMac(key, "p2prc-v1\nGET\n/v1/specs");
    expect(mac).toMatch(/^[0-9a-f]{64}$/);
    expect(macMatches(b.requestKey(a.nodeId, "in"), "p2prc-v1\nGET\n/v1/specs", mac)).toBe(true);
    expect(macMatches(b.requestKey(a.nodeId, "in"), "p2prc-v1\nGET\n/v1/specz", mac)).toBe(false);
    expect(macMatches(a.requestKey(b.nodeId, "in"), "p2prc-v1\nGET\n/v1/specs", mac)).toBe(false);
    expect(macMatches(key, "x", "not hex")).toBe(false);
  });
});
