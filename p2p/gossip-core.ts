// Gossip's decisions about peers and about this node, apart from its I/O: whom to contact this round,
// when a peer is declared dead, what the heartbeat signs, which address this node believes it has. Plain
// data in and out, the time and the random source passed in; p2p/gossip.ts (the shell) reads the table,
// calls the peers and runs the timers around them. What to send a peer is in gossip-sync.ts.
import { canonicalJson, nodeUrl, tryParseAddress } from "../core/index.ts";
import type { Address, NodeRecord } from "./types.ts";

/** A source of numbers in [0, 1) (`Math.random` in a node; a fixed sequence in tests). */
export type Random = () => number;

/** Someone to exchange with this round: a peer from the table, a seed, or an introduced node. */
export interface Target {
  url: string;
  id?: string;
  /** The certificate in the peer's record, pinned. */
  cert?: string;
  seed?: { host: string; port: number };
  /** A node a peer introduced, not in the table yet: reached to verify it before it is admitted. */
  probe?: boolean;
}

/** A live row of the IP table (alive or suspect), with its record when it holds one. */
export interface Candidate {
  id: string;
  state: "alive" | "suspect";
  lastTried: number;
  lastSeen: number;
  record: NodeRecord | undefined;
}

/** A bootstrap address and the node found there, if any answered yet. */
export interface SeedAddress {
  host: string;
  port: number;
  nodeId: string | undefined;
}

/** Shuffles `xs` in place (Fisher-Yates). */
export function shuffle<T>(xs: T[], random: Random): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
  return xs;
}

/** At most `n` of `ids`: those `first` holds, then a random sample of the rest. */
export function pick(ids: string[], n: number, first: (id: string) => boolean, random: Random): string[] {
  if (ids.length <= n) return ids;
  const head = ids.filter(first);
  const rest = shuffle(
    ids.filter((id) => !first(id)),
    random,
  );
  return [...head, ...rest].slice(0, n);
}

/**
 * The peers (not `self`) this node can contact: those whose record has an address, and how to reach them.
 * A relayed node (p2p/reach.ts) is not dialed at its address, which members cannot reach: it contacts
 * its peers itself.
 */
export function reachable(self: string, peers: Candidate[]): { peer: Candidate; target: Target }[] {
  return peers.flatMap((peer) => (dialable(self, peer) ? [{ peer, target: targetOf(peer) }] : []));
}

/** Whether this node dials `peer` at the address in its record. */
function dialable(self: string, peer: Candidate): boolean {
  const rec = peer.record;
  return peer.id !== self && !!rec?.addresses[0] && rec.reach !== "relay";
}

/** The target of a dialable peer (its URL formatted only for the peers chosen). */
function targetOf(peer: Candidate): Target {
  const { addresses, cert } = peer.record as NodeRecord;
  return { url: nodeUrl(addresses[0] as Address, !!cert), id: peer.id, cert };
}

export interface TargetChoice {
  self: string;
  /** The table's live rows. */
  peers: Candidate[];
  seeds: SeedAddress[];
  /** Alive peers contacted per round (config `gossipFanout`). */
  fanout: number;
  /** Whether this node expects TLS of a seed (config `tls`). */
  tls: boolean;
  /** Every reachable peer (`--us`: one round, then the table), not a sample. */
  all: boolean;
  random: Random;
  /**
   * Whether `id` is an alive node with a record in the table (a seed whose node is need not be
   * contacted as a seed); default: looked up in `peers` (pass it when `peers` is only a pool).
   */
  known?: (id: string) => boolean;
}

/**
 * The `k` least recently tried of `alive`, ties (new peers) broken by `jitter`, in that order: what
 * sorting all of them and taking the first `k` gives, in one pass that keeps `k` (no sort of the table).
 */
function leastRecentlyTried(alive: { peer: Candidate; jitter: number }[], k: number): Candidate[] {
  type Ranked = { peer: Candidate; jitter: number };
  const before = (a: Ranked, b: Ranked) => (a.peer.lastTried - b.peer.lastTried || a.jitter - b.jitter) < 0;
  const kept: Ranked[] = [];
  for (const ranked of alive) {
    if (kept.length === k && !before(ranked, kept[k - 1] as Ranked)) continue;
    // in at the end (the last one, when k are kept, drops out), then moved up to its place
    if (kept.length < k) kept.push(ranked);
    else kept[k - 1] = ranked;
    for (let i = kept.length - 1; i > 0 && before(ranked, kept[i - 1] as Ranked); i--) {
      kept[i] = kept[i - 1] as Ranked;
      kept[i - 1] = ranked;
    }
  }
  return kept.map((r) => r.peer);
}

/**
 * Whom to contact this round: every suspect, `fanout` alive peers at random among the least recently
 * tried, and every seed whose node is not alive in the table (nor this node). One pass over the table:
 * no sort of it, and a URL is formatted only for a peer chosen (the cost per round stays flat as the
 * table grows).
 */
export function chooseTargets(c: TargetChoice): Target[] {
  const withUrl = c.peers.filter((peer) => dialable(c.self, peer));
  const chosen: Target[] = [];
  if (c.all) {
    chosen.push(...withUrl.map(targetOf));
  } else {
    const suspects = withUrl.filter((p) => p.state === "suspect");
    // Least recently tried first, ties (new peers) broken at random per node: in the same order
    // everywhere, the whole network would probe the same few peers at once and leave others (a dead
    // one included) untried for many rounds.
    const ranked = withUrl.map((peer) => ({ peer, jitter: c.random() }));
    const alive = ranked.filter((r) => r.peer.state === "alive");
    // Random among the least recently contacted: spreads load, and nobody waits long for a contact.
    const pool = shuffle(leastRecentlyTried(alive, Math.max(c.fanout * 2, 4)), c.random);
    chosen.push(...suspects.map(targetOf), ...pool.slice(0, c.fanout).map(targetOf));
  }
  const known =
    c.known ?? ((id: string) => c.peers.some((p) => p.id === id && p.state === "alive" && p.record));
  for (const seed of c.seeds) {
    if (seed.nodeId && (seed.nodeId === c.self || known(seed.nodeId))) continue;
    // no record yet: the transport probes whether it serves TLS, as this node expects when it does
    chosen.push({
      url: nodeUrl(seed, c.tls),
      seed: { host: seed.host, port: seed.port },
      id: seed.nodeId,
    });
  }
  return chosen;
}

/**
 * The alive peers in the order this node tries them, least recently tried first. A round takes its pool
 * from the front and the peers it tried go to the back, so a round's choice costs O(fanout), not a pass
 * over the table (that pass, with a candidate built for every row, grew a node's round with N). The order
 * is rebuilt, sorted by last try (ties at random), only when `version` (the table's digest: ids,
 * versions, deaths) is not the one it was built for.
 *
 * With more alive peers than `limit`, a round takes its pool from a **window** of `limit` of them
 * instead, tried in turn; every `rotateEvery` rounds the peer that has been in the window longest leaves
 * it (`left` gives it, so its connection can be closed) and the peer that has waited longest outside
 * comes in, at the front (so it is contacted within the next rounds, and ~`rotateEvery` times before it
 * leaves). So between two contacts of a peer in the window fewer than `limit` others are
 * contacted: their connections stay in a bounded keep-alive pool (see p2p/transport.ts POOLED_PEERS),
 * where trying every peer in turn reconnected on every contact once there were more peers than the pool
 * holds. Every peer still comes round: within `limit + (peers - limit) × rotateEvery` rounds.
 */
export class TryOrder {
  /** Ids, front first (a Set keeps insertion order: delete and add moves an id to the back). */
  private order = new Set<string>();
  private builtFor: unknown;
  /** The window (ids of `order`, front first), while there are more alive peers than `limit`. */
  private window = new Set<string>();
  /** The window's ids in the order they came in: the first that was tried since leaves at a rotation. */
  private admitted: string[] = [];
  /** Ids in the window not tried since they came in (none leaves before its first contact). */
  private fresh = new Set<string>();
  private turns = 0;
  private leaving: string[] = [];

  constructor(private readonly o: { limit?: number; rotateEvery?: number } = {}) {}

  /** Rebuilds from `alive()` when the table changed since the last build. */
  sync(version: unknown, alive: () => Candidate[], random: Random): void {
    if (version === this.builtFor) return;
    this.builtFor = version;
    const ranked = alive().map((peer) => ({ id: peer.id, lastTried: peer.lastTried, jitter: random() }));
    ranked.sort((a, b) => a.lastTried - b.lastTried || a.jitter - b.jitter);
    this.order = new Set(ranked.map((r) => r.id));
    let pruned = false;
    for (const id of this.window)
      if (!this.order.has(id)) {
        this.window.delete(id);
        this.fresh.delete(id);
        pruned = true;
      }
    if (pruned) this.admitted = this.admitted.filter((id) => this.window.has(id));
  }

  /**
   * The first `k` peers `usable` returns a candidate for, from the window when there is one (one call a
   * round: it counts the rounds between rotations); ids it refuses on the way (no longer alive, not
   * dialable) are dropped, until `tried` or the next rebuild brings them back.
   */
  front(k: number, usable: (id: string) => Candidate | undefined): Candidate[] {
    const limit = this.o.limit ?? Number.POSITIVE_INFINITY;
    if (this.order.size <= limit) {
      this.window.clear();
      this.admitted = [];
      this.fresh.clear();
      return this.take(this.order, k, usable);
    }
    for (const id of this.order) {
      if (this.window.size >= limit) break;
      if (this.window.has(id)) continue;
      this.window.add(id);
      this.admitted.push(id);
      this.fresh.add(id);
    }
    this.turns++;
    if (this.turns >= (this.o.rotateEvery ?? 4)) {
      this.turns = 0;
      const outside = this.outsider();
      const i = this.admitted.findIndex((id) => !this.fresh.has(id));
      if (outside !== undefined && i >= 0) {
        const [oldest] = this.admitted.splice(i, 1) as [string];
        this.window.delete(oldest);
        this.leaving.push(oldest);
        this.window = new Set([outside, ...this.window]);
        this.admitted.push(outside);
        this.fresh.add(outside);
      }
    }
    return this.take(this.window, k, usable);
  }

  /** The peer that has waited longest outside the window. */
  private outsider(): string | undefined {
    for (const id of this.order) if (!this.window.has(id)) return id;
    return undefined;
  }

  private take(from: Set<string>, k: number, usable: (id: string) => Candidate | undefined): Candidate[] {
    const out: Candidate[] = [];
    for (const id of from) {
      if (out.length >= k) break;
      const c = usable(id);
      if (c) out.push(c);
      else {
        this.order.delete(id);
        this.fresh.delete(id);
        // rare (a peer no longer dialable): the window's ids and `admitted` stay the same set
        if (this.window.delete(id)) this.admitted = this.admitted.filter((x) => x !== id);
      }
    }
    return out;
  }

  /** `ids` were tried now: to the back (of the window too). */
  tried(ids: string[]): void {
    for (const id of ids) {
      this.order.delete(id);
      this.order.add(id);
      if (this.window.delete(id)) this.window.add(id);
      this.fresh.delete(id);
    }
  }

  /** The peers that left the window since the last call (their connections may go). */
  left(): string[] {
    const out = this.leaving;
    this.leaving = [];
    return out;
  }

  /** Alive peers in the order (those refused on the way by `front` are out until the next rebuild). */
  get size(): number {
    return this.order.size;
  }

  /** How many peers are tried in turn: the window's size while there is one, else every alive peer. */
  get cycle(): number {
    return Math.min(this.order.size, this.o.limit ?? Number.POSITIVE_INFINITY);
  }
}

/**
 * After a failed exchange (the peer is suspect now): whether it is declared dead. Two failed tries at
 * least, so one slow answer from a starved (not dead) peer is not a death, and no contact for
 * `suspectTimeoutMs`.
 */
export function deadAfterFailure(
  row: { failures: number; lastSeen: number },
  now: number,
  suspectTimeoutMs: number,
): boolean {
  return row.failures >= 2 && now - row.lastSeen >= suspectTimeoutMs;
}

/**
 * A record nobody can contact (no address: a client-only node that ran --us; or relayed) cannot be
 * probed; it is dropped once it has not been heard from for 3 suspect timeouts. `record` is read only
 * for rows that old.
 */
export function silentWithoutAddress(
  lastSeen: number,
  record: () => NodeRecord | undefined,
  now: number,
  suspectTimeoutMs: number,
): boolean {
  if (now - lastSeen < 3 * suspectTimeoutMs) return false;
  const r = record();
  return r !== undefined && (r.addresses.length === 0 || r.reach === "relay");
}

/** The body of the death notice `reporter` signs about `row`; none for a row already dead. */
export function deathBody(
  row: { id: string; version: number; state: string },
  reporter: string,
  now: number,
): { id: string; version: number; reporter: string; at: number } | undefined {
  if (row.state === "dead") return undefined;
  return { id: row.id, version: row.version, reporter, at: now };
}

/** The address config fields that say where this node is reached. */
export interface AddressConfig {
  advertiseAddress: string | undefined;
  serverHost: string;
  serverPort: number;
}

/**
 * The addresses this node publishes: `advertiseAddress`, else the host it listens on, else (listening on
 * every interface) the host its peers see it at, once one said.
 */
export function selfAddresses(config: AddressConfig, observedHost: string | undefined): Address[] {
  if (config.advertiseAddress) {
    const a = tryParseAddress(config.advertiseAddress, config.serverPort);
    return a ? [a] : [];
  }
  if (!["0.0.0.0", "::", ""].includes(config.serverHost))
    return [{ host: config.serverHost, port: config.serverPort }];
  return observedHost ? [{ host: observedHost, port: config.serverPort }] : [];
}

export interface HeartbeatInput {
  /** The record as config, metadata and free capacity make it now (no version, no issuedAt). */
  content: Omit<NodeRecord, "version" | "issuedAt">;
  /** The record signed last, if any. */
  current: NodeRecord | undefined;
  /** Sign a new version even when nothing changed (to refute a death notice). */
  force: boolean;
  /** The last version this node used (kept in state.db). */
  stored: number;
  /** The version of this node's record the table holds (a peer may have sent back a newer one). */
  seen: number;
  now: number;
}

/**
 * The heartbeat's decision: the record to sign, or none when nothing changed. The version is at least
 * the wall clock, and above every version this node used or saw of itself.
 */
export function nextRecord(h: HeartbeatInput): NodeRecord | undefined {
  if (!h.force && h.current) {
    const { version: _v, issuedAt: _i, ...held } = h.current;
    if (canonicalJson(held) === canonicalJson(h.content)) return undefined;
  }
  const version = Math.max(h.now, h.stored + 1, h.seen + 1, (h.current?.version ?? 0) + 1);
  return { ...h.content, version, issuedAt: h.now };
}

/**
 * Peers report the address they see this node at. The first one is kept while any of the last 10
 * reports still confirms it, so peers that see different addresses (several interfaces) do not make
 * the record flip every round; a real move is picked up once nobody reports the old address.
 */
export class ObservedAddress {
  private readonly reports: string[] = [];
  private current: string | undefined;

  /** The host believed now. */
  get host(): string | undefined {
    return this.current;
  }

  /** Takes one report (an IPv4-mapped IPv6 address counts as its IPv4 address). */
  observe(reported: string): void {
    const host = reported.replace(/^::ffff:/, "");
    this.reports.push(host);
    if (this.reports.length > 10) this.reports.shift();
    if (this.current && this.reports.includes(this.current)) return;
    const counts = new Map<string, number>();
    for (const h of this.reports) counts.set(h, (counts.get(h) ?? 0) + 1);
    this.current = ([...counts].sort((a, b) => b[1] - a[1])[0] as [string, number])[0];
  }
}

/**
 * The version of this node's record each peer said it holds (the record is left out of exchanges while
 * equal). At most `max` are kept, the least recently noted go first: callers with fresh keys cannot grow
 * it, and a peer forgotten gets the record once more.
 */
export class PeerHolds {
  private readonly versions = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** How many peers are noted (at most `max`). */
  get size(): number {
    return this.versions.size;
  }

  get(id: string): number | undefined {
    return this.versions.get(id);
  }

  note(id: string, version: number): void {
    this.versions.delete(id);
    this.versions.set(id, version);
    if (this.versions.size > this.max) this.versions.delete(this.versions.keys().next().value as string);
  }

  delete(id: string): void {
    this.versions.delete(id);
  }
}
