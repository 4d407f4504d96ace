import { type Clock, sha256Hex, verifyJson } from "../core/index.ts";
import type { PeerRow, PeerStore } from "../store/index.ts";
import { type DeathNotice, type Digest, type PeerView, p2pSchemas, type SignedRecord } from "./types.ts";

/** What merging a record did. */
export type MergeResult = "added" | "updated" | "stale" | "invalid" | "tombstoned" | "self" | "self-newer";

const RTT_SAMPLES = 5;
/**
 * How often contacts (soft facts) are written to SQLite (and when the store closes). Each flush writes
 * every peer contacted since the last: a longer interval writes each peer fewer times, which is what kept
 * a node's cost per round growing with the table (5 s: 30 rows a flush at N = 100 against 9 at N = 10).
 */
const FLUSH_MS = 60_000;

/** Parses and verifies a signed record: schema, then the signature against the id (= the public key). */
export function verifyRecord(input: unknown): SignedRecord | undefined {
  const parsed = p2pSchemas().SignedRecordSchema.safeParse(input);
  if (!parsed.success) return undefined;
  const { record, signature } = parsed.data;
  return verifyJson(record.id, record, signature) ? parsed.data : undefined;
}

/** Parses and verifies a death notice against its reporter's id. */
export function verifyDeath(input: unknown): DeathNotice | undefined {
  const parsed = p2pSchemas().DeathNoticeSchema.safeParse(input);
  if (!parsed.success) return undefined;
  const { signature, ...body } = parsed.data;
  return verifyJson(body.reporter, body, signature) ? parsed.data : undefined;
}

/** Hashes of the digests met lately, by identity: the table hands out one array until it changes. */
const digestHashes = new WeakMap<Digest, string>();

/**
 * SHA-256 over the canonical digest: equal hashes mean equal tables. Kept per digest array, so a node
 * hashes its table once per change, not once per exchange (digests are never mutated).
 */
export function digestHash(digest: Digest): string {
  let hash = digestHashes.get(digest);
  if (hash === undefined) {
    // [string, integer, boolean] tuples: JSON.stringify gives exactly canonicalJson's bytes, much faster
    hash = sha256Hex(JSON.stringify(digest));
    digestHashes.set(digest, hash);
  }
  return hash;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

/**
 * The IP table: one signed record per node, kept in the state store. Records are only ever replaced
 * by a newer version signed by the same node; dead nodes leave a tombstone (the signed death notice)
 * so an old copy of their record cannot come back, while a newer version (the node rejoining) can.
 */
export class PeerTable {
  /**
   * Records and notices parsed from the rows, by id, with the text parsed: a contact replaces a row but
   * keeps its record's text (the same string), so each record is parsed once per version.
   */
  private readonly parsed = new Map<string, { text: string; value: SignedRecord | DeathNotice }>();
  private flushedAt: number;

  constructor(
    private readonly peers: PeerStore,
    private readonly selfId: string,
    private readonly clock: Clock,
  ) {
    this.flushedAt = clock.now();
  }

  get(id: string): PeerRow | undefined {
    return this.peers.get(id);
  }

  /** A row's record or notice, parsed once per text (shared: read-only). */
  private parse(row: PeerRow, text: string): SignedRecord | DeathNotice {
    const held = this.parsed.get(row.id);
    if (held && held.text === text) return held.value;
    const value = JSON.parse(text) as SignedRecord | DeathNotice;
    // ids dropped from the table leave entries here: cleared once they could outnumber the rows
    if (this.parsed.size > 2 * this.peers.count() + 64) this.parsed.clear();
    this.parsed.set(row.id, { text, value });
    return value;
  }

  /** The signed record held for `id` (not for tombstones). Read-only: it is the table's own copy. */
  record(id: string): SignedRecord | undefined {
    const row = this.peers.get(id);
    return row && this.recordOf(row);
  }

  /** `record(row.id)` for a row in hand (no second look-up: a round reads every live row's record). */
  recordOf(row: PeerRow): SignedRecord | undefined {
    if (!row.record || row.state === "dead") return undefined;
    return this.parse(row, row.record) as SignedRecord;
  }

  /** Stores this node's own (already signed) record. */
  putSelf(signed: SignedRecord): void {
    const now = this.clock.now();
    this.peers.put({
      id: signed.record.id,
      record: JSON.stringify(signed),
      version: signed.record.version,
      state: "alive",
      lastSeen: now,
      lastTried: now,
      failures: 0,
      latencyMs: 0,
      rttSamples: [],
      updatedAt: now,
    });
  }

  /** Merges a record that already passed `verifyRecord`. */
  merge(signed: SignedRecord): MergeResult {
    const { record } = signed;
    const existing = this.peers.get(record.id);
    if (record.id === this.selfId) {
      // strictly newer: our own record coming back (equal version) is no reason to re-sign
      return existing && record.version > existing.version ? "self-newer" : "self";
    }
    const now = this.clock.now();
    if (existing && record.version <= existing.version) {
      return existing.state === "dead" ? "tombstoned" : "stale";
    }
    this.peers.put({
      id: record.id,
      record: JSON.stringify(signed),
      version: record.version,
      state: "alive",
      lastSeen: now,
      lastTried: existing && existing.state !== "dead" ? existing.lastTried : 0,
      failures: 0,
      latencyMs: existing?.latencyMs,
      rttSamples: existing?.rttSamples ?? [],
      updatedAt: now,
    });
    return existing && existing.state !== "dead" ? "updated" : "added";
  }

  /** A direct exchange with `id` succeeded after `rttMs`. */
  markContact(id: string, rttMs?: number): void {
    const row = this.peers.get(id);
    if (!row || row.state === "dead" || id === this.selfId) return;
    const now = this.clock.now();
    const samples =
      rttMs === undefined
        ? row.rttSamples
        : [...row.rttSamples, Math.round(rttMs * 10) / 10].slice(-RTT_SAMPLES);
    const next: PeerRow = {
      ...row,
      state: "alive",
      lastSeen: now,
      lastTried: rttMs === undefined ? row.lastTried : now,
      failures: 0,
      rttSamples: samples,
      latencyMs: samples.length ? median(samples) : row.latencyMs,
    };
    // a contact with a live peer changes only soft facts: written with the next flush (see soft); a
    // peer's first latency is news to whoever reads the table in SQLite (`p2prc --ls`): written at once
    const firstLatency = row.latencyMs == null && next.latencyMs != null;
    if (row.state === "alive" && !firstLatency) this.soft(next);
    else this.peers.put(next);
  }

  /**
   * A contact's soft facts (last seen, last tried, latency) go to SQLite at most every FLUSH_MS, one
   * transaction for all: a write per exchange was a tenth of a node's CPU. The table in memory has them at once.
   */
  private soft(row: PeerRow): void {
    this.peers.touch(row);
    const now = this.clock.now();
    if (now - this.flushedAt >= FLUSH_MS) {
      this.flushedAt = now;
      this.peers.flush();
    }
  }

  /** An exchange with `id` failed; returns the row, now suspect. */
  markFailure(id: string): PeerRow | undefined {
    const row = this.peers.get(id);
    if (!row || row.state === "dead") return undefined;
    const next: PeerRow = {
      ...row,
      state: "suspect",
      failures: row.failures + 1,
      lastTried: this.clock.now(),
    };
    this.peers.put(next);
    return next;
  }

  markTried(id: string): void {
    const row = this.peers.get(id);
    if (row && row.state !== "dead") this.soft({ ...row, lastTried: this.clock.now() });
  }

  /**
   * Applies a verified death notice. Returns "refute" when it is about this node (which must then
   * publish a newer version), "applied" when a record was dropped, "ignored" when ours is newer.
   */
  applyDeath(notice: DeathNotice, maxAgeMs = Number.POSITIVE_INFINITY): "applied" | "ignored" | "refute" {
    if (notice.id === this.selfId) return "refute";
    const now = this.clock.now();
    // Too old (its tombstone would already be purged) or from the future: ignore, so purged
    // tombstones are not pushed back and forth forever.
    if (now - notice.at > maxAgeMs || notice.at > now + 60_000) return "ignored";
    const reporter = this.peers.get(notice.reporter);
    if (!reporter || reporter.state === "dead") return "ignored"; // only known nodes may report deaths
    const existing = this.peers.get(notice.id);
    // Only a node this table holds can die here, and only at the version held: a notice cannot claim
    // a version nobody published (which would keep the node out after it restarts).
    if (!existing || existing.state === "dead" || existing.version > notice.version) return "ignored";
    // the tombstone keeps the name the node went by (outside the signed notice), so a user who names a
    // dead node hears that it is dead, not that it is unknown
    const formerName = existing.record
      ? (JSON.parse(existing.record) as Partial<SignedRecord>).record?.name
      : undefined;
    this.peers.put({
      id: notice.id,
      record: JSON.stringify(formerName ? { ...notice, formerName } : notice),
      version: existing.version,
      state: "dead",
      lastSeen: existing.lastSeen,
      lastTried: now,
      failures: existing.failures,
      latencyMs: undefined,
      rttSamples: [],
      // tombstones age from the death, wherever they were learned
      updatedAt: Math.min(notice.at, now),
    });
    return "applied";
  }

  /** The death notice held for a tombstone. */
  death(id: string): DeathNotice | undefined {
    const row = this.peers.get(id);
    if (row?.state !== "dead" || !row.record) return undefined;
    const { formerName: _, ...notice } = JSON.parse(row.record) as DeathNotice & { formerName?: string };
    return notice;
  }

  /** The nodes held as dead (tombstones), with the name each went by when this table knew it. */
  dead(): { id: string; name: string | undefined }[] {
    return this.peers
      .list()
      .filter((r) => r.state === "dead")
      .map((r) => ({
        id: r.id,
        name: r.record ? (JSON.parse(r.record) as { formerName?: string }).formerName : undefined,
      }));
  }

  /** [id, version, dead] for every row, sorted by id. */
  digest(): Digest {
    // ids and versions only: reading every row's record (~1.4 KB each) for this was most of an exchange
    return this.peers.digest();
  }

  /** Live rows (alive and suspect). */
  live(): PeerRow[] {
    return this.peers.list().filter((r) => r.state !== "dead");
  }

  /**
   * The certificate of the node whose record lists host:port (that node's, when `nodeId` is given):
   * what a request to that address pins.
   */
  certAt(host: string, port: number, nodeId?: string): { nodeId: string; cert: string } | undefined {
    for (const row of this.live()) {
      if (!row.record || (nodeId && row.id !== nodeId)) continue;
      const { record } = this.parse(row, row.record) as SignedRecord;
      if (record.cert && record.addresses.some((a) => a.host === host && a.port === port))
        return { nodeId: record.id, cert: record.cert };
    }
    return undefined;
  }

  /** How many rows the table holds, tombstones included. */
  size(): number {
    return this.peers.count();
  }

  /**
   * Keeps at most `max` rows: drops the oldest tombstones first, then live nodes this node never
   * reached itself (least recently heard of first), then the ones it reached (the same way). This node
   * and the nodes `vouched` for are never dropped. Returns the ids dropped.
   */
  limit(max: number, vouched: (id: string) => boolean): string[] {
    const excess = this.peers.count() - max;
    if (excess <= 0) return [];
    const rank = (r: PeerRow) => (r.state === "dead" ? 0 : r.latencyMs === undefined ? 1 : 2);
    const victims = this.peers
      .list()
      .filter((r) => r.id !== this.selfId && (r.state === "dead" || !vouched(r.id)))
      .sort(
        (a, b) =>
          rank(a) - rank(b) ||
          (a.state === "dead" ? a.updatedAt - b.updatedAt : a.lastSeen - b.lastSeen) ||
          a.id.localeCompare(b.id),
      )
      .slice(0, excess);
    for (const r of victims) this.peers.remove(r.id);
    return victims.map((r) => r.id);
  }

  /** Drops tombstones older than `ageMs` (none held: nothing read). */
  purge(ageMs: number): number {
    if (this.kinds().tombstones === 0) return 0;
    return this.peers.purgeDead(this.clock.now() - ageMs);
  }

  /**
   * The live rows (this node's aside) whose record names no address or is relayed: nobody can probe
   * them (see gossip-core silentWithoutAddress). Read from every row only when an id, a version or a
   * death changed (the digest's identity), so the gossip round's check every few seconds reads these
   * rows alone, not the table: a pass over it was a cost that grew with N (bench/gossip).
   */
  unreachable(): readonly string[] {
    return this.kinds().unreachable;
  }

  private kindsFor: { digest: unknown; unreachable: string[]; tombstones: number } | undefined;
  private kinds(): { unreachable: string[]; tombstones: number } {
    const digest = this.peers.digest();
    if (this.kindsFor?.digest !== digest) {
      const unreachable: string[] = [];
      let tombstones = 0;
      for (const row of this.peers.list()) {
        if (row.state === "dead") tombstones++;
        else if (row.id !== this.selfId) {
          const r = this.recordOf(row)?.record;
          if (r && (r.addresses.length === 0 || r.reach === "relay")) unreachable.push(row.id);
        }
      }
      this.kindsFor = { digest, unreachable, tombstones };
    }
    return this.kindsFor;
  }

  /** The table as users see it (`--ls`): live nodes, sorted by latency, this node first. */
  views(): PeerView[] {
    const rows = this.live();
    const views = rows.flatMap((row): PeerView[] => {
      if (!row.record) return [];
      const { record } = this.parse(row, row.record) as SignedRecord;
      const addr = record.addresses[0];
      return [
        {
          id: record.id,
          name: record.name,
          address: addr?.host,
          port: addr?.port,
          nat: record.nat,
          latencyMs: row.id === this.selfId ? 0 : row.latencyMs,
          lastSeen: new Date(row.lastSeen).toISOString(),
          metadata: record.metadata,
          state: row.state === "suspect" ? "suspect" : "alive",
          self: row.id === this.selfId,
          offer: record.offer,
          tls: record.cert !== undefined,
          reach: record.reach,
          relays: record.relays ?? [],
        },
      ];
    });
    return views.sort(
      (a, b) =>
        Number(b.self) - Number(a.self) ||
        (a.latencyMs ?? Number.POSITIVE_INFINITY) - (b.latencyMs ?? Number.POSITIVE_INFINITY) ||
        a.id.localeCompare(b.id),
    );
  }
}
