import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join, normalize, resolve } from "node:path";
import { createTar, parseTar } from "nanotar";
import { P2prcError } from "../../core/index.ts";
import type { BatchTaskRow } from "../../store/index.ts";
import type { ClientDeps } from "../containers.ts";
import { connect, type NodeClient } from "../node-client.ts";
import type { NodeTarget } from "../resolve.ts";
import { type Job, taskParams } from "./job.ts";

/** Progress of a batch, sent after every change. */
export interface BatchProgress {
  total: number;
  done: number;
  failed: number;
  running: number;
  pending: number;
  /** Per node name: tasks finished there and running there now. */
  perNode: Record<string, { done: number; running: number }>;
  etaMs: number | undefined;
  /** The task that just changed, when one did. */
  event?: {
    index: number;
    state: "running" | "done" | "failed" | "retry";
    node: string;
    exitCode?: number;
    error?: string;
  };
}

/** One row of results.json. */
export interface TaskResult {
  index: number;
  node: string | null;
  exitCode: number | null;
  attempts: number;
  durationMs: number | null;
  state: "done" | "failed";
  error?: string;
}

export interface BatchOptions {
  job: Job;
  /** The job file's text (with outDir, it identifies the batch for resuming). */
  jobText: string;
  /** Directory the job file is in (inputs are relative to it). */
  jobDir: string;
  outDir: string;
  nodes: NodeTarget[];
  onProgress?: (p: BatchProgress) => void;
}

export interface BatchResult {
  batchId: string;
  resumed: boolean;
  results: TaskResult[];
  durationMs: number;
}

/** A task that ran out of time: rescheduled, but the node stays in use. */
class TaskTimeout extends P2prcError {
  constructor(index: number, seconds: number) {
    super("E_NODE_UNREACHABLE", `task ${index} timed out after ${seconds} s`, { retryable: true });
  }
}

/**
 * Keeps a path from a node's tar inside `root` (a hostile node cannot write elsewhere): leading `..`
 * are dropped, absolute names and names still climbing out refused. nanotar's parser already strips
 * some of this; this is the guarantee. Exported for its test only (not in client/index.ts).
 */
export function safeJoin(root: string, name: string): string | undefined {
  const clean = normalize(name).replace(/^(\.\.(\/|$))+/, "");
  if (clean.startsWith("/") || clean.split("/").includes("..") || clean === "." || clean === "")
    return undefined;
  return join(root, clean);
}

class NodeWorker {
  readonly client: NodeClient;
  readonly label: string;
  alive = true;
  private readonly pool: (string | undefined)[];

  constructor(
    readonly target: NodeTarget,
    readonly slots: number,
    private readonly job: Job,
    private readonly ttlSeconds: number,
    deps: ClientDeps,
  ) {
    this.client = connect(deps, target, 60_000);
    this.label = target.name ?? target.url;
    this.pool = Array.from({ length: slots }, () => undefined);
  }

  private async newContainer(): Promise<string> {
    const body = {
      image: this.job.image,
      command: ["tail", "-f", "/dev/null"],
      cpus: this.job.cpus,
      memoryMb: this.job.memoryMb,
      gpu: this.job.gpu,
      ttlSeconds: this.ttlSeconds,
    };
    try {
      return (await this.client.createContainer(body)).id;
    } catch (err) {
      // a node whose lease limit is shorter than the job gets its default lease instead
      if (err instanceof P2prcError && err.field === "ttlSeconds") {
        return (await this.client.createContainer({ ...body, ttlSeconds: undefined })).id;
      }
      throw err;
    }
  }

  async container(slot: number): Promise<string> {
    if (this.job.freshContainer) return this.newContainer();
    this.pool[slot] ??= await this.newContainer();
    return this.pool[slot] as string;
  }

  async release(_slot: number, id: string): Promise<void> {
    if (this.job.freshContainer) await this.client.removeContainer(id).catch(() => undefined);
  }

  /** Drops a slot's container (after a timeout); the slot gets a fresh one for its next task. */
  async discard(slot: number): Promise<void> {
    const id = this.pool[slot];
    this.pool[slot] = undefined;
    if (id) await this.client.removeContainer(id).catch(() => undefined);
  }

  async cleanup(): Promise<void> {
    await Promise.all(
      this.pool.map((id) => (id ? this.client.removeContainer(id).catch(() => undefined) : undefined)),
    );
  }
}

/**
 * Runs a batch: tasks go to the selected nodes (at most `maxPerNode` and the node's free capacity at
 * once), each in a fresh working directory inside a small pool of warm containers per node. A task
 * whose node fails or times out is rescheduled on another node up to `retries`; one that fails by its
 * own exit code is reported. State lives in SQLite, so running the same job again resumes it.
 */
export async function runBatch(deps: ClientDeps, o: BatchOptions): Promise<BatchResult> {
  const started = Date.now();
  const { job, tracking } = { job: o.job, tracking: deps.tracking };
  const params = taskParams(job);
  const total = params.length;
  const outDir = resolve(o.outDir);
  const key = createHash("sha256").update(`${o.jobText}\0${outDir}`).digest("hex");
  let batch = tracking.batchByKey(key);
  const resumed = batch !== undefined;
  if (o.nodes.length === 0 && (!batch || tracking.batchTasks(batch.id).some((t) => t.state !== "done"))) {
    throw new P2prcError("E_NOT_FOUND", "no node to run the batch on", {
      hint: "add nodes with --as host:port or pass --nodes",
    });
  }
  if (!batch) {
    batch = { id: randomUUID(), key, job: o.jobText, outDir, createdAt: deps.clock.now() };
    tracking.createBatch(batch, total);
  }
  const batchId = batch.id;
  tracking.resetRunning(batchId);
  // A task that failed because no node could run it (no exit code) gets another chance on a re-run;
  // one that failed by its own exit code stays failed.
  for (const t of tracking.batchTasks(batchId)) {
    if (t.state === "failed" && t.exitCode === undefined)
      tracking.updateTask(batchId, { ...t, state: "pending" });
  }
  mkdirSync(outDir, { recursive: true });

  const inputs = (job.inputs ?? []).map((p) => {
    const path = resolve(o.jobDir, p);
    try {
      return { name: basename(path), data: new Uint8Array(readFileSync(path)) };
    } catch (err) {
      throw new P2prcError("E_INVALID", `input ${p}: ${(err as Error).message}`, { field: "inputs" });
    }
  });

  const rows = new Map(tracking.batchTasks(batchId).map((t) => [t.index, t]));
  const queue = [...rows.values()].filter((t) => t.state === "pending").map((t) => t.index);
  const save = (t: BatchTaskRow) => {
    rows.set(t.index, t);
    tracking.updateTask(batchId, t);
  };

  const totalSlots = o.nodes.reduce((n, t) => n + slotsFor(t, job), 0);
  const ttlSeconds = Math.min(
    7 * 86400,
    job.timeoutSeconds * Math.ceil(total / Math.max(1, totalSlots)) + 600,
  );
  const workers = o.nodes.map((t) => new NodeWorker(t, slotsFor(t, job), job, ttlSeconds, deps));
  const perNode: Record<string, { done: number; running: number }> = {};
  for (const w of workers) perNode[w.label] = { done: 0, running: 0 };
  for (const t of rows.values())
    if (t.state === "done" && t.node) perNode[t.node] ??= { done: 0, running: 0 };
  let running = 0;
  const durations: number[] = [];
  let wake: () => void = () => {};
  let changed = new Promise<void>((r) => {
    wake = r;
  });
  const notify = (event?: BatchProgress["event"]) => {
    const all = [...rows.values()];
    const done = all.filter((t) => t.state === "done").length;
    const failed = all.filter((t) => t.state === "failed").length;
    const pending = all.filter((t) => t.state === "pending").length;
    const avg = durations.length ? durations.reduce((a, b) => a + b, 0) / durations.length : undefined;
    const slots = workers.filter((w) => w.alive).reduce((n, w) => n + w.slots, 0);
    const etaMs =
      avg !== undefined && slots > 0 ? Math.round((avg * (pending + running)) / slots) : undefined;
    o.onProgress?.({ total, done, failed, running, pending, perNode, etaMs, event });
    wake();
    changed = new Promise<void>((r) => {
      wake = r;
    });
  };

  const runOne = async (w: NodeWorker, slot: number, index: number): Promise<void> => {
    const prev = rows.get(index) as BatchTaskRow;
    const attempt = prev.attempts + 1;
    save({ ...prev, state: "running", node: w.label, attempts: attempt });
    running++;
    (perNode[w.label] as { running: number }).running++;
    notify({ index, state: "running", node: w.label });
    const t0 = Date.now();
    let containerId: string | undefined;
    try {
      containerId = await w.container(slot);
      const dir = `/p2prc-task/${index}-${attempt}`;
      await w.client.putFiles(
        containerId,
        "/",
        createTar([
          // root-owned and world-writable: tasks may run as the image's own user, and root has no
          // DAC_OVERRIDE in a p2prc container
          { name: "p2prc-task/", attrs: { mode: "1777", uid: 0, gid: 0 } },
          { name: `${dir.slice(1)}/`, attrs: { mode: "777", uid: 0, gid: 0 } },
          ...inputs.map((f) => ({
            name: `${dir.slice(1)}/${f.name}`,
            data: f.data,
            attrs: { mode: "644", uid: 0, gid: 0 },
          })),
        ]),
      );
      const env = {
        ...job.env,
        ...params[index],
        P2PRC_TASK_INDEX: String(index),
        P2PRC_TASK_COUNT: String(total),
      };
      const r = await w.client.exec(containerId, job.command, {
        env,
        workingDir: dir,
        timeoutSeconds: job.timeoutSeconds,
      });
      if (r.timedOut) {
        // the process may still run: this container is not reused
        await w.discard(slot);
        containerId = undefined;
        throw new TaskTimeout(index, job.timeoutSeconds);
      }
      const taskOut = join(outDir, String(index));
      mkdirSync(taskOut, { recursive: true });
      writeFileSync(join(taskOut, "stdout"), r.stdout);
      writeFileSync(join(taskOut, "stderr"), r.stderr);
      const missing: string[] = [];
      for (const out of job.outputs ?? []) {
        const path = out.startsWith("/") ? out : `${dir}/${out}`;
        try {
          const tar = await w.client.getFiles(containerId, path);
          for (const entry of parseTar(tar.slice())) {
            const target = safeJoin(taskOut, entry.name);
            if (!target || entry.type !== "file" || !entry.data) continue;
            mkdirSync(dirname(target), { recursive: true });
            writeFileSync(target, entry.data);
          }
        } catch (err) {
          if (err instanceof P2prcError && err.code === "E_NOT_FOUND" && err.field === "path")
            missing.push(out);
          else if (
            err instanceof P2prcError &&
            err.code === "E_NOT_FOUND" &&
            /path|file|no such/i.test(err.message)
          )
            missing.push(out);
          else throw err;
        }
      }
      const ok = r.exitCode === 0;
      const durationMs = Date.now() - t0;
      durations.push(durationMs);
      const retryTask = !ok && job.retryOnFailure && attempt <= job.retries;
      save({
        index,
        state: ok ? "done" : retryTask ? "pending" : "failed",
        node: w.label,
        exitCode: r.exitCode,
        attempts: attempt,
        durationMs,
        error: missing.length ? `missing outputs: ${missing.join(", ")}` : undefined,
      });
      if (retryTask) queue.push(index);
      if (ok) (perNode[w.label] as { done: number }).done++;
      notify({
        index,
        state: ok ? "done" : retryTask ? "retry" : "failed",
        node: w.label,
        exitCode: r.exitCode,
        ...(retryTask ? { error: `exit ${r.exitCode}, retryOnFailure` } : {}),
      });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // Any other error from a node (unreachable, engine failure, container lost, or a refusal such as
      // over its limits) means that node gets no more tasks in this run; the task goes elsewhere.
      if (!(err instanceof TaskTimeout)) w.alive = false;
      const retry = attempt <= job.retries;
      save({
        index,
        state: retry ? "pending" : "failed",
        node: w.label,
        exitCode: undefined,
        attempts: attempt,
        durationMs: undefined,
        error: message,
      });
      if (retry) queue.push(index);
      notify({ index, state: retry ? "retry" : "failed", node: w.label, error: message });
    } finally {
      running--;
      (perNode[w.label] as { running: number }).running--;
      if (containerId) await w.release(slot, containerId);
    }
  };

  const slotLoop = async (w: NodeWorker, slot: number) => {
    for (;;) {
      if (!w.alive) return;
      const index = queue.shift();
      if (index === undefined) {
        if (running === 0) return;
        await changed; // a running task may come back to the queue
        continue;
      }
      await runOne(w, slot, index);
    }
  };

  notify();
  try {
    await Promise.all(workers.flatMap((w) => Array.from({ length: w.slots }, (_, s) => slotLoop(w, s))));
  } finally {
    // Dropped nodes too, best effort: a node that refused may still answer; a dead one fails fast.
    await Promise.all(workers.map((w) => w.cleanup()));
  }
  for (const index of queue) {
    const t = rows.get(index) as BatchTaskRow;
    save({ ...t, state: "failed", error: t.error ?? "no node left to run it" });
  }
  const results: TaskResult[] = [...rows.values()]
    .sort((a, b) => a.index - b.index)
    .map((t) => ({
      index: t.index,
      node: t.node ?? null,
      exitCode: t.exitCode ?? null,
      attempts: t.attempts,
      durationMs: t.durationMs ?? null,
      state: t.state === "done" ? "done" : "failed",
      ...(t.error ? { error: t.error } : {}),
    }));
  writeFileSync(join(outDir, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  notify();
  return { batchId, resumed, results, durationMs: Date.now() - started };
}

/** Tasks a node may run at once: maxPerNode, capped by the free capacity its record offers. */
export function slotsFor(t: NodeTarget, job: Job): number {
  const offer = t.offer;
  if (!offer) return job.maxPerNode;
  const byCpu = job.cpus ? Math.floor(offer.cpus / job.cpus) : offer.freeContainers;
  const byMem = job.memoryMb ? Math.floor(offer.memoryMb / job.memoryMb) : offer.freeContainers;
  return Math.max(1, Math.min(job.maxPerNode, offer.freeContainers, byCpu, byMem));
}
