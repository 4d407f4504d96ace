// What gossip sends a peer and what it takes of an answer, apart from its I/O: the exchange request and
// answer, the sync plan after differing digests (records to push, death notices to push, ids to want), and
// which pushed records and notices are worth verifying. Plain data and predicates over the table in, plain
// data out; p2p/gossip.ts (the shell) looks the ids up, signs and posts.
import { pick, type Random, shuffle, type Target } from "./gossip-core.ts";
import { digestHash, verifyRecord } from "./table.ts";
import type {
  ClusterDigest,
  Digest,
  ExchangeRequest,
  ExchangeResponse,
  SignedCluster,
  SignedRecord,
} from "./types.ts";

/** What this node knows of a node id, for the sync decisions (the shell's table and introductions). */
export interface Knowledge {
  self: string;
  /** A node this node vouches for: itself, `trusted`, a member or host of one of its clusters. */
  vouched: (id: string) => boolean;
  /** Whether a record of a node the table does not hold would be taken (see Introductions.wants). */
  wants: (id: string, version: number) => boolean;
  random: Random;
}

/**
 * The node an exchange is with, when this node knows it: a seed is an address, whoever answers there now
 * is welcome (its id is learnt from the answer).
 */
export function knownPeer(target: Target): string | undefined {
  return target.seed || !target.id ? undefined : target.id;
}

export interface ExchangeAsk {
  /** This node's record. */
  self: SignedRecord;
  /** The hash of this node's digest. */
  hash: string;
  /** The node asked, if known (`knownPeer`). */
  known: string | undefined;
  /** A probe of an introduced node. */
  probe: boolean;
  /** The version of the peer's record this node holds. */
  have: number | undefined;
  /** The version of this node's record the peer said it holds. */
  held: number | undefined;
  clusters: ClusterDigest;
}

/**
 * The exchange request. It says which version of the peer's record is held, and carries this node's
 * record only when the peer is known to hold an older one (or is not known, or is probed). When nothing
 * is known of what it holds (no contact yet), the record is left out: a peer whose copy is older sees a
 * different digest hash and pulls it in the sync that follows.
 */
export function exchangeRequest(a: ExchangeAsk): ExchangeRequest {
  const request: ExchangeRequest = { hash: a.hash };
  if (!a.known || a.probe || (a.held !== undefined && a.held !== a.self.record.version))
    request.from = a.self;
  if (a.have !== undefined) request.have = a.have;
  if (a.clusters.length) request.clusters = a.clusters;
  return request;
}

/**
 * Who answered an exchange: the node whose verified record came back, or the known peer when this node
 * told it it holds its current record. Throws when the answer cannot be taken as that node's.
 */
export function answeredBy(
  url: string,
  res: ExchangeResponse,
  known: string | undefined,
  have: number | undefined,
): { id: string; record?: SignedRecord } {
  if (res.from !== undefined) {
    const peer = verifyRecord(res.from);
    if (!peer) throw new Error(`${url}: answered with a record that does not verify`);
    if (known && peer.record.id !== known) throw new Error(`${url}: answered as another node`);
    return { id: peer.record.id, record: peer };
  }
  if (known && have !== undefined) return { id: known }; // it knows that this node holds its current record
  throw new Error(`${url}: answered without its record`);
}

export interface ExchangeQuestion {
  /** This node's digest and record. */
  digest: Digest;
  self: SignedRecord;
  /** The caller's request. */
  hash: string;
  have: number | undefined;
  /** Where the request came from, as this node saw it. */
  observed: string | undefined;
  /** The version of the caller's record held now, when the caller is known by its signature. */
  got: number | undefined;
  /** The cluster documents held newer than the caller's, and the versions held older. */
  newer: SignedCluster[];
  older: ClusterDigest;
}

/**
 * The answer to an exchange: this node's record unless the caller holds its current version, the version
 * of the caller's record held, the digest when the hashes differ, and the cluster documents to catch up.
 */
export function exchangeAnswer(q: ExchangeQuestion): ExchangeResponse {
  const same = digestHash(q.digest) === q.hash;
  const response: ExchangeResponse = { observed: q.observed, same };
  if (q.have !== q.self.record.version) response.from = q.self;
  if (q.got !== undefined) response.got = q.got;
  if (!same) response.digest = q.digest;
  if (q.newer.length) response.clusters = q.newer;
  if (q.older.length) response.olderClusters = q.older;
  return response;
}

/** What one sync carries: ids of the records and death notices to push, and the ids wanted. */
export interface SyncPlan {
  records: string[];
  deaths: string[];
  want: string[];
}

/**
 * After differing digests: push what the peer lacks, pull what it has newer — at most `cap` of each (nodes
 * held and vouched for first, the rest at random), so an exchange stays small and quick whatever the two
 * tables hold; the rest follows in later rounds.
 */
export function planSync(mine: Digest, theirs: Digest, cap: number, k: Knowledge): SyncPlan {
  const own = new Map(mine.map(([id, version, dead]) => [id, { version, dead }]));
  const their = new Map(theirs.map(([id, version, dead]) => [id, { version, dead }]));
  const pushRecords: string[] = [];
  const pushDeaths: string[] = [];
  for (const [id, m] of own) {
    const t = their.get(id);
    if (t && t.version >= m.version && (t.dead || !m.dead)) continue;
    if (m.dead) {
      if (!t || t.version <= m.version) pushDeaths.push(id);
    } else if (t ? t.version < m.version : id === k.self || k.vouched(id)) {
      // a node the peer does not hold is not pushed (unless vouched for): the peer would take it only as
      // an introduction, and skip it while one waits; it pulls what it lacks itself, from its digests
      pushRecords.push(id);
    }
  }
  const wanted: string[] = [];
  for (const [id, t] of their) {
    const m = own.get(id);
    if (m) {
      if (t.version > m.version || (t.dead && !m.dead && t.version >= m.version)) wanted.push(id);
    } else if (!t.dead && k.wants(id, t.version)) {
      wanted.push(id); // new to this node, not waiting for a probe nor found unreachable lately
    }
  }
  return {
    records: pick(pushRecords, cap, (id) => id === k.self || k.vouched(id), k.random),
    deaths: pick(pushDeaths, cap, () => false, k.random),
    want: pick(wanted, cap, (id) => own.has(id) || k.vouched(id), k.random),
  };
}

/** A pushed record worth verifying, ranked: 0 a newer version of a node held, 1 vouched for, 2 an introduction. */
export interface RankedRecord {
  raw: unknown;
  rank: 0 | 1 | 2;
}

/**
 * Ranks the records a peer pushed or answered, unverified: newer versions of nodes held (`heldVersion`)
 * first, then nodes vouched for, then introductions this node would take; the rest are left out. Within a
 * rank the order is random: records come in digest order (by id), and nodes told of the same nodes would
 * otherwise all probe the same few first, each of those answering every node at once.
 */
export function rankRecords(
  records: unknown[],
  heldVersion: (id: string) => number | undefined,
  k: Knowledge,
): RankedRecord[] {
  const ranked = records.flatMap((raw): RankedRecord[] => {
    const r = raw as Partial<SignedRecord> | null;
    const id = r?.record?.id;
    const version = r?.record?.version;
    if (typeof id !== "string" || typeof version !== "number") return [];
    const held = heldVersion(id);
    if (held !== undefined) return held < version ? [{ raw, rank: 0 }] : [];
    if (k.vouched(id)) return [{ raw, rank: 1 }];
    return k.wants(id, version) ? [{ raw, rank: 2 }] : [];
  });
  shuffle(ranked, k.random);
  return ranked.sort((a, b) => a.rank - b.rank);
}

/**
 * Which ranked records are verified: at most `cap`, and introductions only within `room` (what the
 * introducer may still introduce): the others are not even verified (a signature check is most of their cost).
 */
export function recordsToVerify(ranked: RankedRecord[], room: number, cap: number): unknown[] {
  let left = room;
  return ranked
    .filter((r) => r.rank < 2 || left-- > 0)
    .slice(0, cap)
    .map((r) => r.raw);
}

/**
 * Which pushed death notices are worth verifying: at most `cap`; about a node held here (`held`: in the
 * table, not dead) from a reporter held here (any other would be ignored), and one about this node
 * itself from any reporter, first (its only effect is that this node signs a newer record). A node that
 * ran late enough to declare every peer dead, and was declared dead by them, holds none of its
 * reporters: requiring one left it cut off for good (6 of 100 nodes started at once in bench/gossip).
 */
export function deathsToVerify(
  deaths: unknown[],
  self: string,
  held: (id: string) => boolean,
  cap: number,
): unknown[] {
  const live = (id: unknown) => typeof id === "string" && held(id);
  const of = (raw: unknown) => raw as { id?: unknown; reporter?: unknown } | null;
  const aboutSelf = deaths.filter((raw) => of(raw)?.id === self && typeof of(raw)?.reporter === "string");
  const others = deaths.filter((raw) => {
    const d = of(raw);
    return d?.id !== self && live(d?.id) && live(d?.reporter);
  });
  return [...aboutSelf, ...others].slice(0, cap);
}
