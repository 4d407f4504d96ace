// The only file that loads better-sqlite3. The per-platform entry point requires its prebuilt addon
// statically, so `bun build --compile` embeds it and the binary needs no node_modules. It is required
// on first open (a static string, so the bundler still embeds it) to keep commands without a database fast.

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type BetterSqlite3 from "better-sqlite3";
import { P2prcError } from "../core/index.ts";
import { type ClientStore, clientStore } from "./client.ts";
import { type ClusterStore, clusterStore } from "./clusters.ts";
import { type ImageStore, imageStore } from "./images.ts";
import { lazyStatements } from "./lazy.ts";
import { MIGRATIONS } from "./migrations.ts";
import { type PeerStore, peerStore } from "./peers.ts";
import type { ContainerRecord, PortMapping, SshInfo } from "./types.ts";

type Db = BetterSqlite3.Database;

let driver: typeof BetterSqlite3 | undefined;
function sqlite(): typeof BetterSqlite3 {
  driver ??= require("better-sqlite3/linux-x64") as typeof BetterSqlite3;
  return driver;
}

/** Key/value facts about this node. */
export interface MetaStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
}

/** Task containers run by this node's server. */
export interface ContainerStore {
  insert(record: ContainerRecord): void;
  get(idOrName: string): ContainerRecord | undefined;
  list(): ContainerRecord[];
  remove(id: string): boolean;
  /** A renewed lease: the container now expires at `expiresAt` (ms). False when there is no such container. */
  setExpiry(id: string, expiresAt: number): boolean;
  count(): number;
  countByOwner(owner: string): number;
  /** Containers whose lease ended at or before `now`. */
  expired(now: number): ContainerRecord[];
  /**
   * Writes so far through this handle (insert, remove, setExpiry), counted in memory: a cache of what
   * the table says (/v1/specs) is still right while this is unchanged, with no read of the table.
   */
  changes(): number;
}

/** The node's state database. Methods are domain verbs; SQL stays in this file. */
export interface Store {
  readonly path: string;
  readonly meta: MetaStore;
  readonly containers: ContainerStore;
  /** The IP table and bootstrap seeds. */
  readonly peers: PeerStore;
  /** The client's tracked containers, groups and batches. */
  readonly client: ClientStore;
  /** Cluster documents hosted or joined. */
  readonly clusters: ClusterStore;
  /** Images members pushed to this node. */
  readonly images: ImageStore;
  /** Runs `fn` in one transaction. */
  transaction<T>(fn: () => T): T;
  /** Schema version after migrations. */
  version(): number;
  close(): void;
}

interface ContainerRow {
  id: string;
  name: string;
  image: string;
  owner: string;
  created_at: number;
  expires_at: number;
  cpus: number;
  memory_mb: number;
  gpu: number;
  ports: string;
  ssh: string | null;
}

function toRecord(row: ContainerRow): ContainerRecord {
  return {
    id: row.id,
    name: row.name,
    image: row.image,
    owner: row.owner,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    cpus: row.cpus,
    memoryMb: row.memory_mb,
    gpu: row.gpu === 1,
    ports: JSON.parse(row.ports) as PortMapping[],
    ssh: row.ssh === null ? undefined : (JSON.parse(row.ssh) as SshInfo),
  };
}

function migrate(db: Db): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

/**
 * Opens (creating if needed) the state database at `path` (or ":memory:"), WAL mode, migrated. `now`:
 * the clock (ms) that paces the peer store's question whether another connection wrote (at most every
 * 250 ms; default performance.now: bench/gossip's one-process part passes its ManualClock's).
 */
export function openStore(path: string, o: { now?: () => number } = {}): Store {
  let db: Db | undefined;
  try {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const Database = sqlite();
    db = new Database(path);
    const found = db.pragma("user_version", { simple: true }) as number;
    if (found > MIGRATIONS.length) {
      throw new P2prcError(
        "E_STORE",
        `state database ${path} has schema ${found}, newer than this p2prc knows (${MIGRATIONS.length}); upgrade p2prc`,
      );
    }
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("busy_timeout = 5000");
    db.pragma("foreign_keys = ON");
    migrate(db);
  } catch (err) {
    db?.close();
    if (err instanceof P2prcError) throw err;
    throw new P2prcError("E_STORE", `cannot open state database ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }

  const q = lazyStatements({
    metaGet: () => db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?"),
    metaSet: () =>
      db.prepare<[string, string]>(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ),
    cInsert: () =>
      db.prepare(
        `INSERT INTO containers (id, name, image, owner, created_at, expires_at, cpus, memory_mb, gpu, ports, ssh)
       VALUES (@id, @name, @image, @owner, @created_at, @expires_at, @cpus, @memory_mb, @gpu, @ports, @ssh)`,
      ),
    cGet: () =>
      db.prepare<[string, string], ContainerRow>("SELECT * FROM containers WHERE id = ? OR name = ?"),
    cList: () => db.prepare<[], ContainerRow>("SELECT * FROM containers ORDER BY created_at, id"),
    cRemove: () => db.prepare<[string]>("DELETE FROM containers WHERE id = ?"),
    cExpiry: () => db.prepare<[number, string]>("UPDATE containers SET expires_at = ? WHERE id = ?"),
    cCount: () => db.prepare<[], { n: number }>("SELECT count(*) AS n FROM containers"),
    cCountOwner: () =>
      db.prepare<[string], { n: number }>("SELECT count(*) AS n FROM containers WHERE owner = ?"),
    cExpired: () =>
      db.prepare<[number], ContainerRow>(
        "SELECT * FROM containers WHERE expires_at <= ? ORDER BY expires_at",
      ),
  });

  // Meta is read every gossip round (the record's metadata, which the CLI may set from another process),
  // and each SQLite read in WAL mode takes and drops a lock (two fcntl calls): that was a quarter of a
  // quiet round's CPU. Values read are held until another connection writes (the peer store's
  // data_version question, asked at most every 250 ms); this connection's writes update them.
  const metaHeld = new Map<string, string | undefined>();
  let metaVersion: number | undefined;
  const meta: MetaStore = {
    get: (key) => {
      const v = peers.dataVersion();
      if (v !== metaVersion) {
        metaHeld.clear();
        metaVersion = v;
      }
      if (metaHeld.has(key)) return metaHeld.get(key);
      const value = q.metaGet.get(key)?.value;
      metaHeld.set(key, value);
      return value;
    },
    set: (key, value) => {
      q.metaSet.run(key, value);
      metaHeld.set(key, value);
    },
  };

  let containerChanges = 0;
  const containers: ContainerStore = {
    insert(r) {
      containerChanges++;
      q.cInsert.run({
        id: r.id,
        name: r.name,
        image: r.image,
        owner: r.owner,
        created_at: r.createdAt,
        expires_at: r.expiresAt,
        cpus: r.cpus,
        memory_mb: r.memoryMb,
        gpu: r.gpu ? 1 : 0,
        ports: JSON.stringify(r.ports),
        ssh: r.ssh === undefined ? null : JSON.stringify(r.ssh),
      });
    },
    get(idOrName) {
      const row = q.cGet.get(idOrName, idOrName);
      return row ? toRecord(row) : undefined;
    },
    list: () => q.cList.all().map(toRecord),
    remove: (id) => {
      containerChanges++;
      return q.cRemove.run(id).changes > 0;
    },
    setExpiry: (id, expiresAt) => {
      containerChanges++;
      return q.cExpiry.run(expiresAt, id).changes > 0;
    },
    count: () => q.cCount.get()?.n ?? 0,
    countByOwner: (owner) => q.cCountOwner.get(owner)?.n ?? 0,
    expired: (now) => q.cExpired.all(now).map(toRecord),
    changes: () => containerChanges,
  };

  let open = true;
  const peers = peerStore(db, o.now ? { now: o.now } : {});
  return {
    path,
    meta,
    containers,
    peers,
    client: clientStore(db),
    clusters: clusterStore(db),
    images: imageStore(db),
    transaction: (fn) => (db as Db).transaction(fn)(),
    version: () => db.pragma("user_version", { simple: true }) as number,
    close() {
      if (!open) return;
      open = false;
      peers.flush(); // the contacts not written yet
      db.close();
    },
  };
}
