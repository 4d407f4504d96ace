import type BetterSqlite3 from "better-sqlite3";
import { lazyStatements } from "./lazy.ts";
import type { PortMapping, SshInfo } from "./types.ts";

/** A container this client created on another node. */
export interface TrackedContainer {
  id: string;
  nodeId: string;
  nodeUrl: string;
  name: string;
  image: string;
  ports: PortMapping[];
  ssh?: SshInfo | undefined;
  createdAt: number;
}

/** A published port of a tracked container that a plugin was handed. */
export interface ClaimedPort {
  containerId: string;
  /** The container's side of the published port. */
  port: number;
  plugin: string;
  claimedAt: number;
}

export type BatchTaskState = "pending" | "running" | "done" | "failed";

export interface BatchTaskRow {
  index: number;
  state: BatchTaskState;
  node: string | undefined;
  exitCode: number | undefined;
  attempts: number;
  durationMs: number | undefined;
  error: string | undefined;
}

export interface BatchRow {
  id: string;
  key: string;
  job: string;
  outDir: string;
  createdAt: number;
}

/** The client's tracked containers, groups and batch jobs. */
export interface ClientStore {
  track(c: TrackedContainer): void;
  untrack(id: string): boolean;
  tracked(): TrackedContainer[];
  trackedOne(id: string): TrackedContainer | undefined;
  createGroup(id: string, now: number): void;
  removeGroup(id: string): boolean;
  groups(): { id: string; createdAt: number; members: string[] }[];
  addToGroup(groupId: string, containerId: string): void;
  removeFromGroup(groupId: string, containerId: string): boolean;
  batchByKey(key: string): BatchRow | undefined;
  /** The batches written to `outDir` (an absolute path), newest first. */
  batchesByOutDir(outDir: string): BatchRow[];
  /** The newest `limit` batches, newest first (the dashboard). */
  recentBatches(limit: number): BatchRow[];
  createBatch(b: BatchRow, tasks: number): void;
  batchTasks(batchId: string): BatchTaskRow[];
  updateTask(batchId: string, t: BatchTaskRow): void;
  /** Tasks left running by a client that was killed go back to pending. */
  resetRunning(batchId: string): number;
  /**
   * Hands `count` of `candidates` (a container's published ports, container side) not yet claimed to
   * `plugin`, in the candidates' order, atomically (two processes never get the same port). Fewer free
   * than `count`: claims nothing and returns undefined.
   */
  claimPorts(
    containerId: string,
    candidates: number[],
    count: number,
    plugin: string,
    now: number,
  ): number[] | undefined;
  /** Gives ports back (a plugin run that failed). */
  releasePorts(containerId: string, ports: number[]): void;
  /** The ports plugins were handed on a container. */
  claimedPorts(containerId: string): ClaimedPort[];
}

interface TrackedRow {
  id: string;
  node_id: string;
  node_url: string;
  name: string;
  image: string;
  ports: string;
  ssh: string | null;
  created_at: number;
}

interface TaskRow {
  idx: number;
  state: BatchTaskState;
  node: string | null;
  exit_code: number | null;
  attempts: number;
  duration_ms: number | null;
  error: string | null;
}

export function clientStore(db: BetterSqlite3.Database): ClientStore {
  const q = lazyStatements({
    track: () =>
      db.prepare(
        `INSERT OR REPLACE INTO tracked (id, node_id, node_url, name, image, ports, ssh, created_at)
       VALUES (@id, @node_id, @node_url, @name, @image, @ports, @ssh, @created_at)`,
      ),
    untrack: () => db.prepare<[string]>("DELETE FROM tracked WHERE id = ?"),
    untrackMembers: () => db.prepare<[string]>("DELETE FROM group_members WHERE container_id = ?"),
    tracked: () => db.prepare<[], TrackedRow>("SELECT * FROM tracked ORDER BY created_at, id"),
    trackedOne: () => db.prepare<[string], TrackedRow>("SELECT * FROM tracked WHERE id = ?"),
    createGroup: () => db.prepare<[string, number]>("INSERT INTO groups (id, created_at) VALUES (?, ?)"),
    removeGroup: () => db.prepare<[string]>("DELETE FROM groups WHERE id = ?"),
    groups: () =>
      db.prepare<[], { id: string; created_at: number }>("SELECT * FROM groups ORDER BY created_at, id"),
    members: () =>
      db.prepare<[string], { container_id: string }>(
        "SELECT container_id FROM group_members WHERE group_id = ? ORDER BY container_id",
      ),
    addMember: () =>
      db.prepare<[string, string]>(
        "INSERT OR IGNORE INTO group_members (group_id, container_id) VALUES (?, ?)",
      ),
    removeMember: () =>
      db.prepare<[string, string]>("DELETE FROM group_members WHERE group_id = ? AND container_id = ?"),
    batchByKey: () =>
      db.prepare<[string], { id: string; key: string; job: string; out_dir: string; created_at: number }>(
        "SELECT * FROM batches WHERE key = ?",
      ),
    batchesByOutDir: () =>
      db.prepare<[string], { id: string; key: string; job: string; out_dir: string; created_at: number }>(
        "SELECT * FROM batches WHERE out_dir = ? ORDER BY created_at DESC",
      ),
    recentBatches: () =>
      db.prepare<[number], { id: string; key: string; job: string; out_dir: string; created_at: number }>(
        "SELECT * FROM batches ORDER BY created_at DESC LIMIT ?",
      ),
    createBatch: () =>
      db.prepare<[string, string, string, string, number]>(
        "INSERT INTO batches (id, key, job, out_dir, created_at) VALUES (?, ?, ?, ?, ?)",
      ),
    addTask: () =>
      db.prepare<[string, number]>("INSERT INTO batch_tasks (batch_id, idx, state) VALUES (?, ?, 'pending')"),
    tasks: () => db.prepare<[string], TaskRow>("SELECT * FROM batch_tasks WHERE batch_id = ? ORDER BY idx"),
    updateTask: () =>
      db.prepare(
        `UPDATE batch_tasks SET state = @state, node = @node, exit_code = @exit_code, attempts = @attempts,
       duration_ms = @duration_ms, error = @error WHERE batch_id = @batch_id AND idx = @idx`,
      ),
    resetRunning: () =>
      db.prepare<[string]>(
        "UPDATE batch_tasks SET state = 'pending' WHERE batch_id = ? AND state = 'running'",
      ),
    claimed: () =>
      db.prepare<[string], { container_id: string; port: number; plugin: string; claimed_at: number }>(
        "SELECT * FROM plugin_ports WHERE container_id = ? ORDER BY port",
      ),
    claim: () =>
      db.prepare<[string, number, string, number]>(
        "INSERT INTO plugin_ports (container_id, port, plugin, claimed_at) VALUES (?, ?, ?, ?)",
      ),
    release: () =>
      db.prepare<[string, number]>("DELETE FROM plugin_ports WHERE container_id = ? AND port = ?"),
    releaseAll: () => db.prepare<[string]>("DELETE FROM plugin_ports WHERE container_id = ?"),
  });
  const toBatch = (r: {
    id: string;
    key: string;
    job: string;
    out_dir: string;
    created_at: number;
  }): BatchRow => ({
    id: r.id,
    key: r.key,
    job: r.job,
    outDir: r.out_dir,
    createdAt: r.created_at,
  });
  const toTracked = (r: TrackedRow): TrackedContainer => ({
    id: r.id,
    nodeId: r.node_id,
    nodeUrl: r.node_url,
    name: r.name,
    image: r.image,
    ports: JSON.parse(r.ports) as PortMapping[],
    ssh: r.ssh ? (JSON.parse(r.ssh) as SshInfo) : undefined,
    createdAt: r.created_at,
  });
  return {
    track: (c) => {
      q.track.run({
        id: c.id,
        node_id: c.nodeId,
        node_url: c.nodeUrl,
        name: c.name,
        image: c.image,
        ports: JSON.stringify(c.ports),
        ssh: c.ssh ? JSON.stringify(c.ssh) : null,
        created_at: c.createdAt,
      });
    },
    untrack: (id) => {
      q.untrackMembers.run(id);
      q.releaseAll.run(id);
      return q.untrack.run(id).changes > 0;
    },
    tracked: () => q.tracked.all().map(toTracked),
    trackedOne: (id) => {
      const r = q.trackedOne.get(id);
      return r ? toTracked(r) : undefined;
    },
    createGroup: (id, now) => {
      q.createGroup.run(id, now);
    },
    removeGroup: (id) => q.removeGroup.run(id).changes > 0,
    groups: () =>
      q.groups.all().map((g) => ({
        id: g.id,
        createdAt: g.created_at,
        members: q.members.all(g.id).map((m) => m.container_id),
      })),
    addToGroup: (g, c) => {
      q.addMember.run(g, c);
    },
    removeFromGroup: (g, c) => q.removeMember.run(g, c).changes > 0,
    batchByKey: (key) => {
      const r = q.batchByKey.get(key);
      return r ? toBatch(r) : undefined;
    },
    batchesByOutDir: (outDir) => q.batchesByOutDir.all(outDir).map(toBatch),
    recentBatches: (limit) => q.recentBatches.all(limit).map(toBatch),
    createBatch: (b, tasks) => {
      db.transaction(() => {
        q.createBatch.run(b.id, b.key, b.job, b.outDir, b.createdAt);
        for (let i = 0; i < tasks; i++) q.addTask.run(b.id, i);
      })();
    },
    batchTasks: (batchId) =>
      q.tasks.all(batchId).map((t) => ({
        index: t.idx,
        state: t.state,
        node: t.node ?? undefined,
        exitCode: t.exit_code ?? undefined,
        attempts: t.attempts,
        durationMs: t.duration_ms ?? undefined,
        error: t.error ?? undefined,
      })),
    updateTask: (batchId, t) => {
      q.updateTask.run({
        batch_id: batchId,
        idx: t.index,
        state: t.state,
        node: t.node ?? null,
        exit_code: t.exitCode ?? null,
        attempts: t.attempts,
        duration_ms: t.durationMs ?? null,
        error: t.error ?? null,
      });
    },
    resetRunning: (batchId) => q.resetRunning.run(batchId).changes,
    // IMMEDIATE: the write lock is taken before the read, so a second process waits and then sees these
    claimPorts: (containerId, candidates, count, plugin, now) =>
      db
        .transaction(() => {
          const used = new Set(q.claimed.all(containerId).map((r) => r.port));
          const free = [...new Set(candidates)].filter((p) => !used.has(p)).slice(0, count);
          if (free.length < count) return undefined;
          for (const p of free) q.claim.run(containerId, p, plugin, now);
          return free;
        })
        .immediate(),
    releasePorts: (containerId, ports) => {
      for (const p of ports) q.release.run(containerId, p);
    },
    claimedPorts: (containerId) =>
      q.claimed.all(containerId).map((r) => ({
        containerId: r.container_id,
        port: r.port,
        plugin: r.plugin,
        claimedAt: r.claimed_at,
      })),
  };
}
