import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3/linux-x64";
import { P2prcError } from "../core/index.ts";
import { MIGRATIONS } from "./migrations.ts";
import type { PeerRow } from "./peers.ts";
import { openStore } from "./store.ts";
import type { ContainerRecord } from "./types.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-store-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function record(n: number, overrides: Partial<ContainerRecord> = {}): ContainerRecord {
  return {
    id: `id-${n}`,
    name: `task-${n}`,
    image: "p2prc-test/busybox",
    owner: "owner-a",
    createdAt: 1000 + n,
    expiresAt: 5000 + n * 100,
    cpus: 0.5,
    memoryMb: 64,
    gpu: false,
    ports: [],
    ...overrides,
  };
}

describe("openStore", () => {
  test("creates a WAL database (with parent dirs) migrated to the latest version", () => {
    const path = join(root, "a", "b", "state.db");
    const store = openStore(path);
    try {
      expect(store.path).toBe(path);
      expect(store.version()).toBe(MIGRATIONS.length);
      expect(MIGRATIONS.length).toBeGreaterThanOrEqual(2);
      store.meta.set("k", "v");
      expect(existsSync(path)).toBe(true);
      expect(existsSync(`${path}-wal`)).toBe(true);
    } finally {
      store.close();
    }
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
      expect(db.pragma("user_version", { simple: true })).toBe(MIGRATIONS.length);
    } finally {
      db.close();
    }
  });

  test("reopening is idempotent and keeps data", () => {
    const path = join(root, "reopen.db");
    const first = openStore(path);
    first.meta.set("name", "node-a");
    first.containers.insert(record(1));
    first.close();
    first.close(); // close twice is fine

    const second = openStore(path);
    try {
      expect(second.version()).toBe(MIGRATIONS.length);
      expect(second.meta.get("name")).toBe("node-a");
      expect(second.containers.get("id-1")).toEqual(record(1));
      expect(second.containers.count()).toBe(1);
    } finally {
      second.close();
    }
  });

  test("works in memory", () => {
    const store = openStore(":memory:");
    try {
      expect(store.version()).toBe(MIGRATIONS.length);
      store.meta.set("x", "1");
      expect(store.meta.get("x")).toBe("1");
    } finally {
      store.close();
    }
  });

  test("a database from a newer p2prc is refused with E_STORE", () => {
    const path = join(root, "newer.db");
    const db = new Database(path);
    db.pragma(`user_version = ${MIGRATIONS.length + 5}`);
    db.close();
    let err: unknown;
    try {
      openStore(path).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(P2prcError);
    expect((err as P2prcError).code).toBe("E_STORE");
    expect((err as P2prcError).message).toContain(String(MIGRATIONS.length + 5));
    expect((err as P2prcError).message).toContain("upgrade");
  });

  test("a file that is not a database is E_STORE naming the path", () => {
    const path = join(root, "not-a-db");
    writeFileSync(path, "this is plain text, definitely not sqlite ".repeat(200));
    let err: unknown;
    try {
      openStore(path).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(P2prcError);
    expect((err as P2prcError).code).toBe("E_STORE");
    expect((err as P2prcError).message).toContain(path);
  });
});

describe("meta", () => {
  test("get of a missing key is undefined; set overwrites", () => {
    const store = openStore(join(root, "meta.db"));
    try {
      expect(store.meta.get("missing")).toBeUndefined();
      store.meta.set("k", "one");
      expect(store.meta.get("k")).toBe("one");
      store.meta.set("k", "two");
      expect(store.meta.get("k")).toBe("two");
      store.meta.set("empty", "");
      expect(store.meta.get("empty")).toBe("");
    } finally {
      store.close();
    }
  });
});

describe("meta, held in memory", () => {
  test("a value another connection sets is read again after its write (data_version); this connection's at once", () => {
    const path = join(root, "meta-held.db");
    const store = openStore(path);
    const other = openStore(path);
    try {
      expect(store.meta.get("node.metadata")).toBeUndefined();
      other.meta.set("node.metadata", "set by the CLI");
      store.peers.refresh(); // or 250 ms later: the peer store's data_version question, shared
      expect(store.meta.get("node.metadata")).toBe("set by the CLI");
      store.meta.set("node.metadata", "set here");
      expect(store.meta.get("node.metadata")).toBe("set here");
      expect(other.meta.get("node.metadata")).toBe("set here");
      // a key first read after the other's write, beside one held
      other.meta.set("k", "1");
      store.peers.refresh();
      expect(store.meta.get("k")).toBe("1");
      expect(store.meta.get("node.metadata")).toBe("set here");
    } finally {
      other.close();
      store.close();
    }
  });
});

describe("containers", () => {
  test("insert, get by id and by name, with ports, ssh and gpu round-tripped", () => {
    const store = openStore(join(root, "containers.db"));
    try {
      const full = record(7, {
        gpu: true,
        ports: [
          { internal: 22, external: 32022 },
          { internal: 8080, external: 32080 },
        ],
        ssh: { port: 32022, user: "root", command: "ssh -p 32022 root@10.0.0.7" },
      });
      store.containers.insert(full);
      expect(store.containers.get("id-7")).toEqual(full);
      expect(store.containers.get("task-7")).toEqual(full);
      expect(store.containers.get("nope")).toBeUndefined();
      const plain = store.containers.get("id-7");
      expect(plain?.gpu).toBe(true);

      store.containers.insert(record(8));
      const eight = store.containers.get("task-8");
      expect(eight?.ssh).toBeUndefined();
      expect(eight?.gpu).toBe(false);
      expect(eight?.ports).toEqual([]);
    } finally {
      store.close();
    }
  });

  test("duplicate id or name is refused", () => {
    const store = openStore(":memory:");
    try {
      store.containers.insert(record(1));
      expect(() => store.containers.insert(record(1, { name: "other" }))).toThrow();
      expect(() => store.containers.insert(record(2, { name: "task-1" }))).toThrow();
      expect(store.containers.count()).toBe(1);
    } finally {
      store.close();
    }
  });

  test("list (by creation), count, countByOwner, expired, remove", () => {
    const store = openStore(join(root, "list.db"));
    try {
      expect(store.containers.list()).toEqual([]);
      expect(store.containers.count()).toBe(0);
      // inserted out of creation order on purpose
      store.containers.insert(record(3, { owner: "owner-b" }));
      store.containers.insert(record(1));
      store.containers.insert(record(2));
      expect(store.containers.list().map((c) => c.id)).toEqual(["id-1", "id-2", "id-3"]);
      expect(store.containers.count()).toBe(3);
      expect(store.containers.countByOwner("owner-a")).toBe(2);
      expect(store.containers.countByOwner("owner-b")).toBe(1);
      expect(store.containers.countByOwner("nobody")).toBe(0);

      // expiresAt: 5100, 5200, 5300; "at or before now"
      expect(store.containers.expired(5099)).toEqual([]);
      expect(store.containers.expired(5100).map((c) => c.id)).toEqual(["id-1"]);
      expect(store.containers.expired(5250).map((c) => c.id)).toEqual(["id-1", "id-2"]);
      expect(store.containers.expired(Number.MAX_SAFE_INTEGER)).toHaveLength(3);

      expect(store.containers.remove("id-2")).toBe(true);
      expect(store.containers.remove("id-2")).toBe(false);
      expect(store.containers.remove("task-1")).toBe(false); // remove takes an id, not a name
      expect(store.containers.get("id-2")).toBeUndefined();
      expect(store.containers.count()).toBe(2);
      expect(store.containers.list().map((c) => c.id)).toEqual(["id-1", "id-3"]);

      // a renewed lease moves the container out of (or into) the expired set
      expect(store.containers.setExpiry("id-1", 9000)).toBe(true);
      expect(store.containers.setExpiry("id-2", 9000)).toBe(false);
      expect(store.containers.get("id-1")?.expiresAt).toBe(9000);
      expect(store.containers.expired(8999).map((c) => c.id)).toEqual(["id-3"]);
    } finally {
      store.close();
    }
  });
});

describe("peers: the IP table in memory, written through", () => {
  const row = (n: number, over: Partial<PeerRow> = {}): PeerRow => ({
    id: n.toString(16).padStart(64, "0"),
    record: `{"n":${n}}`,
    version: 1,
    state: "alive",
    lastSeen: 0,
    lastTried: 0,
    failures: 0,
    latencyMs: undefined,
    rttSamples: [],
    updatedAt: 0,
    ...over,
  });

  test("read from SQLite once: gets, lists, digests and counts after that are from memory", () => {
    const path = join(root, "peers-memory.db");
    const store = openStore(path);
    for (let n = 0; n < 100; n++) store.peers.put(row(n));
    for (let i = 0; i < 1000; i++) {
      expect(store.peers.get(row(i % 100).id)?.version).toBe(1);
      store.peers.digest();
      store.peers.count();
    }
    expect(store.peers.list()).toHaveLength(100);
    expect(store.peers.loads()).toBe(1);
    // written through: another store on the file sees every row
    const other = openStore(path);
    expect(other.peers.count()).toBe(100);
    expect(other.peers.get(row(7).id)).toEqual(row(7));
    // and what the other connection writes is seen here (the table is read again, once), after at most
    // 250 ms or at once after refresh()
    other.peers.put(row(7, { version: 2 }));
    other.peers.remove(row(8).id);
    expect(store.peers.get(row(7).id)?.version).toBe(1);
    store.peers.refresh();
    expect(store.peers.get(row(7).id)?.version).toBe(2);
    expect(store.peers.get(row(8).id)).toBeUndefined();
    expect(store.peers.count()).toBe(99);
    expect(store.peers.loads()).toBe(2);
    other.close();
    store.close();
  });

  test("seeds are read from SQLite once, again after a write here or another connection's (issue 12)", () => {
    const path = join(root, "seeds-memory.db");
    const store = openStore(path);
    const other = openStore(path);
    store.peers.addSeed("10.0.0.1", 8088, true, 1);
    const first = store.peers.seeds();
    expect(first).toEqual([{ host: "10.0.0.1", port: 8088, root: true, nodeId: undefined, addedAt: 1 }]);
    // a caller's change to what it got is not the store's
    (first[0] as { port: number }).port = 1;
    for (let i = 0; i < 100; i++) expect(store.peers.seeds()[0]?.port).toBe(8088);
    expect(store.peers.seedLoads()).toBe(1);
    store.peers.setSeedNode("10.0.0.1", 8088, "a".repeat(64));
    expect(store.peers.seeds()[0]?.nodeId).toBe("a".repeat(64));
    expect(other.peers.seeds()[0]?.nodeId).toBe("a".repeat(64));
    // the same node named again: nothing written, nothing read again
    store.peers.setSeedNode("10.0.0.1", 8088, "a".repeat(64));
    store.peers.seeds();
    expect(store.peers.seedLoads()).toBe(2);
    // another connection adds one: seen after at most 250 ms, or at once after refresh()
    other.peers.addSeed("10.0.0.2", 8088, false, 2);
    store.peers.refresh();
    expect(store.peers.seeds().map((s) => s.host)).toEqual(["10.0.0.1", "10.0.0.2"]);
    expect(store.peers.removeSeed("10.0.0.2", 8088)).toBe(true);
    expect(store.peers.seeds()).toHaveLength(1);
    other.close();
    store.close();
  });

  test("a contact (touch) is in memory at once and in SQLite at the flush, or at close; never over a newer row", () => {
    const path = join(root, "peers-touch.db");
    const store = openStore(path);
    const other = openStore(path);
    store.peers.put(row(1));
    store.peers.put(row(2));
    expect(store.peers.list().map((r) => r.lastSeen)).toEqual([0, 0]);
    store.peers.touch(row(1, { lastSeen: 50, rttSamples: [2] }));
    expect(store.peers.get(row(1).id)?.lastSeen).toBe(50);
    expect(store.peers.list().map((r) => r.lastSeen)).toEqual([50, 0]); // replaced in the sorted list
    expect(other.peers.get(row(1).id)?.lastSeen).toBe(0);
    expect(store.peers.flush()).toBe(1);
    expect(store.peers.flush()).toBe(0);
    other.peers.remove(row(2).id);
    other.peers.refresh();
    expect(other.peers.get(row(1).id)).toEqual(row(1, { lastSeen: 50, rttSamples: [2] }));
    // a touch is for soft facts only
    expect(() => store.peers.touch(row(1, { version: 2 }))).toThrow("use put");
    // another connection writes a newer version: the touch not flushed yet is dropped, not written over it
    store.peers.touch(row(1, { lastSeen: 60 }));
    other.peers.put(row(1, { version: 3 }));
    store.peers.refresh();
    expect(store.peers.get(row(1).id)?.version).toBe(3);
    expect(store.peers.flush()).toBe(0);
    store.peers.touch(row(1, { version: 3, lastSeen: 70 }));
    store.close();
    other.peers.refresh();
    expect(other.peers.get(row(1).id)?.lastSeen).toBe(70);
    other.close();
  });

  test("the digest is one array until an id, a version or a death changes; a contact leaves it", () => {
    const store = openStore(":memory:");
    for (let n = 0; n < 5; n++) store.peers.put(row(n));
    const d = store.peers.digest();
    expect(d.map(([id]) => id)).toEqual([0, 1, 2, 3, 4].map((n) => row(n).id));
    store.peers.put(row(3, { lastSeen: 99, rttSamples: [1.5] }));
    expect(store.peers.digest()).toBe(d);
    store.peers.put(row(3, { version: 2 }));
    const d2 = store.peers.digest();
    expect(d2).not.toBe(d);
    expect(d2[3]).toEqual([row(3).id, 2, false]);
    store.peers.put(row(3, { version: 2, state: "dead", updatedAt: 10 }));
    expect(store.peers.digest()[3]).toEqual([row(3).id, 2, true]);
    expect(store.peers.purgeDead(11)).toBe(1);
    expect(store.peers.digest()).toHaveLength(4);
    expect(store.peers.list().map((r) => r.id)).toEqual([0, 1, 2, 4].map((n) => row(n).id));
  });
});

describe("client batches", () => {
  test("recentBatches: the newest first, at most the limit, each with its tasks", () => {
    const store = openStore(":memory:");
    try {
      for (const n of [1, 3, 2]) {
        store.client.createBatch(
          { id: `b${n}`, key: `k${n}`, job: "{}", outDir: `/out/${n}`, createdAt: n },
          n,
        );
      }
      expect(store.client.recentBatches(10).map((b) => b.id)).toEqual(["b3", "b2", "b1"]);
      expect(store.client.recentBatches(2).map((b) => b.outDir)).toEqual(["/out/3", "/out/2"]);
      expect(store.client.batchTasks("b3").map((t) => t.state)).toEqual(["pending", "pending", "pending"]);
    } finally {
      store.close();
    }
  });
});

// A database from a newer p2prc is refused and left closed (no fd, -wal or -shm kept open).
test("a refused database is closed again", () => {
  const path = join(root, "refused.db");
  const db = new Database(path);
  db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
  db.close();
  expect(() => openStore(path)).toThrow(P2prcError);
  const open = readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(path);
    } catch {
      return false;
    }
  });
  expect(open).toEqual([]);
});

describe("plugin ports (client)", () => {
  test("two claims never share a port; too few free claims nothing; release and untrack free them", () => {
    const path = join(root, "ports.db");
    const a = openStore(path);
    const b = openStore(path); // a second process's connection to the same file
    try {
      expect(a.client.claimPorts("c1", [8001, 8002, 8003], 2, "web", 1)).toEqual([8001, 8002]);
      expect(b.client.claimPorts("c1", [8001, 8002, 8003], 2, "other", 2)).toBeUndefined();
      expect(b.client.claimPorts("c1", [8001, 8002, 8003], 1, "other", 2)).toEqual([8003]);
      expect(a.client.claimPorts("c2", [8001], 1, "web", 3)).toEqual([8001]);
      expect(a.client.claimedPorts("c1").map((p) => [p.port, p.plugin])).toEqual([
        [8001, "web"],
        [8002, "web"],
        [8003, "other"],
      ]);
      a.client.releasePorts("c1", [8002]);
      expect(b.client.claimPorts("c1", [8001, 8002, 8003], 1, "again", 4)).toEqual([8002]);
      a.client.untrack("c1");
      expect(a.client.claimedPorts("c1")).toEqual([]);
      expect(a.client.claimedPorts("c2")).toHaveLength(1);
    } finally {
      a.close();
      b.close();
    }
  });
});
