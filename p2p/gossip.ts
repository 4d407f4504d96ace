import type { Config } from "../config/index.ts";
import {
  type Cancel,
  type Clock,
  DEFAULT_PORT,
  fetchTransport,
  formatAddress,
  type Identity,
  isP2prcError,
  type Logger,
  nodeOfUrl,
  nodeUrl,
  P2prcError,
  PeerClient,
  tryParseAddress,
} from "../core/index.ts";
import type { MetaStore, PeerStore } from "../store/index.ts";
import { type ClusterBook, clusterLabel } from "./cluster.ts";
// the decisions (pure: plain data and the time in, plain data out); this file does the I/O around them
import * as core from "./gossip-core.ts";
import * as sync from "./gossip-sync.ts";
import { Introductions } from "./introductions.ts";
import * as pace from "./pace.ts";
import type { ReachState } from "./reach.ts";
import { digestHash, type PeerTable, verifyDeath, verifyRecord } from "./table.ts";
import { type PeerExpectation, type PeerTransport, POOLED_PEERS, SESSION_IDLE_MS } from "./transport.ts";
import type {
  Address,
  DeathNotice,
  Digest,
  ExchangeRequest,
  ExchangeResponse,
  NodeRecord,
  Offer,
  SignedCluster,
  SignedRecord,
  SyncRequest,
  SyncResponse,
} from "./types.ts";

/** What gossip needs; built by the composition root. */
export interface GossipDeps {
  identity: Identity;
  /** The IP table's rows and the bootstrap seeds (the table reads the same rows). */
  peers: PeerStore;
  /** This node's own facts: metadata, the record's version. */
  meta: MetaStore;
  table: PeerTable;
  config: Config;
  clock: Clock;
  logger: Logger;
  /** This node's current free capacity (from the server). */
  offer: () => Promise<Offer>;
  /**
   * The shared cluster documents this node holds and spreads (who may use it is the server's check;
   * the table lists every validly signed node a member told it of: nodes this node may use).
   */
  clusters?: ClusterBook;
  /** This node's TLS certificate, published in its record (config `tls`). */
  certPem?: string;
  /** How members reach this node, as found (p2p/reach.ts); default: config `behindNat` "true", else direct. */
  reach?: () => ReachState | undefined;
  /** The port this node serves its relay on (config `relay`), for its record; undefined: none. */
  relayPort?: () => number | undefined;
  /** How peers are reached (TLS pinned to their records' certificates); default: plain `fetch`. */
  transport?: PeerTransport;
  fetch?: typeof fetch;
  /** The random source of target choice and sampling; default `Math.random`. */
  random?: core.Random;
  /** How late this node's event loop runs (ms); default: measured at the round timer (pace.Lateness). */
  lateness?: () => number;
}

/** A peer or seed that answered 403 to an exchange: this node is not a member there. */
export interface GossipRefusal {
  url: string;
  /** The peer's id, when it was in the table (a seed has none yet). */
  id?: string;
  message: string;
}

/** Traffic counters, for `GET /v1/p2p/stats` and the discovery benchmark. */
export interface GossipStats {
  rounds: number;
  exchanges: number;
  failures: number;
  bytesSent: number;
  bytesReceived: number;
  recordsReceived: number;
  /** Failed exchanges not counted against the peer: they timed out while this node itself ran late. */
  late: number;
}

const META_VERSION = "self.version";
const META_METADATA = "self.metadata";
/**
 * Sets this node's free-text metadata (P2PRC's "custom information"). A running node picks it up at
 * its next heartbeat and it spreads with gossip.
 */
export function setNodeMetadata(meta: MetaStore, text: string): void {
  if (text.length > 1024)
    throw new P2prcError("E_INVALID", "metadata: at most 1024 characters", { field: "metadata" });
  meta.set(META_METADATA, text);
}

/** Tombstones are kept this long so stale copies of a dead node's record cannot come back. */
const TOMBSTONE_MS = 10 * 60_000;
/**
 * How often a round also looks for silent records and old tombstones (timeouts of 15 s and more). It
 * reads only the rows concerned (PeerTable.unreachable, tombstones when there are any); the other rounds
 * read only what they send, so no round's cost grows with the table.
 */
const HOUSEKEEPING_MS = 5000;

/**
 * How often the try order's window (more alive peers than POOLED_PEERS, core.TryOrder) lets one peer out
 * and one in: each one a new TLS connection, whose handshake (both ends, in situ) costs about as much
 * CPU as a quiet round. Every 4 rounds that was the one cost of a round that grew with the network
 * (bench/gossip: N = 100 / N = 10 side by side, 1.40 with it, 1.18 without; 1.04–1.12 every 30 s).
 */
const ROTATE_MS = 30_000;

/**
 * Push-pull gossip of signed records, plus failure detection. Each round this node contacts a few
 * peers (fanout; the least recently contacted first, suspects always) and swaps a hash of its digest:
 * equal hashes end the exchange, so an unchanged network costs a constant few hundred bytes per
 * contact. When they differ, the two sides send only the records and death notices the other lacks.
 * A peer that stops answering becomes suspect, and after `suspectTimeoutMs` without contact it is
 * declared dead with a signed notice that spreads the same way.
 *
 * This class is the I/O shell: timers, the table and store, the peers' requests and answers. What it
 * decides (whom to contact, what to send and take, when a peer is dead, what to sign) is in
 * gossip-core.ts and gossip-sync.ts, functions of plain data and the time.
 */
export class GossipService {
  readonly stats: GossipStats = {
    rounds: 0,
    exchanges: 0,
    failures: 0,
    bytesSent: 0,
    bytesReceived: 0,
    recordsReceived: 0,
    late: 0,
  };
  /**
   * The peers and seeds that refused this node in the last round (403: it is not a member there), so
   * `--us` can say so instead of showing a table with only itself.
   */
  refused: GossipRefusal[] = [];
  private self: SignedRecord | undefined;
  private cancel: Cancel | undefined;
  private running: Promise<void> | undefined;
  /** When a round last looked at every row (HOUSEKEEPING_MS). */
  private housekeptAt = Number.NEGATIVE_INFINITY;
  private readonly observed = new core.ObservedAddress();
  /** The alive peers in try order (whom a round contacts, without reading every row). */
  private readonly order: core.TryOrder;
  /** The content (JSON) this node's current record was built from: what the heartbeat compares. */
  private selfContent: string | undefined;
  /** Peers this node found suspect (a failed exchange): contacted every round while they stay so. */
  private readonly suspects = new Set<string>();
  /** Version of this node's record each peer said it holds (the record is left out while equal). */
  private readonly peerHolds: core.PeerHolds;
  private readonly random: core.Random;
  /** This node's exchange round trips: what its timeouts adapt to (see pace.exchangeTimeoutMs). */
  private readonly roundTrips = new pace.RoundTrips();
  /** Exchanges with each peer that timed out in a row: each doubles that peer's next timeout. */
  private readonly backoff = new Map<string, number>();
  private readonly lateness = new pace.Lateness();
  /** How many peers a round may contact while exchanges time out (see pace.Window). */
  private readonly window: pace.Window;
  /**
   * How many introduced nodes a round may probe at once (its own window: a peer could introduce
   * addresses that never answer, which must not hold the exchanges' window down, only the probes').
   */
  private readonly probeWindow: pace.Window;
  /** Seeds whose exchanges timed out, paused for some rounds (pace.SeedPauses). */
  private readonly seedPauses: pace.SeedPauses;
  /** This interval's early round (see news) is spent: reset by each regular tick. */
  private earlySpent = false;
  /** An early round is due as soon as the round running now ends. */
  private earlyDue = false;
  /**
   * Nothing differed since the last round began: every exchange found equal hashes both ways, none
   * failed, no news, no introduction waited. The next round is then a quiet one (see roundFanout).
   */
  private calm = false;
  private readonly lagMs: () => number;
  private readonly log: Logger;
  private readonly fetchFn: typeof fetch;

  /** Records of new nodes that peers passed on, waiting for this node to reach each node itself. */
  private readonly introductions: Introductions;

  constructor(private readonly deps: GossipDeps) {
    this.log = deps.logger.withTag("p2p");
    this.fetchFn = deps.fetch ?? fetch;
    this.random = deps.random ?? Math.random;
    this.lagMs = deps.lateness ?? (() => this.lateness.lagMs);
    this.peerHolds = new core.PeerHolds(deps.config.maxPeers);
    this.window = new pace.Window(Math.max(1, deps.config.gossipFanout));
    this.probeWindow = new pace.Window(Math.max(1, deps.config.probeConcurrency));
    this.seedPauses = new pace.SeedPauses(this.random);
    // more alive peers than Bun's keep-alive pool holds: a window of them in turn (core.TryOrder)
    this.order = new core.TryOrder({
      limit: POOLED_PEERS,
      rotateEvery: Math.max(1, Math.round(ROTATE_MS / deps.config.gossipIntervalMs)),
    });
    this.introductions = new Introductions({
      clock: deps.clock,
      max: deps.config.maxUnverifiedPeers,
      perPeer: deps.config.maxUnverifiedPerPeer,
      rejectMs: Math.max(60_000, 10 * deps.config.suspectTimeoutMs),
      retryMs: Math.max(2000, 2 * deps.config.gossipIntervalMs),
    });
    deps.clusters?.onChange((signed) => this.clusterChanged(signed));
  }

  get nodeId(): string {
    return this.deps.identity.nodeId;
  }

  /** This node's current signed record. */
  async selfRecord(): Promise<SignedRecord> {
    if (!this.self) await this.refreshSelf();
    return this.self as SignedRecord;
  }

  /**
   * The heartbeat: rebuilds this node's record from config, metadata and free capacity every interval,
   * and signs a new version only when something changed (or when `force`, to refute a death notice).
   */
  async refreshSelf(force = false): Promise<boolean> {
    const signed = await this.sign(force);
    if (signed) this.news();
    return signed;
  }

  /** refreshSelf without the news: what a round calls (the round itself spreads what it signed). */
  private async sign(force: boolean): Promise<boolean> {
    const { config, identity, meta, peers, clock } = this.deps;
    const content = {
      id: identity.nodeId,
      name: config.machineName,
      addresses: core.selfAddresses(config, this.observed.host),
      ...(this.deps.reach?.() ?? {
        nat: config.behindNat === "true",
        reach: config.behindNat === "true" ? ("relay" as const) : ("direct" as const),
      }),
      ...(this.deps.relayPort?.() ? { relayPort: this.deps.relayPort() } : {}),
      metadata: meta.get(META_METADATA) ?? "",
      offer: await this.deps.offer(),
      ...(this.deps.certPem ? { cert: this.deps.certPem } : {}),
    };
    // the content built the same way as last time, as text: an unchanged heartbeat (nearly every round)
    // ends here, without the canonical encoding of the record and its certificate nextRecord compares
    const text = JSON.stringify(content);
    if (!force && this.self && text === this.selfContent) return false;
    const record = core.nextRecord({
      content,
      current: this.self?.record,
      force,
      stored: Number(meta.get(META_VERSION) ?? 0),
      seen: peers.get(identity.nodeId)?.version ?? 0,
      now: clock.now(),
    });
    this.selfContent = text;
    if (!record) return false;
    this.self = { record, signature: identity.signJson(record) };
    meta.set(META_VERSION, String(record.version));
    this.deps.table.putSelf(this.self);
    return true;
  }

  // ---- answering peers ------------------------------------------------------------------------

  /** A node this node vouches for: itself, `trusted`, a member or host of one of its clusters. */
  private vouched(id: string): boolean {
    const { clusters, config } = this.deps;
    return clusters ? clusters.vouches(id) : id === this.nodeId || config.trusted.includes(id);
  }

  /**
   * Takes a record. `direct`: it came from its own node (the caller of an exchange or sync, or the
   * node this one reached). Otherwise `introducer` passed it on: a record of a node the table does not
   * hold yet, and that this node does not vouch for, waits among the introductions (bounded, and
   * counted against the introducer) until a probe reaches the node itself.
   */
  private accept(signed: unknown, direct: boolean, introducer?: string): SignedRecord | undefined {
    const verified = verifyRecord(signed);
    if (!verified) return undefined;
    this.admit(verified, direct, introducer);
    return verified;
  }

  private admit(verified: SignedRecord, direct: boolean, introducer?: string): void {
    const { table, config } = this.deps;
    const { id } = verified.record;
    if (!direct && id !== this.nodeId && !table.get(id) && !this.vouched(id)) {
      this.introductions.offer(verified, introducer ?? "");
      return;
    }
    const result = table.merge(verified);
    if (result === "self-newer") void this.refreshSelf(true);
    else if (result === "updated") this.news();
    if (direct) table.markContact(id);
    if (result === "added") {
      this.introductions.admitted(id);
      this.log.info(`peer joined: ${verified.record.name} ${id.slice(0, 12)}`);
      if (table.size() > config.maxPeers) this.limitTable();
    }
  }

  /** Keeps the table within `maxPeers` (see PeerTable.limit). */
  private limitTable(): void {
    const dropped = this.deps.table.limit(this.deps.config.maxPeers, (id) => this.vouched(id));
    if (dropped.length)
      this.log.debug(`IP table over maxPeers (${this.deps.config.maxPeers}): dropped ${dropped.length}`);
  }

  /**
   * Applies death notices: at most `gossipMaxRecords` per call are verified, and only those about this
   * node or about a node held here, from a reporter held here (any other would be ignored anyway).
   */
  private applyDeaths(deaths: unknown[]): void {
    const { table } = this.deps;
    const held = (id: string) => (table.get(id)?.state ?? "dead") !== "dead";
    for (const raw of sync.deathsToVerify(deaths, this.nodeId, held, this.deps.config.gossipMaxRecords)) {
      const notice = verifyDeath(raw);
      if (!notice) continue;
      const result = this.deps.table.applyDeath(notice, TOMBSTONE_MS);
      if (result === "refute") {
        this.log.warn(`a peer declared this node dead; publishing a newer record`);
        void this.refreshSelf(true);
      } else if (result === "applied") {
        this.calm = false; // spread by the next round, at full fanout
        this.log.info(`peer left: ${notice.id.slice(0, 12)} (reported by ${notice.reporter.slice(0, 12)})`);
      }
    }
  }

  /**
   * POST /v1/p2p/exchange: merge the caller's record, answer with ours and, if tables differ, our digest.
   * Records that the other side already holds at the current version are left out both ways (a record
   * with its certificate is most of an exchange's bytes). `callerId` is the verified signer.
   */
  async handleExchange(
    body: ExchangeRequest,
    remote: string | undefined,
    callerId?: string,
  ): Promise<ExchangeResponse> {
    if (body.from) {
      if (callerId && body.from.record.id !== callerId) {
        throw new P2prcError("E_INVALID", "from: not the record of the node that signed the request", {
          field: "from",
        });
      }
      if (!this.accept(body.from, true)) {
        throw new P2prcError("E_INVALID", "from: record signature does not verify", { field: "from" });
      }
    } else if (callerId && this.deps.table.record(callerId)) {
      this.deps.table.markContact(callerId);
    } else {
      throw new P2prcError("E_INVALID", "from: required (this node holds no record of the caller)", {
        field: "from",
      });
    }
    // the digest is bounded by the table (maxPeers), whatever the callers pushed
    const digest = this.deps.table.digest();
    const self = await this.selfRecord();
    // the caller said which version of this node's record it holds: no need to send it ours next time
    if (callerId && body.have !== undefined) this.peerHolds.note(callerId, body.have);
    const book = this.deps.clusters;
    const theirs = book && body.clusters?.length ? body.clusters : undefined;
    const response = sync.exchangeAnswer({
      digest,
      self,
      hash: body.hash,
      have: body.have,
      observed: remote,
      got: callerId ? (this.deps.table.record(callerId)?.record.version ?? 0) : undefined,
      newer: theirs ? (book?.newerThan(theirs) ?? []) : [],
      older: theirs ? (book?.olderThan(theirs) ?? []) : [],
    });
    if (!response.same) this.calm = false; // the caller's table differs: this one may lack something too
    this.stats.bytesSent += JSON.stringify(response).length;
    return response;
  }

  /**
   * POST /v1/p2p/sync: take what the caller pushed, answer with what it wants. `callerId` is the verified
   * signer: `from` must be its own record (it is taken as coming from its node).
   */
  async handleSync(body: SyncRequest, callerId?: string): Promise<SyncResponse> {
    if (callerId && body.from.record.id !== callerId) {
      throw new P2prcError("E_INVALID", "from: not the record of the node that signed the request", {
        field: "from",
      });
    }
    const from = verifyRecord(body.from);
    if (!from) {
      throw new P2prcError("E_INVALID", "from: record signature does not verify", { field: "from" });
    }
    this.admit(from, true);
    this.takeRecords(body.records, from.record.id);
    this.applyDeaths(body.deaths);
    this.stats.recordsReceived += body.records.length;
    const response = this.collect(body.want);
    this.stats.bytesSent += JSON.stringify(response).length;
    return response;
  }

  /**
   * Records a peer pushed or answered: at most `gossipMaxRecords` of them are verified (a signature
   * check is most of their cost), newer versions of nodes held or vouched for first; records already
   * waiting or found unreachable are skipped unverified.
   */
  private takeRecords(records: unknown[], introducer: string): void {
    const ranked = sync.rankRecords(records, (id) => this.deps.table.get(id)?.version, this.knowledge());
    const room = this.introductions.room(introducer);
    for (const raw of sync.recordsToVerify(ranked, room, this.deps.config.gossipMaxRecords))
      this.accept(raw, false, introducer);
  }

  /** What the sync decisions ask of this node's table, trust and introductions. */
  private knowledge(): sync.Knowledge {
    return {
      self: this.nodeId,
      vouched: (id) => this.vouched(id),
      wants: (id, version) => this.introductions.wants(id, version),
      random: this.random,
    };
  }

  /** What a peer asked for, at most `gossipMaxRecords` of it (it asks for the rest next time). */
  private collect(want: string[]): SyncResponse {
    const records: SignedRecord[] = [];
    const deaths: DeathNotice[] = [];
    for (const id of want.slice(0, this.deps.config.gossipMaxRecords)) {
      const r = this.deps.table.record(id);
      if (r) records.push(r);
      const d = this.deps.table.death(id);
      if (d) deaths.push(d);
    }
    return { records, deaths };
  }

  // ---- contacting peers -----------------------------------------------------------------------

  /**
   * The timeout of a request to `peerId`: this node's round trips, twice the peer's own median latency
   * (a slow peer keeps the time it needs), and its backoff; a seed or an introduced node has none of these
   * (a seed that never answers is tried for good: a growing timeout would stall rounds; SeedPauses
   * spaces its tries out instead).
   */
  timeoutMs(peerId?: string): number {
    const { gossipIntervalMs, suspectTimeoutMs } = this.deps.config;
    const latency = peerId ? this.deps.table.get(peerId)?.latencyMs : undefined;
    return pace.exchangeTimeoutMs({
      intervalMs: gossipIntervalMs,
      suspectTimeoutMs,
      measuredMs: Math.max(this.roundTrips.timeoutMs ?? 0, 2 * (latency ?? 0)),
      backoff: (peerId && this.backoff.get(peerId)) || 0,
    });
  }

  private async post<T>(
    url: string,
    body: unknown,
    peer: PeerExpectation = {},
    timeoutMs = this.timeoutMs(peer.nodeId),
  ): Promise<T> {
    const text = JSON.stringify(body);
    this.stats.bytesSent += text.length;
    const { identity, clock, transport } = this.deps;
    const client = new PeerClient({ identity, clock, transport: transport ?? fetchTransport(this.fetchFn) });
    const { node, path } = nodeOfUrl(url, { id: peer.nodeId, cert: peer.cert });
    const res = await client.request(node, path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: text,
      timeoutMs,
    });
    const reply = await res.text();
    this.stats.bytesReceived += reply.length;
    return JSON.parse(reply) as T;
  }

  /** One push-pull exchange with a peer or seed, each request within `timeoutMs`. Returns the peer's id on success. */
  async exchangeWith(target: core.Target, timeoutMs = this.timeoutMs(target.id)): Promise<string> {
    const { table } = this.deps;
    const self = await this.selfRecord();
    const t0 = performance.now();
    const known = sync.knownPeer(target);
    const have = known ? table.record(known)?.record.version : undefined;
    const request = sync.exchangeRequest({
      self,
      hash: digestHash(table.digest()),
      known,
      probe: !!target.probe,
      have,
      held: known ? this.peerHolds.get(known) : undefined,
      clusters: this.deps.clusters?.digest() ?? [],
    });
    const peerOf = known ? { nodeId: target.id, cert: target.cert } : {};
    const url = `${target.url}/v1/p2p/exchange`;
    let res: ExchangeResponse;
    try {
      res = await this.post<ExchangeResponse>(url, request, peerOf, timeoutMs);
    } catch (err) {
      const noRecordOfMe = isP2prcError(err, "E_INVALID") && err.field === "from";
      if (!known || request.from || !noRecordOfMe) throw err;
      // it holds no record of this node (new to it, or a lost database): send it, once
      this.peerHolds.delete(known);
      request.from = self;
      res = await this.post<ExchangeResponse>(url, request, peerOf, timeoutMs);
    }
    const rtt = performance.now() - t0;
    const answered = sync.answeredBy(target.url, res, known, have);
    const peerId = answered.id;
    // the node answered at this address itself: that is what admits a node a peer introduced
    if (answered.record && peerId !== this.nodeId) this.admit(answered.record, true);
    if (typeof res.got === "number") this.peerHolds.note(peerId, res.got);
    if (res.clusters || res.olderClusters) this.syncClusters(target.url, res, peerOf);
    if (peerId === this.nodeId) {
      // a seed that is this node's own address (a shared bootstrap list): remember, skip it from now on
      if (target.seed) this.deps.peers.setSeedNode(target.seed.host, target.seed.port, peerId);
      throw new Error(`${target.url} is this node`);
    }
    table.markContact(peerId, rtt);
    this.roundTrips.sample(rtt);
    this.backoff.delete(peerId);
    if (target.seed) this.deps.peers.setSeedNode(target.seed.host, target.seed.port, peerId);
    if (res.observed) this.observed.observe(res.observed);
    this.stats.exchanges++;
    // A probe only admits the node; tables are reconciled by the rounds' exchanges. (Each of the lanes'
    // probes pulling what the probed node holds had every node fetch and verify the same unknown records
    // several times at once: the discovery bench's 50 nodes in one process saturated it.)
    if (!res.same) this.calm = false;
    if (!res.same && res.digest && !target.probe)
      await this.reconcile(target.url, res.digest, peerOf, peerId);
    return peerId;
  }

  // ---- cluster documents ----------------------------------------------------------------------

  /** POST /v1/p2p/cluster: a member pushed a cluster document (kept only when newer and held here). */
  handleCluster(body: unknown): { result: string } {
    const book = this.deps.clusters;
    if (!book) return { result: "unknown" };
    const result = book.accept(body);
    if (result === "invalid") {
      throw new P2prcError("E_INVALID", "body: not a cluster document signed by its host", { field: "body" });
    }
    return { result };
  }

  /** Takes the newer documents a peer answered with; pushes ours where the peer's are older. */
  private syncClusters(url: string, res: ExchangeResponse, peer: PeerExpectation): void {
    const book = this.deps.clusters;
    if (!book) return;
    for (const c of res.clusters ?? []) book.accept(c);
    for (const [host, name] of res.olderClusters ?? []) {
      const held = book.get(host, name);
      if (held) void this.pushCluster(url, held, peer);
    }
  }

  private async pushCluster(url: string, signed: unknown, peer: PeerExpectation): Promise<void> {
    try {
      await this.post(`${url}/v1/p2p/cluster`, signed, peer);
    } catch (err) {
      this.log.debug(`pushing a cluster document to ${url} failed: ${(err as Error).message}`);
    }
  }

  /**
   * A cluster document changed here (hosted, joined, published by the CLI, or received): send it to
   * every peer at once, so a removed member loses access everywhere within one round trip (each node
   * forwards a version it had not seen, once).
   */
  private clusterChanged(signed: SignedCluster): void {
    const { cluster } = signed;
    this.log.info(
      `cluster ${clusterLabel(cluster)} version ${cluster.version}: ${cluster.members.length} members`,
    );
    for (const { target } of core.reachable(this.nodeId, this.candidates())) {
      void this.pushCluster(target.url, signed, { nodeId: target.id, cert: target.cert });
    }
  }

  /** After differing digests: one sync that pushes what the peer lacks and pulls what it has newer (see sync.planSync). */
  private async reconcile(url: string, theirs: Digest, peer: PeerExpectation, peerId: string): Promise<void> {
    const { table, config } = this.deps;
    const plan = sync.planSync(table.digest(), theirs, config.gossipMaxRecords, this.knowledge());
    const records = plan.records.flatMap((id) => table.record(id) ?? []);
    const deaths = plan.deaths.flatMap((id) => table.death(id) ?? []);
    const want = plan.want;
    if (records.length === 0 && deaths.length === 0 && want.length === 0) return;
    const res = await this.post<SyncResponse>(
      `${url}/v1/p2p/sync`,
      {
        from: await this.selfRecord(),
        records,
        deaths,
        want,
      } satisfies SyncRequest,
      peer,
    );
    this.takeRecords(res.records ?? [], peerId);
    this.applyDeaths(res.deaths ?? []);
    this.stats.recordsReceived += res.records?.length ?? 0;
  }

  /** The table's live rows, with their records, as the target choice reads them. */
  private candidates(): core.Candidate[] {
    const { table } = this.deps;
    return table.live().map((row) => ({
      id: row.id,
      state: row.state === "suspect" ? "suspect" : "alive",
      lastTried: row.lastTried,
      lastSeen: row.lastSeen,
      // a live row's record is a signed record (a tombstone's is its death notice)
      record: row.id === this.nodeId ? undefined : table.recordOf(row)?.record,
    }));
  }

  /** The candidate of one live row (undefined for a tombstone or an id not held). */
  private candidate(id: string): core.Candidate | undefined {
    const row = this.deps.table.get(id);
    if (!row || row.state === "dead") return undefined;
    return {
      id,
      state: row.state,
      lastTried: row.lastTried,
      lastSeen: row.lastSeen,
      record: id === this.nodeId ? undefined : this.deps.table.recordOf(row)?.record,
    };
  }

  /**
   * Whom to contact this round: suspects, the least recently contacted peers, and unknown seeds. A
   * normal round reads only the suspects and the front of the try order (core.TryOrder), not every row.
   */
  targets(all = false, fanout = this.deps.config.gossipFanout): core.Target[] {
    const { config, peers, table } = this.deps;
    const choice = {
      self: this.nodeId,
      seeds: peers.seeds(),
      fanout,
      tls: config.tls,
      random: this.random,
    };
    if (all) return core.chooseTargets({ ...choice, peers: this.candidates(), all });
    this.order.sync(
      table.digest(),
      () => {
        const live = this.candidates();
        for (const c of live) if (c.state === "suspect") this.suspects.add(c.id);
        return live.filter((c) => c.state === "alive");
      },
      this.random,
    );
    // every suspect, or while exchanges time out (pace.Window) as many as the window, in turns
    const most = this.window.reduced ? this.window.value : Number.POSITIVE_INFINITY;
    const suspects: core.Candidate[] = [];
    for (const id of this.suspects) {
      const c = this.candidate(id);
      if (c?.state !== "suspect") this.suspects.delete(id);
      else if (suspects.length < most) suspects.push(c);
    }
    for (const c of suspects) {
      this.suspects.delete(c.id); // to the back of the turn
      this.suspects.add(c.id);
    }
    const dialable = (c: core.Candidate | undefined) =>
      c?.state === "alive" && c.id !== this.nodeId && c.record?.addresses[0] && c.record.reach !== "relay";
    const pool = this.order.front(Math.max(fanout * 2, 4), (id) => {
      const c = this.candidate(id);
      return dialable(c) ? c : undefined;
    });
    const chosen = core.chooseTargets({
      ...choice,
      peers: [...suspects, ...pool],
      all: false,
      known: (id) => {
        const c = this.candidate(id);
        return c?.state === "alive" && !!c.record;
      },
    });
    this.order.tried(chosen.flatMap((t) => (t.id ? [t.id] : [])));
    return chosen;
  }

  private declareDead(id: string): void {
    const row = this.deps.table.get(id);
    const body = row && core.deathBody(row, this.nodeId, this.deps.clock.now());
    if (!row || !body) return;
    const notice: DeathNotice = { ...body, signature: this.deps.identity.signJson(body) };
    this.deps.table.applyDeath(notice);
    this.backoff.delete(id);
    this.calm = false;
    this.log.info(
      `peer declared dead: ${id.slice(0, 12)} (no answer for ${this.deps.clock.now() - row.lastSeen} ms)`,
    );
  }

  /**
   * Probes introduced nodes, `probeConcurrency` at once: an exchange with the node at the address in its
   * record (its certificate pinned). A node that answers as itself is admitted to the table, and the next
   * waiting record takes its place; a probe that fails ends its lane for this round. So at most
   * `probeConcurrency` probes fail per round (what made-up records can cost), while real nodes are
   * admitted as fast as they answer (one probe per round and lane would take N / probeConcurrency rounds
   * to admit N nodes: 6 s for 50 nodes at a 1 s interval).
   */
  private async probeIntroduced(): Promise<void> {
    const { probeConcurrency, maxUnverifiedPeers, gossipFanout } = this.deps.config;
    // fewer lanes while probes or exchanges time out (pace.Window): probes are exchanges too
    const scaled = Math.round((probeConcurrency * this.window.value) / Math.max(1, gossipFanout));
    const lanes = Math.max(1, Math.min(this.probeWindow.value, scaled));
    const outcome = { timeouts: 0, answered: 0 };
    let left = maxUnverifiedPeers; // at most as many probes per round as records can wait
    const lane = async () => {
      for (;;) {
        if (left <= 0) return;
        const [signed] = this.introductions.take(1);
        if (!signed) return;
        left--;
        if (!(await this.probe(signed.record, outcome))) return;
      }
    };
    await Promise.all(Array.from({ length: lanes }, lane));
    this.probeWindow.round(outcome);
  }

  /** One probe; whether the node is in the table now (admitted by it, or it reached this node meanwhile). */
  private async probe(record: NodeRecord, outcome: pace.Outcome): Promise<boolean> {
    if (record.reach === "relay") {
      // not dialable: admitted once it contacts this node itself; the lane goes on
      this.introductions.unreachable(record.id);
      return true;
    }
    const addr = record.addresses[0] as Address;
    const timeoutMs = this.timeoutMs(record.id);
    const t0 = performance.now();
    try {
      await this.exchangeWith(
        { url: nodeUrl(addr, !!record.cert), id: record.id, cert: record.cert, probe: true },
        timeoutMs,
      );
      outcome.answered++;
    } catch (err) {
      const timedOut = performance.now() - t0 >= timeoutMs;
      if (timedOut && pace.failureCounts({ timedOut, lagMs: this.lagMs(), timeoutMs })) outcome.timeouts++;
      this.log.debug(`introduced node ${record.id.slice(0, 12)} unreachable: ${(err as Error).message}`);
    }
    // otherwise set aside for a while
    const reached = this.deps.table.get(record.id)?.state === "alive";
    if (reached) this.introductions.admitted(record.id);
    else this.introductions.unreachable(record.id);
    return reached;
  }

  /**
   * One gossip round. Exchanges (and probes of introduced nodes) run in parallel, each bounded by a
   * timeout: a stuck peer stalls nobody.
   */
  async round(all = false): Promise<void> {
    const { table, clock, config } = this.deps;
    this.deps.clusters?.reload(); // the CLI may have hosted, joined or published a cluster
    // a table over the bound (a lowered maxPeers, a state.db filled before the bound) drains at once
    if (table.size() > config.maxPeers) this.limitTable();
    await this.sign(false);
    const round = this.stats.rounds;
    const fanout = this.roundFanout(all);
    const targets = this.targets(all, fanout).filter(
      (t) => all || !t.seed || this.seedPauses.due(formatAddress(t.seed), round),
    );
    this.calm = this.introductions.size === 0;
    // what the window follows: exchanges with peers of the table that timed out (counted ones) and that
    // answered; not seeds (one that never answers is tried for good) nor probes (a peer could introduce
    // made-up addresses that never answer); its stretch, those with peers that were not suspects
    const outcome: pace.Outcome = { timeouts: 0, answered: 0 };
    const alive: pace.Outcome = { timeouts: 0, answered: 0 };
    this.refused = [];
    this.introductions.expire();
    const probes = this.probeIntroduced();
    await Promise.all(
      targets.map(async (t) => {
        if (t.id) table.markTried(t.id);
        const peer = t.id !== undefined && !t.seed;
        const wasAlive = peer && table.get(t.id as string)?.state === "alive";
        const seed = t.seed && formatAddress(t.seed);
        const timeoutMs = this.timeoutMs(t.id);
        const t0 = performance.now();
        try {
          await this.exchangeWith(t, timeoutMs);
          if (peer) outcome.answered++;
          if (wasAlive) alive.answered++;
          if (seed) this.seedPauses.answered(seed);
        } catch (err) {
          this.calm = false;
          this.stats.failures++;
          if (isP2prcError(err) && err.code === "E_FORBIDDEN")
            this.refused.push({ url: t.url, id: t.id, message: err.message });
          // a timeout gives this peer twice the time next (pace.exchangeTimeoutMs); one while this node
          // itself ran late says nothing of the peer: it is tried again, not suspected
          const timedOut = performance.now() - t0 >= timeoutMs;
          if (timedOut && t.id) {
            // ids that left by another node's notice or the table's bound stay here: cleared at the bound
            if (this.backoff.size >= this.deps.config.maxPeers) this.backoff.clear();
            this.backoff.set(t.id, (this.backoff.get(t.id) ?? 0) + 1);
          }
          if (!pace.failureCounts({ timedOut, lagMs: this.lagMs(), timeoutMs })) {
            this.stats.late++;
            this.log.debug(`exchange with ${t.url} timed out while this node ran late: not counted`);
            return;
          }
          // a seed that timed out is left alone for a few rounds
          if (timedOut && peer) outcome.timeouts++;
          if (timedOut && wasAlive) alive.timeouts++;
          if (timedOut && seed) this.seedPauses.timedOut(seed, round);
          this.log.debug(`exchange with ${t.seed ? "seed " : ""}${t.url} failed: ${(err as Error).message}`);
          if (!t.id) return;
          const row = table.markFailure(t.id);
          if (row) this.suspects.add(t.id);
          // a node whose own exchanges time out waits longer before it declares a peer dead
          const deadAfterMs = config.suspectTimeoutMs * this.window.stretch;
          if (row && core.deadAfterFailure(row, clock.now(), deadAfterMs)) this.declareDead(t.id);
        }
      }),
    );
    await probes;
    if (!all) this.window.round(outcome, alive);
    // a peer this node will not contact again before its connection's idle timeout: closed now, not
    // left idle until then (pace.keepSession)
    const { transport } = this.deps;
    const keep =
      all ||
      pace.keepSession({
        alive: this.order.cycle,
        perRound: fanout,
        intervalMs: config.gossipIntervalMs,
        idleTimeoutMs: SESSION_IDLE_MS,
      });
    if (transport && !keep) for (const t of targets) if (t.cert && !t.seed) transport.release(t.cert);
    // peers that left the try order's window: not contacted again for a while (core.TryOrder), so
    // their connections make room in the pool for the window's
    for (const id of this.order.left()) {
      const cert = table.record(id)?.record.cert;
      if (transport && cert) transport.release(cert);
    }
    // `--us` (one round, then the table): the nodes the peers introduced are probed in this round too,
    // in at most as many batches as it takes to probe maxUnverifiedPeers of them
    const batches = Math.ceil(config.maxUnverifiedPeers / config.probeConcurrency);
    for (let i = 0; all && i < batches && this.introductions.size > 0; i++) await this.probeIntroduced();
    if (clock.now() - this.housekeptAt >= HOUSEKEEPING_MS) {
      this.housekeptAt = clock.now();
      // a record nobody can contact cannot be probed: dropped after a while (see core.silentWithoutAddress);
      // only such rows are read (PeerTable.unreachable), not the table
      for (const id of table.unreachable()) {
        const row = table.get(id);
        if (!row || row.state === "dead") continue; // declared dead since the list was made
        const record = () => table.recordOf(row)?.record;
        if (core.silentWithoutAddress(row.lastSeen, record, clock.now(), config.suspectTimeoutMs))
          this.declareDead(id);
      }
      table.purge(TOMBSTONE_MS);
    }
    this.stats.rounds++;
  }

  /**
   * How many peers a round contacts: `gossipFanout` (less while exchanges time out: pace.Window), or
   * one in a quiet network (the last round found every table equal, nothing failed, nothing new came;
   * suspects are contacted besides, as always).
   * Nothing is lost by it: a change anywhere is news (an early round at full fanout, see news), and
   * a differing hash in either direction, a failure or a waiting introduction makes the next round full
   * again. A quiet network costs ~half the CPU (one exchange out and ~one in a second, not three).
   */
  private roundFanout(all: boolean): number {
    const { gossipFanout } = this.deps.config;
    if (all) return gossipFanout;
    const quiet = this.calm && this.suspects.size === 0;
    return quiet ? Math.min(1, gossipFanout) : Math.min(gossipFanout, this.window.value);
  }

  /** Adds config `bootstrap` to the seeds (root nodes); the table is kept. */
  addBootstrapSeeds(): void {
    const { config, peers, clock } = this.deps;
    for (const b of config.bootstrap) {
      const a = tryParseAddress(b, DEFAULT_PORT);
      if (a) peers.addSeed(a.host, a.port, true, clock.now());
    }
  }

  /**
   * News (a newer version of a record held here, or this node's own new version signed outside a round)
   * is spread at once by an early round, at most one between two regular ticks: a change crosses the
   * network in ~log N exchange round trips instead of ~log N intervals, and a network where nothing
   * changes costs no more than before (under constant change, at most twice the rounds). What a round
   * pulls while it runs is spread by the early round after it. A node whose timer runs late (a starved
   * host: ≥ a quarter interval) adds no rounds; deaths are left to the rounds (a starved network must
   * not feed its false suspicions and their refutations back into more load).
   */
  private news(): void {
    this.calm = false;
    if (!this.cancel || this.earlySpent) return;
    if (this.lagMs() * 4 >= this.deps.config.gossipIntervalMs) return;
    if (this.window.reduced) return; // exchanges time out: no rounds beyond the regular ones
    this.earlySpent = true;
    if (this.running) {
      this.earlyDue = true;
      return;
    }
    // a microtask later: the rest of the records taken with this one are news of the same round
    queueMicrotask(() => {
      if (!this.cancel) return;
      if (this.running) this.earlyDue = true;
      else this.startRound();
    });
  }

  private startRound(): void {
    this.running = this.round()
      .catch((err) => this.log.warn(`gossip round failed: ${(err as Error).message}`))
      .finally(() => {
        this.running = undefined;
        if (this.earlyDue && this.cancel) {
          this.earlyDue = false;
          this.startRound();
        }
      });
  }

  /** Starts a round every `gossipIntervalMs` (a round still running is never overlapped). */
  start(): void {
    const { config, clock } = this.deps;
    this.addBootstrapSeeds();
    this.stop();
    const tick = () => {
      this.lateness.tick(performance.now(), config.gossipIntervalMs);
      this.earlySpent = false;
      if (this.running) return;
      this.startRound();
    };
    this.cancel = clock.setInterval(tick, config.gossipIntervalMs);
    tick();
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
    this.earlyDue = false;
  }

  /** Waits for a round in progress (graceful stop). */
  async idle(): Promise<void> {
    await this.running;
  }
}
