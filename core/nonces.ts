// The replay check's memory: every nonce a member's request used within the window, kept compactly.

const NONCE_RE = /^[0-9a-f]{32}$/;
const NODE_ID_HEAD_RE = /^[0-9a-f]{13}/;
const TWO_32 = 2 ** 32;

/** FNV-1a over a string, 32 bits: the key of a nonce that is not 32 hex characters (never on the wire). */
function fnv(text: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16_777_619) >>> 0;
  return h;
}

/**
 * A signer's nonce as kept: 52 of the nonce's 128 random bits, XORed with 52 bits of the signer's id, as
 * one number (no string is kept). Two nonces held within the window that share their key (odds 2^-52 a
 * pair, a signer's own or another's) make the second look like a replay: a retryable 401, never a
 * replay let through (the same nonce of the same signer always has the same key).
 */
export function nonceKey(nodeId: string, nonce: string): number {
  const salt = NODE_ID_HEAD_RE.test(nodeId)
    ? [Number.parseInt(nodeId.slice(0, 5), 16), Number.parseInt(nodeId.slice(5, 13), 16)]
    : [fnv(nodeId, 2_166_136_261) & 0xfffff, fnv(nodeId, 5381)];
  const bits = NONCE_RE.test(nonce)
    ? [Number.parseInt(nonce.slice(19, 24), 16), Number.parseInt(nonce.slice(24), 16)]
    : [fnv(nonce, 2_166_136_261) & 0xfffff, fnv(nonce, 5381)];
  const key =
    ((bits[0] as number) ^ (salt[0] as number)) * TWO_32 +
    (((bits[1] as number) ^ (salt[1] as number)) >>> 0);
  // 0 marks an empty slot; 2^52 is no 52-bit key
  return key === 0 ? 2 ** 52 : key;
}

/**
 * A set of numbers in one Float64Array (open addressing, linear probing, at most half full): 8 bytes a
 * slot, 16–32 bytes a key, and one object for the garbage collector however many it holds. Keys are
 * random bits, so their low 32 bits place them. (1,000,000 nonces: 22 MB of RSS; as a Set of the
 * nonces' strings, 159 MB, and every one of them an object the collector walks.)
 */
export class NumberSet {
  private slots = new Float64Array(64);
  size = 0;

  has(key: number): boolean {
    const mask = this.slots.length - 1;
    for (let i = (key % TWO_32) & mask; ; i = (i + 1) & mask) {
      const at = this.slots[i] as number;
      if (at === key) return true;
      if (at === 0) return false;
    }
  }

  /** Adds `key` (not 0); false when it was there. */
  add(key: number): boolean {
    if (2 * (this.size + 1) > this.slots.length) this.grow();
    const mask = this.slots.length - 1;
    for (let i = (key % TWO_32) & mask; ; i = (i + 1) & mask) {
      const at = this.slots[i] as number;
      if (at === key) return false;
      if (at === 0) {
        this.slots[i] = key;
        this.size++;
        return true;
      }
    }
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Float64Array(old.length * 2);
    this.size = 0;
    for (const key of old) if (key !== 0) this.add(key);
  }
}

/** What `NonceCache.check` found. */
export type NonceUse = "fresh" | "replay" | "full";

/**
 * Nonces held at most by default (~44 MB): above what one node authenticates in a window. Request MACs
 * cost the node ~40 µs a request on its one serving thread (bench/signed M), ~25,000 a second, 1,500,000
 * in the 60 s a nonce is kept at the default skew; at 1,000,000 a single member without a rate limit
 * filled it in under a minute (429s from then on).
 */
export const MAX_NONCES = 2_000_000;

/**
 * Remembers nonces for a window so a captured request cannot be replayed. O(1) per request, memory
 * bounded: nonces are kept in time buckets (one NumberSet of keys per bucket of `windowMs / 4`, the
 * signer in the key), looked up in the few buckets that can still hold one, and a bucket that has aged
 * out is dropped whole — nothing is ever scanned. A nonce is kept for 2 × `windowMs` after it arrived (a
 * timestamp accepted at arrival is at most `windowMs` ahead, and it stays acceptable for `windowMs` past
 * it). At `maxEntries` the cache is full: `check` says so and keeps nothing (the server answers 429,
 * retryable) — forgetting a nonce early would let its request be replayed.
 */
export class NonceCache {
  private readonly width: number;
  /** Buckets by index (`floor(now / width)`): the keys of the nonces that arrived in that bucket. */
  private readonly buckets = new Map<number, NumberSet>();
  private entries = 0;
  /** Buckets looked into, over the cache's life (a test's measure of the work per request). */
  probes = 0;

  constructor(
    private readonly windowMs: number,
    readonly maxEntries = MAX_NONCES,
  ) {
    this.width = Math.max(1, Math.ceil(windowMs / 4));
  }

  /** Nonces held now. */
  get size(): number {
    return this.entries;
  }

  /** True when `nonce` of `nodeId` is fresh, and then remembered; false for a replay or a full cache. */
  use(nodeId: string, nonce: string, now: number): boolean {
    return this.check(nodeId, nonce, now) === "fresh";
  }

  /** "fresh" (now remembered), "replay" (seen within the window) or "full" (nothing kept: retry later). */
  check(nodeId: string, nonce: string, now: number): NonceUse {
    const key = nonceKey(nodeId, nonce);
    const current = Math.floor(now / this.width);
    // 2 × window after arrival, rounded up to whole buckets: the buckets from `oldest` to `current`
    const oldest = current - Math.ceil((2 * this.windowMs) / this.width);
    // about 9 buckets (a few more after the clock was set back): a bounded walk, never a scan of nonces
    for (const [index, bucket] of this.buckets) {
      if (index < oldest) {
        this.entries -= bucket.size;
        this.buckets.delete(index);
        continue;
      }
      this.probes++;
      if (bucket.has(key)) return "replay";
    }
    if (this.entries >= this.maxEntries) return "full";
    let bucket = this.buckets.get(current);
    if (!bucket) {
      bucket = new NumberSet();
      this.buckets.set(current, bucket);
    }
    bucket.add(key);
    this.entries++;
    return "fresh";
  }
}
