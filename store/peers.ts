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
  /**
   * [id, version, dead] of every row, sorted by id: what gossip compares, without the records. The same
   * array (read-only) until a row's id, version or death changes, so a hash of it can be kept by identity.
   */
  digest(): [string, number, boolean][];
  /** How many rows (tombstones included). */
  count(): number;
  /** Inserts or replaces the whole row (written to SQLite at once). */
  put(row: PeerRow): void;
  /**
   * Replaces a held row whose id, record, version and state are unchanged (a contact: last seen, last
   * tried, latency): in memory at once, in SQLite at the next `flush` — one transaction for every row
   * touched, instead of a write per exchange. Lost on a crash: soft facts, measured again within rounds.
   */
  touch(row: PeerRow): void;
  /** Writes the rows touched since the last flush; the count written. */
  flush(): number;
  remove(id: string): boolean;
  /** Drops tombstones last updated before `before`. */
  purgeDead(before: number): number;
  seeds(): SeedRow[];
  /** Adds a seed; an existing one keeps its learned id (and becomes root if asked). */
  addSeed(host: string, port: number, root: boolean, now: number): void;
  setSeedNode(host: string, port: number, nodeId: string): void;
  removeSeed(host: string, port: number): boolean;
  /** How many times the table was read from SQLite (once, then after another connection wrote). */
  loads(): number;
  /** How many times the seeds were read from SQLite (once, then after a write). */
  seedLoads(): number;
  /**
   * Makes the next read ask SQLite whether another connection wrote the table (reads ask by themselves
   * at most every 250 ms: another process's write is seen within that).
   */
  refresh(): void;
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

/**
 * The IP table in memory, written through to SQLite: reads (a row, every row, the digest, the count) never
 * touch the database, each write is one statement. Gossip reads the table on every exchange; reading
 * every row from SQLite for it was most of a node's CPU, and grew with the network. The table is loaded
 * on first use and again when another connection wrote the database (SQLite's `data_version`, asked at
 * most every 250 ms or after `refresh()`: the CLI in another process, another store on the same file).
 *
 * Rows handed out are the cached objects: treat them as read-only (every writer here puts a new row).
 */
export function peerStore(
  db: BetterSqlite3.Database,
  /** How often (ms) a read asks SQLite whether another connection wrote; the clock that measures it. */
  o: { recheckMs?: number; now?: () => number } = {},
): PeerStore & {
  /**
   * SQLite's data_version as last asked (at most every recheckMs, as the table is; the rows are not
   * loaded for it): another connection wrote when it changes. The store's other caches (meta) share
   * this one question.
   */
  dataVersion(): number;
} {
  const recheckMs = o.recheckMs ?? 250;
  const clock = o.now ?? (() => performance.now());
  const q = lazyStatements({
    all: () => db.prepare<[], Row>("SELECT * FROM peers"),
    dataVersion: () => db.prepare<[], { data_version: number }>("PRAGMA data_version"),
    put: () =>
      db.prepare(
        `INSERT OR REPLACE INTO peers (id, record, version, state, last_seen, last_tried, failures, latency_ms, rtt_samples, updated_at)
       VALUES (@id, @record, @version, @state, @last_seen, @last_tried, @failures, @latency_ms, @rtt_samples, @updated_at)`,
      ),
    // a contact's soft facts only (touch keeps record, version and state): the row's record is not sent again
    soft: () =>
      db.prepare(
        `UPDATE peers SET last_seen = @last_seen, last_tried = @last_tried, failures = @failures,
       latency_ms = @latency_ms, rtt_samples = @rtt_samples, updated_at = @updated_at
       WHERE id = @id AND version = @version`,
      ),
    remove: () => db.prepare<[string]>("DELETE FROM peers WHERE id = ?"),
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
  let rows: Map<string, PeerRow> | undefined;
  let version = -1;
  let loads = 0;
  let seedLoads = 0;
  /** Ids touched since the last flush (their rows in `rows` are written then). */
  const dirty = new Set<string>();
  /**
   * Every row sorted by id (with each id's place), and the digest: made again only after a change that
   * touches them (a contact replaces its row in place).
   */
  let sorted: PeerRow[] | undefined;
  let place = new Map<string, number>();
  /** The seeds, as read (every gossip round asks): read again after a write here or another connection's. */
  let seedRows: SeedRow[] | undefined;
  let digest: [string, number, boolean][] | undefined;
  let checkedAt = Number.NEGATIVE_INFINITY;
  /** SQLite's data_version as last asked. */
  let asked: number | undefined;
  const dataVersion = (): number => {
    // asking SQLite on every read was a third of a gossip round's CPU: at most every recheckMs
    const t = clock();
    if (asked === undefined || t - checkedAt >= recheckMs) {
      checkedAt = t;
      asked = q.dataVersion.get()?.data_version ?? 0;
    }
    return asked;
  };
  const table = (): Map<string, PeerRow> => {
    const now = dataVersion();
    if (!rows || now !== version) {
      rows = new Map(q.all.all().map((r) => [r.id, toRow(r)]));
      version = now;
      loads++;
      // another connection wrote: its rows win over contacts not flushed yet (never write an old record back)
      dirty.clear();
      seedRows = undefined;
      sorted = undefined;
      digest = undefined;
    }
    return rows;
  };
  /** A row's columns, as the statements name them. */
  const columns = (p: PeerRow) => ({
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
  const write = (p: PeerRow) => {
    q.put.run(columns(p));
  };
  const byId = () => {
    const held = table();
    if (!sorted) {
      sorted = [...held.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      place = new Map(sorted.map((r, i) => [r.id, i]));
    }
    return sorted;
  };
  /** Holds `row` in place of the held row of its id (kept in the sorted list when it is made). */
  const replace = (held: Map<string, PeerRow>, row: PeerRow) => {
    const had = held.has(row.id);
    held.set(row.id, row);
    const i = place.get(row.id);
    if (sorted && had && i !== undefined) sorted[i] = row;
    else sorted = undefined;
  };
  return {
    get: (id) => table().get(id),
    list: () => [...byId()],
    digest: () => {
      const all = byId();
      digest ??= all.map((r) => [r.id, r.version, r.state === "dead"]);
      return digest;
    },
    count: () => table().size,
    put: (p) => {
      const held = table();
      write(p);
      dirty.delete(p.id);
      const old = held.get(p.id);
      replace(held, { ...p, rttSamples: [...p.rttSamples] });
      // the digest is ids, versions and deaths: a contact (last seen, latency) leaves it as it is
      if (!old || old.version !== p.version || (old.state === "dead") !== (p.state === "dead"))
        digest = undefined;
    },
    touch: (p) => {
      const held = table();
      const old = held.get(p.id);
      if (!old || old.version !== p.version || old.state !== p.state || old.record !== p.record) {
        throw new Error(`peers.touch(${p.id}): not a contact of a held row (use put)`);
      }
      replace(held, { ...p, rttSamples: [...p.rttSamples] });
      dirty.add(p.id);
    },
    flush: () => {
      if (dirty.size === 0) return 0;
      const held = table();
      let n = 0;
      db.transaction(() => {
        for (const id of dirty) {
          const p = held.get(id);
          if (!p) continue;
          const { record: _, state: __, ...soft } = columns(p);
          n += q.soft.run(soft).changes;
        }
      })();
      dirty.clear();
      // our own writes leave data_version as it was: nothing to read again
      return n;
    },
    remove: (id) => {
      const held = table();
      dirty.delete(id);
      const removed = q.remove.run(id).changes > 0;
      if (held.delete(id) || removed) {
        sorted = undefined;
        digest = undefined;
      }
      return removed;
    },
    purgeDead: (before) => {
      const held = table();
      let n = 0;
      for (const r of [...held.values()])
        if (r.state === "dead" && r.updatedAt < before) {
          q.remove.run(r.id);
          dirty.delete(r.id);
          held.delete(r.id);
          n++;
        }
      if (n) {
        sorted = undefined;
        digest = undefined;
      }
      return n;
    },
    seeds: () => {
      table(); // the data_version check: a seed another connection (the CLI) added is seen
      if (!seedRows) {
        seedRows = q.seeds.all().map((s) => ({
          host: s.host,
          port: s.port,
          root: s.root === 1,
          nodeId: s.node_id ?? undefined,
          addedAt: s.added_at,
        }));
        seedLoads++;
      }
      return seedRows.map((s) => ({ ...s }));
    },
    addSeed: (host, port, root, now) => {
      q.addSeed.run(host, port, root ? 1 : 0, now);
      seedRows = undefined;
    },
    setSeedNode: (host, port, nodeId) => {
      // each exchange with a seed names its node: a write only when that is news
      const held = seedRows?.find((s) => s.host === host && s.port === port);
      if (held?.nodeId === nodeId) return;
      q.setSeedNode.run(nodeId, host, port);
      seedRows = undefined;
    },
    removeSeed: (host, port) => {
      seedRows = undefined;
      return q.removeSeed.run(host, port).changes > 0;
    },
    loads: () => loads,
    seedLoads: () => seedLoads,
    refresh: () => {
      checkedAt = Number.NEGATIVE_INFINITY;
    },
    dataVersion,
  };
}
