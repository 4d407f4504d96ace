// Futures of one shape (cpus, memory, timeout, node choice) on the batch runner's machinery: the scheduler's
// decisions (scheduler.ts: first come first served across slots, retries, giving a dead node up) and one
// NodeWorker per node (worker.ts: warm containers; an attempt is one `POST /v1/containers/:id/futures/run`,
// answered by the container's long-lived runtime without an exec, or one `…/tasks` exec on an older node).
// Unlike a batch, the queue stays open: futures are added while others run, and idle slots wait for more.
import type { Clock } from "../../core/index.ts";
import type { Job } from "../batch/job.ts";
import {
  abandonQueued,
  addTask,
  type BatchState,
  finishTask,
  initialState,
  nextStep,
  slotsFor,
  startTask,
  type TaskOutcome,
  withdrawTask,
} from "../batch/scheduler.ts";
import { type Attempt, NodeWorker } from "../batch/worker.ts";
import type { ClientDeps } from "../containers.ts";
import type { TaskReply } from "../node-client.ts";
import type { NodeTarget } from "../resolve.ts";

/** One attempt's view of a task: what it runs, and what came back. */
export interface LaneTask {
  /** Builds the attempt's command and env (a fresh nonce per attempt). */
  attempt(n: number): Pick<Attempt, "command" | "env" | "inputs" | "runtime">;
  /** The attempt's reply, before the scheduler hears how it ended. */
  reply?(r: TaskReply, containerId: string, node: { label: string; id: string | undefined }): void;
  /** The task is over: done (exit 0) or failed (with why), once. */
  settle(end: { state: "done" | "failed"; error?: string | undefined; node: string; closed?: boolean }): void;
  /** Told when an attempt starts on a node (`running`). */
  started?(node: string): void;
}

/** A lane's slots run tasks until it is closed. */
export class Lane {
  private readonly state: BatchState;
  private readonly workers: NodeWorker[];
  private readonly tasks = new Map<number, LaneTask>();
  /** Where each running task is: its worker and slot (a cancel removes that slot's container). */
  private readonly where = new Map<number, { worker: NodeWorker; slot: number }>();
  private next = 0;
  private closed = false;
  private loops: Promise<void> | undefined;
  private wake: () => void = () => {};
  private changed = this.newChange();

  constructor(
    targets: NodeTarget[],
    private readonly job: Job,
    private readonly deps: ClientDeps,
    keepAlive: string[],
    ttlSeconds: number,
  ) {
    this.workers = targets.map(
      (t) => new NodeWorker(t, slotsFor(t, job), job, ttlSeconds, deps, { keepAlive }),
    );
    this.state = initialState(
      [],
      this.workers.map((w) => ({ label: w.label, slots: w.slots })),
    );
  }

  private newChange(): Promise<void> {
    return new Promise<void>((r) => {
      this.wake = r;
    });
  }

  private notify(): void {
    this.wake();
    this.changed = this.newChange();
  }

  /** Queues a task; the lane's slots start on the first one. Returns its index (for cancel). */
  submit(task: LaneTask): number {
    const index = this.next++;
    this.tasks.set(index, task);
    addTask(this.state, index);
    this.loops ??= this.run();
    this.notify();
    if (!this.workers.some((w) => this.state.nodes.get(w.label)?.alive)) this.abandon();
    return index;
  }

  /** Takes a task out: queued, it never runs; running, its container is removed (the process ends). */
  async cancel(index: number): Promise<void> {
    if (!this.tasks.delete(index)) return;
    const running = withdrawTask(this.state, index);
    const at = this.where.get(index);
    this.where.delete(index);
    this.notify();
    if (running && at) await at.worker.abort(at.slot);
  }

  private async run(): Promise<void> {
    await Promise.all(
      this.workers.flatMap((w) => Array.from({ length: w.slots }, (_, s) => this.slot(w, s))),
    );
  }

  private async slot(w: NodeWorker, slot: number): Promise<void> {
    const clock: Clock = this.deps.clock;
    for (;;) {
      if (this.closed) return;
      const step = nextStep(this.state, w.label);
      if (step.kind !== "run") {
        if (!this.state.nodes.get(w.label)?.alive) return;
        await this.changed;
        continue;
      }
      const index = step.index;
      const task = this.tasks.get(index);
      if (!task) continue;
      const start = startTask(this.state, index, w.label);
      this.where.set(index, { worker: w, slot });
      task.started?.(w.label);
      const a = task.attempt(start.row.attempts);
      const outcome: TaskOutcome = await w.run(
        slot,
        {
          index,
          attempt: start.row.attempts,
          ...a,
          onReply: (r, containerId) => task.reply?.(r, containerId, { label: w.label, id: w.id }),
        },
        clock,
      );
      this.where.delete(index);
      // cancelled while it ran: withdrawn already, its outcome is nobody's
      if (!this.tasks.has(index)) continue;
      const end = finishTask(this.state, this.job, index, outcome);
      if (end.row.state === "done" || end.row.state === "failed") {
        this.tasks.delete(index);
        withdrawTask(this.state, index);
        task.settle({ state: end.row.state, error: end.row.error, node: w.label });
      }
      if (end.dropNode && !this.workers.some((x) => this.state.nodes.get(x.label)?.alive)) this.abandon();
      this.notify();
      if (end.dropNode) return;
    }
  }

  /** No node is left: every queued task fails with why. */
  private abandon(): void {
    for (const t of abandonQueued(this.state)) {
      const task = this.tasks.get(t.row.index);
      this.tasks.delete(t.row.index);
      withdrawTask(this.state, t.row.index);
      task?.settle({ state: "failed", error: t.row.error, node: t.row.node ?? "" });
    }
  }

  /** Stops the slots and removes the warm containers; tasks still queued fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const [index, task] of this.tasks) {
      withdrawTask(this.state, index);
      task.settle({ state: "failed", error: "the cluster was closed", node: "", closed: true });
    }
    this.tasks.clear();
    this.notify();
    await Promise.all(this.workers.map((w) => w.cancel()));
    await this.loops;
  }
}
