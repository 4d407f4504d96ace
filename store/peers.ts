import type BetterSqlite3 from "better-sqlite3";
import { lazyStatements } from "./lazy.ts";

/** Liveness of a peer as this node sees it. */
export type PeerState = "alive" | "suspect" | "dead";

/** One IP-table row: the node's signed record (as JSON text) and what this node measured about it. */
export interface PeerRow {
  id: string;
  /** The signed record as received, JSON; undefined for a tombstone that never had one here. */
  record: string | undefined;
  version: number;
  state: PeerState;
  lastSeen: number;
  lastTried: number;
  failures: number;
  latencyMs: number | undefined;
  rttSamples: number[];
  updatedAt: number;
}

/** A bootstrap address (config `bootstrap`, `--as`, `--arn`). */
export interface SeedRow {
  host: string;
  port: number;
  root: boolean;
  nodeId: string | undefined;
  addedAt: number;
}

/** The IP table and the seeds, as domain verbs. */
export interface PeerStore {
  get(id: string): PeerRow | undefined;
  list(): PeerRow[];
  /** [id, version, dead] of every row, sorted by id: what gossip compares, without the records. */
  digest(): [string, number, boolean][];
  /** How many rows (tombstones included). */
  count(): number;
  /** Inserts or replaces the whole row. */
  put(row: PeerRow): void;
  remove(id: string): boolean;
  /** Drops tombstones last updated before `before`. */
  purgeDead(before: number): number;
  seeds(): SeedRow[];
  /** Adds a seed; an existing one keeps its learned id (and becomes root if asked). */
  addSeed(host: string, port: number, root: boolean, now: number): void;
  setSeedNode(host: string, port: number, nodeId: string): void;
  removeSeed(host: string, port: number): boolean;
}

interface Row {
  id: string;
  record: string | null;
  version: number;
  state: PeerState;
  last_seen: number;
  last_tried: number;
  failures: number;
  latency_ms: number | null;
  rtt_samples: string;
  updated_at: number;
}

const toRow = (r: Row): PeerRow => ({
  id: r.id,
  record: r.record ?? undefined,
  version: r.version,
  state: r.state,
  lastSeen: r.last_seen,
  lastTried: r.last_tried,
  failures: r.failures,
  latencyMs: r.latency_ms ?? undefined,
  rttSamples: JSON.parse(r.rtt_samples) as number[],
  updatedAt: r.updated_at,
});

export function peerStore(db: BetterSqlite3.Database): PeerStore {
  const q = lazyStatements({
    get: () => db.prepare<[string], Row>("SELECT * FROM peers WHERE id = ?"),
    list: () => db.prepare<[], Row>("SELECT * FROM peers ORDER BY id"),
    digest: () =>
      db.prepare<[], { id: string; version: number; state: string }>(
        "SELECT id, version, state FROM peers ORDER BY id",
      ),
    count: () => db.prepare<[], { n: number }>("SELECT count(*) AS n FROM peers"),
    put: () =>
      db.prepare(
        `INSERT OR REPLACE INTO peers (id, record, version, state, last_seen, last_tried, failures, latency_ms, rtt_samples, updated_at)
       VALUES (@id, @record, @version, @state, @last_seen, @last_tried, @failures, @latency_ms, @rtt_samples, @updated_at)`,
      ),
    remove: () => db.prepare<[string]>("DELETE FROM peers WHERE id = ?"),
    purge: () => db.prepare<[number]>("DELETE FROM peers WHERE state = 'dead' AND updated_at < ?"),
    seeds: () =>
      db.prepare<[], { host: string; port: number; root: number; node_id: string | null; added_at: number }>(
        "SELECT * FROM seeds ORDER BY added_at, host, port",
      ),
    addSeed: () =>
      db.prepare<[string, number, number, number]>(
        `INSERT INTO seeds (host, port, root, added_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (host, port) DO UPDATE SET root = max(root, excluded.root)`,
      ),
    setSeedNode: () =>
      db.prepare<[string, string, number]>("UPDATE seeds SET node_id = ? WHERE host = ? AND port = ?"),
    removeSeed: () => db.prepare<[string, number]>("DELETE FROM seeds WHERE host = ? AND port = ?"),
  });
  return {
    get: (id) => {
      const r = q.get.get(id);
      return r ? toRow(r) : undefined;
    },
    list: () => q.list.all().map(toRow),
    digest: () => q.digest.all().map((r) => [r.id, r.version, r.state === "dead"]),
    count: () => q.count.get()?.n ?? 0,
    put: (p) => {
      q.put.run({
        id: p.id,
        record: p.record ?? null,
        version: p.version,
        state: p.state,
        last_seen: p.lastSeen,
        last_tried: p.lastTried,
        failures: p.failures,
        latency_ms: p.latencyMs ?? null,
        rtt_samples: JSON.stringify(p.rttSamples),
        updated_at: p.updatedAt,
      });
    },
    remove: (id) => q.remove.run(id).changes > 0,
    purgeDead: (before) => q.purge.run(before).changes,
    seeds: () =>
      q.seeds.all().map((s) => ({
        host: s.host,
        port: s.port,
        root: s.root === 1,
        nodeId: s.node_id ?? undefined,
        addedAt: s.added_at,
      })),
    addSeed: (host, port, root, now) => {
      q.addSeed.run(host, port, root ? 1 : 0, now);
    },
    setSeedNode: (host, port, nodeId) => {
      q.setSeedNode.run(nodeId, host, port);
    },
    removeSeed: (host, port) => q.removeSeed.run(host, port).changes > 0,
  };
}
