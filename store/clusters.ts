import type BetterSqlite3 from "better-sqlite3";
import { lazyStatements } from "./lazy.ts";

/** One cluster document this node holds: the newest validly signed version it has seen. */
export interface ClusterRow {
  /** The host's node id (the document's signer). */
  host: string;
  name: string;
  version: number;
  /** The signed document as received, JSON. */
  document: string;
  joinedAt: number;
}

/** The cluster documents this node hosts or has joined, as domain verbs. */
export interface ClusterStore {
  list(): ClusterRow[];
  get(host: string, name: string): ClusterRow | undefined;
  /** Inserts or replaces a document; keeps the time it was first joined. */
  put(row: Omit<ClusterRow, "joinedAt">, now: number): void;
  remove(host: string, name: string): boolean;
}

interface Row {
  host: string;
  name: string;
  version: number;
  document: string;
  joined_at: number;
}

const toRow = (r: Row): ClusterRow => ({
  host: r.host,
  name: r.name,
  version: r.version,
  document: r.document,
  joinedAt: r.joined_at,
});

export function clusterStore(db: BetterSqlite3.Database): ClusterStore {
  const q = lazyStatements({
    list: () => db.prepare<[], Row>("SELECT * FROM clusters ORDER BY name, host"),
    get: () => db.prepare<[string, string], Row>("SELECT * FROM clusters WHERE host = ? AND name = ?"),
    put: () =>
      db.prepare<[string, string, number, string, number]>(
        `INSERT INTO clusters (host, name, version, document, joined_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (host, name) DO UPDATE SET version = excluded.version, document = excluded.document`,
      ),
    remove: () => db.prepare<[string, string]>("DELETE FROM clusters WHERE host = ? AND name = ?"),
  });
  return {
    list: () => q.list.all().map(toRow),
    get: (host, name) => {
      const r = q.get.get(host, name);
      return r ? toRow(r) : undefined;
    },
    put: (r, now) => {
      q.put.run(r.host, r.name, r.version, r.document, now);
    },
    remove: (host, name) => q.remove.run(host, name).changes > 0,
  };
}
