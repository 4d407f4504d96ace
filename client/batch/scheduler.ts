// The batch runner's decisions, kept apart from its I/O (tailscale's wgengine split): where a task goes,
// what a failure means, when a task runs again and when a node is given up. Plain data in, plain data out,
// time passed in: runner.ts does the node calls, the store writes and the progress callbacks around it.
import { P2prcError } from "../../core/index.ts";
import type { BatchTaskRow } from "../../store/index.ts";
import type { NodeTarget } from "../resolve.ts";
import type { Job } from "./job.ts";

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
  event?: BatchEvent;
}

/** One task's change of state, as progress reports it. */
export interface BatchEvent {
  index: number;
  /** retry: the attempt failed and the task is queued again; cancelled: a cancel interrupted it (pending). */
  state: "running" | "done" | "failed" | "retry" | "cancelled";
  node: string;
  exitCode?: number;
  error?: string;
}

/** One row of results.json. */
export interface TaskResult {
  index: number;
  node: string | null;
  exitCode: number | null;
  attempts: number;
  durationMs: number | null;
  /** pending: not run yet, left by a cancelled run (the same command resumes it). */
  state: "done" | "failed" | "pending";
  error?: string;
}

/** A node of the batch: its slots, whether it still gets tasks, and its counters. */
export interface NodeState {
  slots: number;
  alive: boolean;
  /** Why the node was given up in this run (its unreachable or refused message). */
  droppedFor?: string;
  done: number;
  running: number;
}

/** Everything the decisions read and change; the runner owns one per batch. */
export interface BatchState {
  total: number;
  rows: Map<number, BatchTaskRow>;
  /** Task indexes waiting for a slot, first out first. */
  queue: number[];
  /** By node label; nodes that ran tasks in an earlier run are listed too (no slots, not alive). */
  nodes: Map<string, NodeState>;
  running: number;
  /** Durations of the tasks that ran to an exit code in this run, for the ETA. */
  durations: number[];
  /** Set by cancel(): no task starts any more, and interrupted ones stay pending. */
  cancelled: boolean;
}

/** How a task's attempt ended, as the runner saw it. */
export type TaskOutcome =
  | { kind: "exited"; exitCode: number; durationMs: number; missing: string[] }
  | { kind: "timedOut"; seconds: number }
  | { kind: "error"; error: unknown };

/** What a failed attempt means for its node. */
export interface Failure {
  /** timeout: the task ran too long (the node is fine); unreachable: the node or its engine did not answer;
   * refused: the node answered with an error (over its limits, forbidden, container lost...). */
  kind: "timeout" | "unreachable" | "refused";
  /** Whether the node gets more tasks in this run. */
  keepNode: boolean;
  message: string;
}

/** What to do after an attempt: the row to store, the event to report, whether the node is given up. */
export interface Transition {
  row: BatchTaskRow;
  event: BatchEvent;
  dropNode: boolean;
}

const UNREACHABLE = new Set(["E_NODE_UNREACHABLE", "E_ENGINE_UNAVAILABLE"]);

/**
 * Reads a failed attempt by its error's code, never its text: a timeout keeps the node, anything else
 * (unreachable, an engine failure, a refusal such as over its limits) gives the node up for this run: a
 * node that refused the job would refuse its other tasks too, and burn the retries another node could use.
 */
export function classifyFailure(outcome: Exclude<TaskOutcome, { kind: "exited" }>): Failure {
  if (outcome.kind === "timedOut") return { kind: "timeout", keepNode: true, message: "" };
  const err = outcome.error;
  const message = err instanceof Error ? err.message : String(err);
  // one machine behind the node is gone, the node is not: the task runs again in a fresh container
  if (isLostContainer(err)) return { kind: "unreachable", keepNode: true, message };
  const unreachable = !(err instanceof P2prcError) || UNREACHABLE.has(err.code);
  return { kind: unreachable ? "unreachable" : "refused", keepNode: false, message };
}

/**
 * The container's machine stopped answering while the node still does (a node in front of a swarm, one of
 * whose machines died): the node's E_ENGINE_UNAVAILABLE on field `container`.
 */
export function isLostContainer(err: unknown): boolean {
  return err instanceof P2prcError && err.code === "E_ENGINE_UNAVAILABLE" && err.field === "container";
}

/** A missing output path (the node's E_NOT_FOUND about `path`): recorded on the task, not a node failure. */
export function isMissingPath(err: unknown): boolean {
  return err instanceof P2prcError && err.code === "E_NOT_FOUND" && err.field === "path";
}

/** A node whose lease limit is shorter than the job's: create again with the node's default lease. */
export function isLeaseRefused(err: unknown): boolean {
  return err instanceof P2prcError && err.field === "ttlSeconds";
}

/** Tasks a node may run at once: maxPerNode, capped by the free capacity its record offers. */
export function slotsFor(t: NodeTarget, job: Job): number {
  const offer = t.offer;
  if (!offer) return job.maxPerNode;
  const byCpu = job.cpus ? Math.floor(offer.cpus / job.cpus) : offer.freeContainers;
  const byMem = job.memoryMb ? Math.floor(offer.memoryMb / job.memoryMb) : offer.freeContainers;
  return Math.max(1, Math.min(job.maxPerNode, offer.freeContainers, byCpu, byMem));
}

/** The containers' lease: long enough for every task to run in turn on the slots there are, at most 7 days. */
export function leaseSeconds(job: Job, total: number, totalSlots: number): number {
  return Math.min(7 * 86400, job.timeoutSeconds * Math.ceil(total / Math.max(1, totalSlots)) + 600);
}

/**
 * The rows of a batch run again: tasks left running by a killed client, and tasks that failed because no
 * node could run them (no exit code), are pending again; a task that failed by its own exit code stays failed.
 * With `retryFailed`, every failed task is pending again with its attempts back at 0 (a fresh set of
 * retries), and done tasks stay done.
 */
export function resumeRows(rows: BatchTaskRow[], o: { retryFailed?: boolean } = {}): BatchTaskRow[] {
  return rows.map((t) => {
    if (o.retryFailed && t.state === "failed")
      return { ...t, state: "pending", attempts: 0, exitCode: undefined, error: undefined };
    return t.state === "running" || (t.state === "failed" && t.exitCode === undefined)
      ? { ...t, state: "pending" }
      : t;
  });
}

/** The state a run starts from: the stored rows, and the nodes with their slots. */
export function initialState(rows: BatchTaskRow[], nodes: { label: string; slots: number }[]): BatchState {
  const state: BatchState = {
    total: rows.length,
    rows: new Map(rows.map((t) => [t.index, t])),
    queue: rows.filter((t) => t.state === "pending").map((t) => t.index),
    nodes: new Map(),
    running: 0,
    durations: [],
    cancelled: false,
  };
  for (const n of nodes) state.nodes.set(n.label, { slots: n.slots, alive: true, done: 0, running: 0 });
  for (const t of rows)
    if (t.state === "done" && t.node && !state.nodes.has(t.node))
      state.nodes.set(t.node, { slots: 0, alive: false, done: 0, running: 0 });
  return state;
}

/** What a free slot on `node` does next: run a task, wait for a running one to come back, or stop. */
export type NextStep = { kind: "run"; index: number } | { kind: "wait" } | { kind: "stop" };

/** Takes the next task for a free slot on `node` (first come, first served across nodes). */
export function nextStep(state: BatchState, node: string): NextStep {
  if (state.cancelled || !state.nodes.get(node)?.alive) return { kind: "stop" };
  const index = state.queue.shift();
  if (index !== undefined) return { kind: "run", index };
  // a running task may still fail and come back to the queue
  return state.running === 0 ? { kind: "stop" } : { kind: "wait" };
}

function nodeOf(state: BatchState, label: string): NodeState {
  const n = state.nodes.get(label);
  if (!n) throw new P2prcError("E_INTERNAL", `batch: unknown node ${label}`);
  return n;
}

/** A task goes to `node`: its row becomes running there, one attempt more. */
export function startTask(state: BatchState, index: number, node: string): Transition {
  const prev = state.rows.get(index);
  if (!prev) throw new P2prcError("E_INTERNAL", `batch: unknown task ${index}`);
  const row: BatchTaskRow = { ...prev, state: "running", node, attempts: prev.attempts + 1 };
  state.rows.set(index, row);
  state.running++;
  nodeOf(state, node).running++;
  return { row, event: { index, state: "running", node }, dropNode: false };
}

/**
 * An attempt ended. Exit 0 is done; another exit code fails the task (or queues it again with
 * retryOnFailure while attempts last); a timeout or a node's error queues it again while
 * `attempts <= retries`, and any error but a timeout gives the node up.
 */
export function finishTask(state: BatchState, job: Job, index: number, outcome: TaskOutcome): Transition {
  const prev = state.rows.get(index);
  if (!prev?.node || prev.state !== "running")
    throw new P2prcError("E_INTERNAL", `batch: task ${index} is not running`);
  const node = prev.node;
  const n = nodeOf(state, node);
  state.running--;
  n.running--;
  const attempts = prev.attempts;
  let row: BatchTaskRow;
  let event: BatchEvent;
  let dropNode = false;
  if (state.cancelled && !(outcome.kind === "exited" && outcome.exitCode === 0)) {
    // the cancel removed its container: the attempt does not count, the task waits for the next run
    row = { ...prev, state: "pending", attempts: attempts - 1 };
    state.rows.set(index, row);
    return { row, event: { index, state: "cancelled", node }, dropNode: false };
  }
  if (outcome.kind === "exited") {
    const ok = outcome.exitCode === 0;
    const retry = !ok && job.retryOnFailure && attempts <= job.retries;
    state.durations.push(outcome.durationMs);
    row = {
      index,
      state: ok ? "done" : retry ? "pending" : "failed",
      node,
      exitCode: outcome.exitCode,
      attempts,
      durationMs: outcome.durationMs,
      error: exitedError(outcome.exitCode, outcome.missing),
    };
    if (ok) n.done++;
    event = {
      index,
      state: ok ? "done" : retry ? "retry" : "failed",
      node,
      exitCode: outcome.exitCode,
      ...(retry ? { error: `exit ${outcome.exitCode}, retryOnFailure` } : {}),
    };
  } else {
    const failure = classifyFailure(outcome);
    const error =
      outcome.kind === "timedOut" ? `task ${index} timed out after ${outcome.seconds} s` : failure.message;
    const retry = attempts <= job.retries;
    dropNode = !failure.keepNode;
    if (dropNode) {
      n.alive = false;
      n.droppedFor = `${failure.kind === "refused" ? "refused" : "unreachable"}: ${failure.message}`;
    }
    row = {
      index,
      state: retry ? "pending" : "failed",
      node,
      exitCode: undefined,
      attempts,
      durationMs: undefined,
      error,
    };
    event = { index, state: retry ? "retry" : "failed", node, error };
  }
  state.rows.set(index, row);
  if (row.state === "pending") state.queue.push(index);
  return { row, event, dropNode };
}

/** A finished task's error: its exit code when it failed (missing outputs after it), missing outputs alone otherwise. */
function exitedError(exitCode: number, missing: string[]): string | undefined {
  const outputs = missing.length ? `missing outputs: ${missing.join(", ")}` : undefined;
  if (exitCode === 0) return outputs;
  return outputs ? `exit ${exitCode}; ${outputs}` : `exit ${exitCode}`;
}

/**
 * Tasks still queued when every node has stopped: failed, keeping the last error they had, or (a task that
 * never ran) `no node left to run it` with why each node was given up; each with the event that reports it
 * (a task that never ran names no node).
 */
export function abandonQueued(state: BatchState): Omit<Transition, "dropNode">[] {
  const out: Omit<Transition, "dropNode">[] = [];
  const why = [...state.nodes]
    .filter(([, n]) => n.droppedFor)
    .map(([label, n]) => `${label} ${n.droppedFor}`)
    .join("; ");
  const noNode = why ? `no node left to run it (${why})` : "no node left to run it";
  for (const index of state.queue.splice(0)) {
    const t = state.rows.get(index);
    if (!t) continue;
    const row: BatchTaskRow = { ...t, state: "failed", error: t.error ?? noNode };
    state.rows.set(index, row);
    out.push({ row, event: { index, state: "failed", node: t.node ?? "", error: row.error } });
  }
  return out;
}

/**
 * A task is added to a running state (a future submitted while others run): pending, at the end of the queue.
 */
export function addTask(state: BatchState, index: number): BatchTaskRow {
  const row: BatchTaskRow = {
    index,
    state: "pending",
    node: undefined,
    exitCode: undefined,
    attempts: 0,
    durationMs: undefined,
    error: undefined,
  };
  state.rows.set(index, row);
  state.queue.push(index);
  state.total++;
  return row;
}

/**
 * A task leaves the state whatever it was doing (a cancelled future): out of the queue, or, running, its
 * slot freed without counting against its node. Returns whether it was running.
 */
export function withdrawTask(state: BatchState, index: number): boolean {
  const row = state.rows.get(index);
  if (!row) return false;
  state.rows.delete(index);
  state.total--;
  const at = state.queue.indexOf(index);
  if (at >= 0) state.queue.splice(at, 1);
  if (row.state !== "running" || !row.node) return false;
  state.running--;
  const n = state.nodes.get(row.node);
  if (n) n.running--;
  return true;
}

/** Cancels a run: no task starts any more; queued tasks stay pending for the next run of the same job. */
export function cancel(state: BatchState): void {
  state.cancelled = true;
  state.queue.splice(0);
}

/** What `p2prc batch status` prints: counts by state and the failed tasks with why. */
export interface BatchSummary {
  total: number;
  done: number;
  failed: number;
  running: number;
  pending: number;
  failedTasks: { index: number; node: string | null; exitCode: number | null; error: string | null }[];
}

/** Sums a batch's stored rows (running ones may belong to a client that still runs, or one that was killed). */
export function summarize(rows: BatchTaskRow[]): BatchSummary {
  const count = (s: BatchTaskRow["state"]) => rows.filter((t) => t.state === s).length;
  return {
    total: rows.length,
    done: count("done"),
    failed: count("failed"),
    running: count("running"),
    pending: count("pending"),
    failedTasks: rows
      .filter((t) => t.state === "failed")
      .map((t) => ({
        index: t.index,
        node: t.node ?? null,
        exitCode: t.exitCode ?? null,
        error: t.error ?? null,
      })),
  };
}

/** The progress report of the state now; the ETA spreads what is left over the slots still in use. */
export function progressOf(state: BatchState, event?: BatchEvent): BatchProgress {
  let done = 0;
  let failed = 0;
  let pending = 0;
  for (const t of state.rows.values()) {
    if (t.state === "done") done++;
    else if (t.state === "failed") failed++;
    else if (t.state === "pending") pending++;
  }
  const d = state.durations;
  const avg = d.length ? d.reduce((a, b) => a + b, 0) / d.length : undefined;
  let slots = 0;
  const perNode: BatchProgress["perNode"] = {};
  for (const [label, n] of state.nodes) {
    if (n.alive) slots += n.slots;
    perNode[label] = { done: n.done, running: n.running };
  }
  const etaMs =
    avg !== undefined && slots > 0 ? Math.round((avg * (pending + state.running)) / slots) : undefined;
  return { total: state.total, done, failed, running: state.running, pending, perNode, etaMs, event };
}

/** results.json: one row per task, in task order. */
export function resultsOf(state: BatchState): TaskResult[] {
  return [...state.rows.values()]
    .sort((a, b) => a.index - b.index)
    .map((t) => ({
      index: t.index,
      node: t.node ?? null,
      exitCode: t.exitCode ?? null,
      attempts: t.attempts,
      durationMs: t.durationMs ?? null,
      state: t.state === "done" ? "done" : t.state === "failed" ? "failed" : "pending",
      ...(t.error ? { error: t.error } : {}),
    }));
}
