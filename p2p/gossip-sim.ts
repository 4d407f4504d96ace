// Gossip beyond one machine, by simulation: N nodes on an in-memory network, rounds driven by a
// ManualClock, each exchange built and answered by the pure sync core (gossip-sync.ts: exchangeRequest,
// exchangeAnswer, planSync; digestHash) on real digests and records. Bytes are what GossipStats counts
// (the JSON bodies). Test and bench support (never imported by index.ts).
//
// The network starts converged (every node holds every record at version 1); then one node publishes a
// new version (its offer changed, say) and the simulation counts the rounds until every node holds it,
// and the bytes per node per round meanwhile and after. Rounds are synchronous: every exchange of a round
// reads the tables as they were when it began.
//
// Modelled rather than run: the choice of targets. chooseTargets (gossip-core.ts) sorts every peer each
// round — O(N log N) per node, 10^9 steps a round at N = 10,000 — so each node here walks its peers in
// an order of its own (an affine permutation, as random as the seed), `fanout` a round: what choosing
// among the least recently tried comes to once every peer has been tried.
import { ManualClock } from "../core/index.ts";
import { OFFER } from "./fixtures.ts";
import type { Random } from "./gossip-core.ts";
import { exchangeAnswer, exchangeRequest, type Knowledge, planSync, type SyncPlan } from "./gossip-sync.ts";
import { digestHash } from "./table.ts";
import type { Digest, ExchangeResponse, SignedRecord } from "./types.ts";

export interface SimOptions {
  nodes: number;
  /** Peers each node contacts a round (config `gossipFanout`, default 3). */
  fanout?: number;
  /** Most records one sync carries each way (config `gossipMaxRecords`, default 100). */
  cap?: number;
  /** Round interval (config `gossipIntervalMs`, default 1000). */
  intervalMs?: number;
  seed?: number;
  /** Give up after this many rounds (default 100). */
  maxRounds?: number;
}

export interface SimResult {
  nodes: number;
  /** Rounds until every node held the new version (maxRounds + 1: it never did). */
  rounds: number;
  /** Nodes holding the new version after each round. */
  spread: number[];
  /** Mean bytes a node sent per round while the new version spread (as many were received). */
  bytesPerNodeRoundSpreading: number;
  /** Mean bytes a node sent in a round once every table was equal again (as many were received). */
  bytesPerNodeRoundSteady: number;
  /** Exchanges whose digests differed (each one sends a digest of every node). */
  differing: number;
  /** Simulated time to converge, at intervalMs a round. */
  convergeMs: number;
}

/** A repeatable random source (a linear congruential generator). */
export function seededRandom(seed = 1): Random {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0;
    return s / 2 ** 32;
  };
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
const hex64 = (n: number) => n.toString(16).padStart(64, "0");
/** A base64 string the size of an Ed25519 signature. */
const SIGNATURE = `${"A".repeat(86)}==`;
/** A PEM the size of a node's self-signed certificate (what makes a record ~1.4 KB). */
const CERT = `-----BEGIN CERTIFICATE-----\n${`${"A".repeat(64)}\n`.repeat(9)}-----END CERTIFICATE-----\n`;

function recordOf(n: number, version: number): SignedRecord {
  return {
    record: {
      id: hex64(n),
      name: `node-${n}`,
      addresses: [{ host: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, port: 8088 }],
      nat: false,
      reach: "direct",
      version,
      metadata: "",
      offer: OFFER,
      issuedAt: version,
      cert: CERT,
    },
    signature: SIGNATURE,
  };
}

/** JSON length of a message, its digest counted once per digest (the same arrays recur). */
function sizer() {
  const digestBytes = new WeakMap<Digest, number>();
  return (message: object): number => {
    const { digest, ...rest } = message as { digest?: Digest };
    if (!digest) return JSON.stringify(rest).length;
    let d = digestBytes.get(digest);
    if (d === undefined) {
      d = JSON.stringify(digest).length;
      digestBytes.set(digest, d);
    }
    return JSON.stringify(rest).length + d + ',"digest":'.length;
  };
}

/** Runs one simulation (see the file's comment). */
export function simulate(o: SimOptions): SimResult {
  const n = o.nodes;
  const fanout = Math.min(o.fanout ?? 3, n - 1);
  const cap = o.cap ?? 100;
  const intervalMs = o.intervalMs ?? 1000;
  const maxRounds = o.maxRounds ?? 100;
  const random = seededRandom(o.seed ?? 1);
  const clock = new ManualClock(1_700_000_000_000);
  const size = sizer();

  // Every node holds every record at version 1; node 0 then publishes version 2. A node's table is one
  // of two digests (shared arrays: the sim holds two, not N, tables of N rows).
  const ids = Array.from({ length: n }, (_, i) => hex64(i));
  const base: Digest = ids.map((id) => [id, 1, false]);
  const updated: Digest = base.map((e, i) => (i === 0 ? [e[0], 2, false] : e));
  const digests = [base, updated];
  const changed = recordOf(0, 2);
  const record = (node: number, holdsNew: boolean) => (node === 0 && holdsNew ? changed : recordOf(node, 1));
  /** 1 where the node holds node 0's new version. */
  let holds = new Uint8Array(n);
  holds[0] = 1;

  // each node walks its peers in its own order: i + offset + k·stride (mod n), stride coprime with n
  const walk = Array.from({ length: n }, () => {
    let stride = 1 + Math.floor(random() * (n - 1));
    while (gcd(stride, n) !== 1) stride = (stride % (n - 1)) + 1;
    return { offset: Math.floor(random() * n), stride, k: 0 };
  });
  const nextPeer = (i: number): number => {
    const w = walk[i] as (typeof walk)[number];
    for (;;) {
      const p = (w.offset + w.k++ * w.stride) % n;
      if (p !== i) return p;
    }
  };

  // planSync is pure and, under the cap, deterministic: one plan per pair of digests
  const plans = new Map<Digest, Map<Digest, SyncPlan>>();
  const knowledge = (self: string): Knowledge => ({ self, vouched: () => false, wants: () => true, random });
  const plan = (mine: Digest, theirs: Digest, self: string): SyncPlan => {
    let row = plans.get(mine);
    if (!row) {
      row = new Map();
      plans.set(mine, row);
    }
    let p = row.get(theirs);
    if (!p) {
      p = planSync(mine, theirs, cap, knowledge(self));
      row.set(theirs, p);
    }
    return p;
  };

  let bytes = 0;
  let differing = 0;
  const spread: number[] = [];
  let steadyBytes = 0;
  let rounds = 0;
  let converged = false;

  /** One exchange of `c` with `p`, reading `cur`, writing `next`. */
  const exchange = (c: number, p: number, cur: Uint8Array, next: Uint8Array) => {
    const cNew = cur[c] === 1;
    const pNew = cur[p] === 1;
    const cDigest = digests[cur[c] as number] as Digest;
    // what c holds of p's record, and (told by p's last answer) what p holds of c's
    const have = p === 0 ? (cNew ? 2 : 1) : 1;
    const held = c === 0 ? (pNew ? 2 : 1) : 1;
    const request = exchangeRequest({
      self: record(c, cNew),
      hash: digestHash(cDigest),
      known: ids[c],
      probe: false,
      have,
      held,
      clusters: [],
    });
    bytes += size(request);
    // p takes c's record when c sent it (it was newer)
    let pHolds = pNew;
    if (request.from && c === 0 && cNew) pHolds = true;
    const answer: ExchangeResponse = exchangeAnswer({
      digest: digests[pHolds ? 1 : 0] as Digest,
      self: record(p, pNew),
      hash: request.hash,
      have: request.have,
      observed: "10.0.0.1",
      got: c === 0 ? (pHolds ? 2 : 1) : 1,
      newer: [],
      older: [],
    });
    bytes += size(answer);
    let cHolds = cNew;
    if (answer.from && p === 0 && pNew) cHolds = true;
    if (!answer.same && answer.digest) {
      differing++;
      const mine = digests[cHolds ? 1 : 0] as Digest;
      const s = plan(mine, answer.digest, ids[c] as string);
      if (s.records.length || s.deaths.length || s.want.length) {
        const pushed = s.records.map((id) => record(Number.parseInt(id, 16), cHolds));
        bytes += size({ from: record(c, cHolds), records: pushed, deaths: [], want: s.want });
        if (s.records.includes(ids[0] as string) && cHolds) pHolds = true;
        const answered = s.want.map((id) => record(Number.parseInt(id, 16), pHolds));
        bytes += size({ records: answered, deaths: [] });
        if (s.want.includes(ids[0] as string) && pHolds) cHolds = true;
      }
    }
    if (cHolds) next[c] = 1;
    if (pHolds) next[p] = 1;
  };

  const round = () => {
    const cur = holds;
    const next = new Uint8Array(cur);
    const before = bytes;
    for (let c = 0; c < n; c++) for (let f = 0; f < fanout; f++) exchange(c, nextPeer(c), cur, next);
    holds = next;
    rounds++;
    const count = next.reduce((a, b) => a + b, 0);
    spread.push(count);
    if (converged) steadyBytes = bytes - before;
    else if (count === n) converged = true;
  };

  const cancel = clock.setInterval(round, intervalMs);
  const start = clock.now();
  while (!converged && rounds < maxRounds) clock.advance(intervalMs);
  const convergedAt = rounds;
  const convergeMs = clock.now() - start;
  const spreadingBytes = bytes;
  if (converged) clock.advance(intervalMs); // one steady round, tables equal everywhere
  cancel();
  return {
    nodes: n,
    rounds: converged ? convergedAt : maxRounds + 1,
    spread: spread.slice(0, convergedAt),
    bytesPerNodeRoundSpreading: spreadingBytes / n / Math.max(1, convergedAt),
    bytesPerNodeRoundSteady: steadyBytes / n,
    differing,
    convergeMs,
  };
}
