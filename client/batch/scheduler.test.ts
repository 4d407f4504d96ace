// The batch core on plain data: placement, what a failure means, retry and reschedule, giving a node up,
// resume and progress. No node, no store, no fetch; durations come from a ManualClock.
import { describe, expect, test } from "bun:test";
import { ManualClock, P2prcError } from "../../core/index.ts";
import type { BatchTaskRow } from "../../store/index.ts";
import { type Job, JobSchema } from "./job.ts";
import {
  abandonQueued,
  addTask,
  type BatchState,
  cancel,
  classifyFailure,
  finishTask,
  initialState,
  isLeaseRefused,
  isLostContainer,
  isMissingPath,
  leaseSeconds,
  nextStep,
  progressOf,
  resultsOf,
  resumeRows,
  startTask,
  summarize,
  type TaskOutcome,
  withdrawTask,
} from "./scheduler.ts";

function job(fields: Partial<Job> & { tasks: number }): Job {
  return JobSchema.parse({ image: "img", command: ["true"], ...fields });
}

/** A stored row: fields not given are unset, as the store gives them. */
const row = (
  r: Pick<BatchTaskRow, "index" | "state" | "attempts"> & Partial<BatchTaskRow>,
): BatchTaskRow => ({
  node: undefined,
  exitCode: undefined,
  durationMs: undefined,
  error: undefined,
  ...r,
});
const pending = (index: number): BatchTaskRow => row({ index, state: "pending", attempts: 0 });
const rows = (n: number) => Array.from({ length: n }, (_, i) => pending(i));
/** `n` pending tasks on nodes a and b. */
const onAB = (n: number, aSlots: number, bSlots: number) =>
  initialState(rows(n), [
    { label: "a", slots: aSlots },
    { label: "b", slots: bSlots },
  ]);

/** Runs `index` on `node` for `ms` of the manual clock and ends it with `end`. */
function attempt(
  s: BatchState,
  j: Job,
  clock: ManualClock,
  node: string,
  end: (durationMs: number) => TaskOutcome,
  ms = 100,
) {
  const step = nextStep(s, node);
  if (step.kind !== "run") throw new Error(`${node} got ${step.kind}`);
  const t0 = clock.now();
  startTask(s, step.index, node);
  clock.advance(ms);
  return { index: step.index, ...finishTask(s, j, step.index, end(clock.now() - t0)) };
}

const exited =
  (exitCode: number, missing: string[] = []) =>
  (durationMs: number): TaskOutcome => ({ kind: "exited", exitCode, durationMs, missing });
const unreachable = () => ({
  kind: "error" as const,
  error: new P2prcError("E_NODE_UNREACHABLE", "cannot reach node b", { retryable: true }),
});

describe("placement", () => {
  test("free slots take queued tasks in order, whichever node asks; an empty queue waits while tasks run", () => {
    const s = onAB(3, 1, 1);
    expect(nextStep(s, "a")).toEqual({ kind: "run", index: 0 });
    startTask(s, 0, "a");
    expect(nextStep(s, "b")).toEqual({ kind: "run", index: 1 });
    startTask(s, 1, "b");
    expect(nextStep(s, "a")).toEqual({ kind: "run", index: 2 });
    startTask(s, 2, "a");
    expect(nextStep(s, "b")).toEqual({ kind: "wait" });
    expect(s.nodes.get("a")).toMatchObject({ running: 2 });
    for (const i of [0, 1, 2]) finishTask(s, job({ tasks: 3 }), i, exited(0)(5));
    expect(nextStep(s, "b")).toEqual({ kind: "stop" });
  });

  test("a node that was given up gets nothing, even with tasks queued", () => {
    const s = initialState(rows(2), [{ label: "a", slots: 1 }]);
    const a = s.nodes.get("a");
    if (a) a.alive = false;
    expect(nextStep(s, "a")).toEqual({ kind: "stop" });
    expect(s.queue).toEqual([0, 1]);
  });

  test("the lease covers every task in turn on the slots there are, plus ten minutes, at most 7 days", () => {
    expect(leaseSeconds(job({ tasks: 10, timeoutSeconds: 60 }), 10, 4)).toBe(60 * 3 + 600);
    expect(leaseSeconds(job({ tasks: 10, timeoutSeconds: 60 }), 10, 0)).toBe(60 * 10 + 600);
    expect(leaseSeconds(job({ tasks: 1, timeoutSeconds: 3600 }), 100000, 1)).toBe(7 * 86400);
  });
});

describe("what a failure means, by code", () => {
  test("a timeout keeps the node; unreachable and refusals give it up; the text is never read", () => {
    expect(classifyFailure({ kind: "timedOut", seconds: 5 })).toMatchObject({
      kind: "timeout",
      keepNode: true,
    });
    for (const code of ["E_NODE_UNREACHABLE", "E_ENGINE_UNAVAILABLE"] as const)
      expect(classifyFailure({ kind: "error", error: new P2prcError(code, "timed out") })).toMatchObject({
        kind: "unreachable",
        keepNode: false,
      });
    expect(classifyFailure({ kind: "error", error: new TypeError("fetch failed") }).kind).toBe("unreachable");
    // "timed out" in a refusal's text does not make it a timeout
    const refused = classifyFailure({ kind: "error", error: new P2prcError("E_LIMIT", "task timed out") });
    expect(refused).toMatchObject({ kind: "refused", keepNode: false, message: "task timed out" });
  });

  test("a lost container (its swarm machine gone, the node fine) keeps the node; only on field container", () => {
    const lost = new P2prcError("E_ENGINE_UNAVAILABLE", "machine gone", { field: "container" });
    expect(classifyFailure({ kind: "error", error: lost })).toMatchObject({
      kind: "unreachable",
      keepNode: true,
    });
    expect(isLostContainer(lost)).toBe(true);
    expect(isLostContainer(new P2prcError("E_ENGINE_UNAVAILABLE", "engine down"))).toBe(false);
    expect(isLostContainer(new P2prcError("E_NOT_FOUND", "x", { field: "container" }))).toBe(false);
  });

  test("a missing output is E_NOT_FOUND about `path`; a lease refusal is about `ttlSeconds`", () => {
    expect(isMissingPath(new P2prcError("E_NOT_FOUND", "x", { field: "path" }))).toBe(true);
    expect(isMissingPath(new P2prcError("E_NOT_FOUND", "no such path or file"))).toBe(false);
    expect(isMissingPath(new P2prcError("E_INVALID", "x", { field: "path" }))).toBe(false);
    expect(isLeaseRefused(new P2prcError("E_LIMIT", "x", { field: "ttlSeconds" }))).toBe(true);
    expect(isLeaseRefused(new Error("ttlSeconds"))).toBe(false);
  });
});

describe("retry and reschedule", () => {
  test("a timed-out task goes back to the queue, its node stays in use, and it ends done on a later attempt", () => {
    const clock = new ManualClock();
    const j = job({ tasks: 1, retries: 2, timeoutSeconds: 5 });
    const s = initialState(rows(1), [{ label: "a", slots: 1 }]);
    const first = attempt(s, j, clock, "a", () => ({ kind: "timedOut", seconds: 5 }), 5000);
    expect(first.row).toMatchObject({ state: "pending", attempts: 1, error: "task 0 timed out after 5 s" });
    expect(first.event).toMatchObject({ state: "retry", node: "a" });
    expect(first.dropNode).toBe(false);
    expect(s.queue).toEqual([0]);
    const second = attempt(s, j, clock, "a", exited(0), 250);
    expect(second.row).toMatchObject({ state: "done", attempts: 2, exitCode: 0, durationMs: 250, node: "a" });
    expect(resultsOf(s)[0]).toEqual({
      index: 0,
      node: "a",
      exitCode: 0,
      attempts: 2,
      durationMs: 250,
      state: "done",
    });
  });

  test("after retries + 1 attempts the task fails with its last error", () => {
    const clock = new ManualClock();
    const j = job({ tasks: 1, retries: 1 });
    const s = initialState(rows(1), [{ label: "a", slots: 1 }]);
    attempt(s, j, clock, "a", () => ({ kind: "timedOut", seconds: 600 }));
    const last = attempt(s, j, clock, "a", () => ({ kind: "timedOut", seconds: 600 }));
    expect(last.row).toMatchObject({ state: "failed", attempts: 2, exitCode: undefined });
    expect(last.event.state).toBe("failed");
    expect(s.queue).toEqual([]);
  });

  test("a non-zero exit fails the task at once; with retryOnFailure it runs again while attempts last", () => {
    const clock = new ManualClock();
    const plain = initialState(rows(1), [{ label: "a", slots: 1 }]);
    expect(attempt(plain, job({ tasks: 1 }), clock, "a", exited(3)).row).toMatchObject({
      state: "failed",
      exitCode: 3,
      attempts: 1,
    });
    const j = job({ tasks: 1, retries: 1, retryOnFailure: true });
    const s = initialState(rows(1), [{ label: "a", slots: 1 }]);
    const first = attempt(s, j, clock, "a", exited(3));
    expect(first.event).toEqual({
      index: 0,
      state: "retry",
      node: "a",
      exitCode: 3,
      error: "exit 3, retryOnFailure",
    });
    expect(attempt(s, j, clock, "a", exited(3)).row).toMatchObject({ state: "failed", attempts: 2 });
  });

  test("missing outputs are recorded on a task that still counts as done", () => {
    const s = initialState(rows(1), [{ label: "a", slots: 1 }]);
    const r = attempt(s, job({ tasks: 1 }), new ManualClock(), "a", exited(0, ["out.txt", "b"]));
    expect(r.row).toMatchObject({ state: "done", error: "missing outputs: out.txt, b" });
  });
});

describe("giving a node up", () => {
  test("a node error gives the node up and its task goes to the other node", () => {
    const clock = new ManualClock();
    const j = job({ tasks: 2 });
    const s = onAB(2, 1, 1);
    const lost = attempt(s, j, clock, "b", unreachable);
    expect(lost.dropNode).toBe(true);
    expect(lost.row).toMatchObject({ state: "pending", node: "b", error: "cannot reach node b" });
    expect(s.nodes.get("b")?.alive).toBe(false);
    expect(nextStep(s, "b")).toEqual({ kind: "stop" });
    expect(attempt(s, j, clock, "a", exited(0)).index).toBe(1);
    expect(attempt(s, j, clock, "a", exited(0))).toMatchObject({
      index: 0,
      row: { state: "done", attempts: 2 },
    });
    expect(progressOf(s).perNode).toEqual({ a: { done: 2, running: 0 }, b: { done: 0, running: 0 } });
  });

  test("when every node is given up, what is left fails 'no node left to run it' or keeps its own error", () => {
    const clock = new ManualClock();
    const s = initialState(rows(3), [{ label: "a", slots: 1 }]);
    attempt(s, job({ tasks: 3 }), clock, "a", unreachable);
    expect(nextStep(s, "a")).toEqual({ kind: "stop" });
    const left = abandonQueued(s);
    expect(left.map((t) => [t.row.index, t.row.error])).toEqual([
      [1, "no node left to run it (a unreachable: cannot reach node b)"],
      [2, "no node left to run it (a unreachable: cannot reach node b)"],
      [0, "cannot reach node b"],
    ]);
    // each one is reported as failed (the plain-line output prints it), naming the node it last tried
    expect(left.map((t) => [t.event.state, t.event.node])).toEqual([
      ["failed", ""],
      ["failed", ""],
      ["failed", "a"],
    ]);
    expect(resultsOf(s).every((t) => t.state === "failed")).toBe(true);
  });
});

describe("resume", () => {
  test("running and node-failed tasks are pending again; done and exit-code failures stay", () => {
    const stored: BatchTaskRow[] = [
      row({ index: 0, state: "done", node: "a", exitCode: 0, attempts: 1, durationMs: 10 }),
      row({ index: 1, state: "running", node: "a", attempts: 1 }),
      row({ index: 2, state: "failed", node: "a", attempts: 3, error: "no node left to run it" }),
      row({ index: 3, state: "failed", node: "a", exitCode: 2, attempts: 1 }),
      row({ index: 4, state: "pending", attempts: 0 }),
    ];
    const again = resumeRows(stored);
    expect(again.map((t) => t.state)).toEqual(["done", "pending", "pending", "failed", "pending"]);
    // unchanged rows are the same objects, so the shell writes only what changed
    expect(again[0]).toBe(stored[0] as BatchTaskRow);
    expect(again[3]).toBe(stored[3] as BatchTaskRow);
    const s = initialState(again, [{ label: "b", slots: 2 }]);
    expect(s.queue).toEqual([1, 2, 4]);
    // attempts carry on from the earlier run; the node that did task 0 is still counted in progress
    expect(startTask(s, 2, "b").row.attempts).toBe(4);
    expect(Object.keys(progressOf(s).perNode).sort()).toEqual(["a", "b"]);
  });
});

describe("progress", () => {
  test("counts by state and an ETA from the mean duration over the slots still in use", () => {
    const clock = new ManualClock();
    const j = job({ tasks: 6 });
    const s = onAB(6, 2, 1);
    expect(progressOf(s)).toMatchObject({ total: 6, pending: 6, running: 0, etaMs: undefined });
    attempt(s, j, clock, "a", exited(0), 300);
    attempt(s, j, clock, "a", exited(0), 900);
    expect(nextStep(s, "b")).toEqual({ kind: "run", index: 2 });
    startTask(s, 2, "b");
    // mean 600 ms, 3 pending + 1 running over 3 slots
    expect(progressOf(s)).toMatchObject({ done: 2, running: 1, pending: 3, etaMs: 800 });
    finishTask(s, j, 2, unreachable());
    // b is given up: 4 left over a's 2 slots
    expect(progressOf(s)).toMatchObject({ running: 0, pending: 4, etaMs: 1200 });
  });
});

describe("a refusal (defect 5)", () => {
  test("the tasks left after a 409 fail with the node's reason, not a bare 'no node left', each reported", () => {
    const j = job({ tasks: 3, retries: 1 });
    const s = initialState(rows(3), [{ label: "a", slots: 1 }]);
    expect(nextStep(s, "a")).toEqual({ kind: "run", index: 0 });
    startTask(s, 0, "a");
    const over = new P2prcError("E_LIMIT", "cpus 3 is more than this host has (2)");
    expect(finishTask(s, j, 0, { kind: "error", error: over }).dropNode).toBe(true);
    expect(nextStep(s, "a")).toEqual({ kind: "stop" });
    const left = abandonQueued(s);
    const noNode = "no node left to run it (a refused: cpus 3 is more than this host has (2))";
    expect(left.map((t) => t.row.error)).toEqual([noNode, noNode, over.message]);
    expect(left.map((t) => `${t.event.index} ${t.event.state}`)).toEqual([
      "1 failed",
      "2 failed",
      "0 failed",
    ]);
  });
});

describe("an exit code is the failure (defect 10)", () => {
  test("a task that exited 7 says exit 7 first, then its missing outputs; exit 0 names only missing outputs", () => {
    const s = initialState(rows(2), [{ label: "a", slots: 2 }]);
    const end = (index: number, exitCode: number) => {
      startTask(s, index, "a");
      return finishTask(s, job({ tasks: 2 }), index, {
        kind: "exited",
        exitCode,
        durationMs: 1,
        missing: ["o"],
      });
    };
    expect(end(0, 7).row.error).toBe("exit 7; missing outputs: o");
    expect(end(1, 0).row.error).toBe("missing outputs: o");
  });
});

describe("cancel", () => {
  test("no task starts after a cancel; an interrupted task is pending with its attempt not counted; one that finished stays done", () => {
    const j = job({ tasks: 4 });
    const s = initialState(rows(4), [{ label: "a", slots: 2 }]);
    startTask(s, 0, "a");
    startTask(s, 1, "a");
    s.queue.splice(0, 2);
    cancel(s);
    expect(nextStep(s, "a")).toEqual({ kind: "stop" });
    expect(s.queue).toEqual([]);
    const cut = finishTask(s, j, 0, { kind: "exited", exitCode: 137, durationMs: 5, missing: [] });
    expect(cut.row).toMatchObject({ state: "pending", attempts: 0 });
    expect(cut.event.state).toBe("cancelled");
    expect(finishTask(s, j, 1, { kind: "exited", exitCode: 0, durationMs: 5, missing: [] }).row.state).toBe(
      "done",
    );
    expect(abandonQueued(s)).toEqual([]);
    expect(resultsOf(s).map((t) => t.state)).toEqual(["pending", "done", "pending", "pending"]);
    expect(progressOf(s)).toMatchObject({ done: 1, running: 0, pending: 3 });
    // the next run of the same job takes the three pending tasks
    expect(initialState(resumeRows([...s.rows.values()]), [{ label: "a", slots: 1 }]).queue).toEqual([
      0, 2, 3,
    ]);
  });
});

describe("retry the failed tasks", () => {
  test("every failed task is pending again with fresh attempts; done tasks stay done", () => {
    const stored: BatchTaskRow[] = [
      row({ index: 0, state: "done", node: "a", exitCode: 0, attempts: 1 }),
      row({ index: 1, state: "failed", node: "a", exitCode: 7, attempts: 1, error: "exit 7" }),
      row({ index: 2, state: "failed", node: "a", attempts: 3, error: "no node left to run it" }),
    ];
    expect(resumeRows(stored).map((t) => t.state)).toEqual(["done", "failed", "pending"]);
    const again = resumeRows(stored, { retryFailed: true });
    expect(again.map((t) => [t.state, t.attempts, t.exitCode, t.error])).toEqual([
      ["done", 1, 0, undefined],
      ["pending", 0, undefined, undefined],
      ["pending", 0, undefined, undefined],
    ]);
  });
});

describe("status summary", () => {
  test("counts by state and lists the failed tasks with why", () => {
    const sum = summarize([
      row({ index: 0, state: "done", node: "a", exitCode: 0, attempts: 1 }),
      row({ index: 1, state: "failed", node: "b", exitCode: 7, attempts: 1, error: "exit 7" }),
      row({ index: 2, state: "running", node: "a", attempts: 1 }),
      row({ index: 3, state: "pending", attempts: 0 }),
    ]);
    expect(sum).toEqual({
      total: 4,
      done: 1,
      failed: 1,
      running: 1,
      pending: 1,
      failedTasks: [{ index: 1, node: "b", exitCode: 7, error: "exit 7" }],
    });
  });
});

describe("an open queue (futures)", () => {
  test("a task added while others run queues last; a withdrawn one frees its slot without blaming the node", () => {
    const s = initialState([], [{ label: "a", slots: 1 }]);
    expect(nextStep(s, "a")).toEqual({ kind: "stop" });
    addTask(s, 0);
    addTask(s, 1);
    expect(s.total).toBe(2);
    expect(nextStep(s, "a")).toEqual({ kind: "run", index: 0 });
    startTask(s, 0, "a");
    expect(nextStep(s, "a")).toEqual({ kind: "run", index: 1 });
    startTask(s, 1, "a");
    addTask(s, 2);
    // withdrawn while running (a cancel): no failure, the node keeps its place
    expect(withdrawTask(s, 1)).toBe(true);
    expect({
      running: s.running,
      nodeRunning: s.nodes.get("a")?.running,
      alive: s.nodes.get("a")?.alive,
    }).toEqual({
      running: 1,
      nodeRunning: 1,
      alive: true,
    });
    // withdrawn while queued: it never runs
    expect(withdrawTask(s, 2)).toBe(false);
    expect(s.queue).toEqual([]);
    expect(s.total).toBe(1);
    expect(nextStep(s, "a")).toEqual({ kind: "wait" });
    expect(withdrawTask(s, 9)).toBe(false);
  });
});
