// The batch runner's shell: reads inputs, talks to nodes (worker.ts), writes the store and results.json and
// reports progress. Every decision (placement, retries, giving a node up) is scheduler.ts's.
import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { P2prcError, sha256OfFile } from "../../core/index.ts";
import type { BatchTaskRow } from "../../store/index.ts";
import type { ClientDeps } from "../containers.ts";
import type { NodeTarget } from "../resolve.ts";
import { type Job, taskParams } from "./job.ts";
import {
  abandonQueued,
  type BatchEvent,
  type BatchProgress,
  cancel,
  finishTask,
  initialState,
  leaseSeconds,
  nextStep,
  progressOf,
  resultsOf,
  resumeRows,
  slotsFor,
  startTask,
  type TaskResult,
} from "./scheduler.ts";
import { type BatchInput, type InputTraffic, NodeWorker } from "./worker.ts";

export interface BatchOptions {
  job: Job;
  /** The job file's text (with outDir, it identifies the batch for resuming). */
  jobText: string;
  /** Directory the job file is in (inputs are relative to it). */
  jobDir: string;
  outDir: string;
  nodes: NodeTarget[];
  onProgress?: (p: BatchProgress) => void;
  /** Cancels the run when aborted: no task starts any more, the warm containers are removed (interrupting
   * the running tasks, which stay pending) and the batch stays resumable. */
  signal?: AbortSignal;
  /** Runs the tasks that failed in an earlier run of this batch again (with fresh retries). */
  retryFailed?: boolean;
}

export interface BatchResult {
  batchId: string;
  resumed: boolean;
  /** The run was cancelled; tasks left have state `pending` and running the same job resumes them. */
  cancelled: boolean;
  results: TaskResult[];
  durationMs: number;
  /** The inputs' bytes on the network: sent to the nodes' caches, as sent with every task, and the difference. */
  inputs: InputTraffic & { saved: number };
}

/** The job's inputs by path, size and the SHA-256 of their content (read once, a chunk at a time). */
async function readInputs(job: Job, jobDir: string): Promise<BatchInput[]> {
  const out: BatchInput[] = [];
  for (const p of job.inputs ?? []) {
    const path = resolve(jobDir, p);
    if (Buffer.byteLength(basename(path)) > 100)
      throw new P2prcError("E_INVALID", `input ${p}: its file name is over 100 bytes`, { field: "inputs" });
    try {
      const { sha256, bytes } = await sha256OfFile(path);
      out.push({ name: basename(path), path, size: bytes, digest: sha256 });
    } catch (err) {
      throw new P2prcError("E_INVALID", `input ${p}: ${(err as Error).message}`, { field: "inputs" });
    }
  }
  return out;
}

/**
 * Runs a batch: tasks go to the selected nodes (at most `maxPerNode` and the node's free capacity at
 * once), each in a fresh working directory inside a small pool of warm containers per node. A task
 * whose node fails or times out is rescheduled on another node up to `retries`; one that fails by its
 * own exit code is reported. State lives in SQLite, so running the same job again resumes it.
 */
export async function runBatch(deps: ClientDeps, o: BatchOptions): Promise<BatchResult> {
  const { job, tracking, clock } = { job: o.job, tracking: deps.tracking, clock: deps.clock };
  const started = clock.now();
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
    batch = { id: randomUUID(), key, job: o.jobText, outDir, createdAt: clock.now() };
    tracking.createBatch(batch, total);
  }
  const batchId = batch.id;
  const stored = tracking.batchTasks(batchId);
  const rows = resumeRows(stored, { retryFailed: o.retryFailed });
  rows.forEach((t, i) => {
    if (t !== stored[i]) tracking.updateTask(batchId, t);
  });
  mkdirSync(outDir, { recursive: true });
  const inputs = await readInputs(job, o.jobDir);

  const slots = o.nodes.map((t) => slotsFor(t, job));
  const ttlSeconds = leaseSeconds(
    job,
    total,
    slots.reduce((a, b) => a + b, 0),
  );
  const workers = o.nodes.map(
    (t, i) => new NodeWorker(t, slots[i] ?? 1, job, ttlSeconds, deps, { borrow: true }),
  );
  const state = initialState(
    rows,
    workers.map((w) => ({ label: w.label, slots: w.slots })),
  );

  // Slots waiting for a running task to come back are woken by every change.
  let wake: () => void = () => {};
  let changed = new Promise<void>((r) => {
    wake = r;
  });
  const notify = (event?: BatchEvent) => {
    o.onProgress?.(progressOf(state, event));
    wake();
    changed = new Promise<void>((r) => {
      wake = r;
    });
  };
  const save = (t: BatchTaskRow) => tracking.updateTask(batchId, t);

  const slotLoop = async (w: NodeWorker, slot: number) => {
    for (;;) {
      const step = nextStep(state, w.label);
      if (step.kind === "stop") return;
      if (step.kind === "wait") {
        await changed;
        continue;
      }
      const index = step.index;
      const start = startTask(state, index, w.label);
      save(start.row);
      notify(start.event);
      const outcome = await w.run(
        slot,
        {
          index,
          attempt: start.row.attempts,
          env: {
            ...job.env,
            ...params[index],
            P2PRC_TASK_INDEX: String(index),
            P2PRC_TASK_COUNT: String(total),
            P2PRC_TASK_ATTEMPT: String(start.row.attempts),
          },
          inputs,
          outDir: join(outDir, String(index)),
        },
        clock,
      );
      const end = finishTask(state, job, index, outcome);
      save(end.row);
      notify(end.event);
    }
  };

  // A cancel stops the dispatching and removes the warm containers now: the running tasks' execs end
  // (their rows go back to pending) and the slot loops stop.
  let cancelling: Promise<unknown> = Promise.resolve();
  const onAbort = () => {
    cancel(state);
    notify();
    cancelling = Promise.all(workers.map((w) => w.cancel()));
  };
  if (o.signal?.aborted) onAbort();
  else o.signal?.addEventListener("abort", onAbort, { once: true });
  notify();
  try {
    await Promise.all(workers.flatMap((w) => Array.from({ length: w.slots }, (_, s) => slotLoop(w, s))));
  } finally {
    o.signal?.removeEventListener("abort", onAbort);
    // Dropped nodes too, best effort: a node that refused may still answer; a dead one fails fast.
    // After a cancel, this also removes a container that was being made while it came.
    await Promise.all([cancelling, ...workers.map((w) => w.cleanup())]);
  }
  for (const t of abandonQueued(state)) {
    save(t.row);
    notify(t.event);
  }
  const results = resultsOf(state);
  writeFileSync(join(outDir, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  notify();
  const sent = workers.reduce((n, w) => n + w.traffic.sent, 0);
  const perTask = workers.reduce((n, w) => n + w.traffic.perTask, 0);
  return {
    batchId,
    resumed,
    cancelled: state.cancelled,
    results,
    durationMs: clock.now() - started,
    inputs: { sent, perTask, saved: Math.max(0, perTask - sent) },
  };
}
