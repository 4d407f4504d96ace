// The I/O of one node in a batch: its warm containers, the job's inputs in its cache, and one attempt of a
// task there (one call: the node runs it in a fresh directory holding the inputs; stdout/stderr and outputs
// back). It decides nothing: it reports how the attempt ended (scheduler.ts).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Clock, P2prcError } from "../../core/index.ts";
import type { ClientDeps } from "../containers.ts";
import { type CreatedContainer, connect, type NodeClient, type TaskReply } from "../node-client.ts";
import type { NodeTarget } from "../resolve.ts";
import type { Job } from "./job.ts";
import { checkReply, isOutputsRefused, saveOutput } from "./outputs.ts";
import { isLeaseRefused, isLostContainer, type TaskOutcome } from "./scheduler.ts";

/** A job input as the client knows it: read from `path`, named by its content's SHA-256. */
export interface BatchInput {
  name: string;
  path: string;
  size: number;
  digest: string;
}

/** What the inputs of a batch cost on the network, summed over its nodes. */
export interface InputTraffic {
  /** Bytes uploaded to the nodes' input caches. */
  sent: number;
  /** Bytes the tasks' inputs would have taken sent with every task (as without the cache). */
  perTask: number;
}

/** The node's "no such container" (of a container, not of an input or a path). */
function isNotFound(err: unknown): boolean {
  return (
    err instanceof P2prcError && err.code === "E_NOT_FOUND" && (err.field === undefined || err.field === "id")
  );
}

/** A node's missing input (evicted from its cache since it was uploaded): upload it again. */
function isMissingInput(err: unknown): boolean {
  return err instanceof P2prcError && err.code === "E_NOT_FOUND" && err.field === "inputs";
}

/** One task's attempt as the worker runs it. */
export interface Attempt {
  index: number;
  attempt: number;
  env: Record<string, string>;
  inputs: BatchInput[];
  /** The task's own output directory on this machine; without one, stdout and stderr are not written (futures). */
  outDir?: string;
  /** Runs this instead of the job's command (a future's program). */
  command?: string[];
  /**
   * A future's program ([p2prc, "-e", program], no inputs): run in the container's long-lived runtime
   * (`POST /v1/containers/:id/futures/run`, no exec) where the node has one, else as a task.
   */
  runtime?: boolean;
  /** Told of the node's reply before the outcome is returned (a future reads its result from it). */
  onReply?: (r: TaskReply, containerId: string) => void;
}

/** How a worker makes its warm containers. */
export interface WorkerOptions {
  /** The command that keeps a warm container running (default `tail -f /dev/null`). */
  keepAlive?: string[];
  /**
   * While a slot's container is being made, its tasks run in another slot's container that is up (a
   * batch: tasks start with the first container, not the slowest). Off for futures, whose cancel removes
   * the slot's container to end its one process.
   */
  borrow?: boolean;
}

/** A node's side of a batch: one warm container per slot (or a fresh one per task). */
export class NodeWorker {
  readonly client: NodeClient;
  readonly label: string;
  private readonly pool: (string | undefined)[];
  /** Each slot's container being made: the slot's tasks run in another ready container meanwhile. */
  private readonly making: (Promise<string> | undefined)[];
  /** Set by cleanup(): creates still queued are not made. */
  private ending = false;
  /**
   * The node's creates in rows (borrowing): the last one asked for in each row. One row per machine the
   * node offers (a node in front of a swarm places concurrent creates on different machines, so the
   * batch spreads over them from its first tasks); one row on a single engine.
   */
  private readonly creating: Promise<unknown>[];
  /** Why a slot's container could not be made, until a task of the slot is told. */
  private readonly makeError: unknown[];
  /** The container each slot's running attempt uses (its own, or a borrowed one). */
  private readonly current: (string | undefined)[];
  /** Attempts running in each container now (borrowed ones included). */
  private readonly users = new Map<string, number>();
  /** Containers dropped from the pool while other attempts ran in them: removed when the last one ends. */
  private readonly retired = new Set<string>();
  /** Containers removed because their machine was lost (a task still in one is lost with it). */
  private readonly discarded = new Set<string>();
  /** False once the node answered that it has no future runtime route (an older p2prc): tasks then. */
  private runtimeRoute = true;
  /** False once the node refused a task's `outputs` (an older p2prc): each output is fetched after the task. */
  private outputsInReply = true;
  /** Set by cancel(): an attempt that gets its container after it runs nothing. */
  private cancelled = false;

  /** The node's id, for tracking: the target's, or its health answer's (a host:port target). */
  private nodeId: string | undefined;
  /** The job's inputs in the node's cache: checked (and the missing ones uploaded) once per node. */
  private inputsReady: Promise<void> | undefined;
  /** Input bytes this node was sent, and what sending them with every task would have taken. */
  readonly traffic: InputTraffic = { sent: 0, perTask: 0 };

  constructor(
    readonly target: NodeTarget,
    readonly slots: number,
    private readonly job: Job,
    private readonly ttlSeconds: number,
    private readonly deps: ClientDeps,
    private readonly options: WorkerOptions = {},
  ) {
    this.client = connect(deps, target, 60_000);
    this.label = target.name ?? target.url;
    this.pool = Array.from({ length: slots }, () => undefined);
    this.making = Array.from({ length: slots }, () => undefined);
    this.current = Array.from({ length: slots }, () => undefined);
    this.makeError = Array.from({ length: slots }, () => undefined);
    const rows = Math.max(1, Math.min(slots, target.offer?.machines ?? 1));
    this.creating = Array.from({ length: rows }, () => Promise.resolve());
  }

  private async newContainer(): Promise<string> {
    const body = {
      image: this.job.image,
      command: this.options.keepAlive ?? ["tail", "-f", "/dev/null"],
      cpus: this.job.cpus,
      memoryMb: this.job.memoryMb,
      gpu: this.job.gpu,
      ttlSeconds: this.ttlSeconds,
    };
    let created: CreatedContainer;
    try {
      created = await this.client.createContainer(body);
    } catch (err) {
      if (!isLeaseRefused(err)) throw err;
      created = await this.client.createContainer({ ...body, ttlSeconds: undefined });
    }
    await this.track(created);
    return created.id;
  }

  /**
   * A batch's containers are tracked while they live (`--tc` lists them), so those a client that was
   * killed left behind can be found and removed. Best effort: tracking never fails a task.
   */
  private async track(c: CreatedContainer): Promise<void> {
    try {
      this.nodeId ??= this.target.id ?? (await this.client.health()).nodeId;
      this.deps.tracking.track({
        id: c.id,
        nodeId: this.nodeId,
        nodeUrl: this.target.url,
        name: c.name,
        image: c.image,
        ports: c.ports,
        ssh: c.ssh,
        createdAt: this.deps.clock.now(),
      });
    } catch {
      // not tracked: it still goes at the end of the batch or of its lease
    }
  }

  /**
   * Removes a container; it stops being tracked once its node says it is gone, or that it removes it
   * behind its answer (`background`: the pool at the batch's end; the node ends its lease first).
   */
  private async remove(id: string, background = false): Promise<void> {
    try {
      if (background) await this.client.removeContainerInBackground(id);
      else await this.client.removeContainer(id);
      this.deps.tracking.untrack(id);
    } catch (err) {
      // gone already: untracked; a node that does not answer: it stays tracked (--tc shows it
      // unreachable) until its lease ends
      if (err instanceof P2prcError && err.code === "E_NOT_FOUND") this.deps.tracking.untrack(id);
    }
  }

  /**
   * The container a slot's task runs in: the slot's own once it runs. With `borrow`, while it is being
   * made (the node's creates one after another), the task runs in a container of the node that is up:
   * tasks start as soon as one container is, not when the last create of the pool returns.
   */
  private async container(slot: number): Promise<string> {
    if (this.job.freshContainer) return this.newContainer();
    const own = this.pool[slot];
    if (own) return own;
    const failed = this.makeError[slot];
    if (failed !== undefined) {
      // the slot's container could not be made while its task ran elsewhere: this task fails with why
      this.makeError[slot] = undefined;
      throw failed;
    }
    if (!this.making[slot]) {
      // borrowing, the node's creates go one after another: the first is up soonest (a dozen made at
      // once on one engine all finish late), and the tasks in it share the engine with the next create
      const next = () => {
        // the pool's end came first (few tasks, or a cancel): not made at all
        if (this.ending) throw new P2prcError("E_CONFLICT", "the batch has ended");
        return this.newContainer();
      };
      let create: Promise<string>;
      if (this.options.borrow) {
        const row = slot % this.creating.length;
        create = (this.creating[row] as Promise<unknown>).then(next, next);
        this.creating[row] = create;
      } else create = this.newContainer();
      const made = create.then(
        (id) => {
          this.pool[slot] = id;
          return id;
        },
        (err) => {
          this.making[slot] = undefined;
          this.makeError[slot] = err;
          throw err;
        },
      );
      made.catch(() => undefined); // awaited by this slot's task, or its error shown to the slot's next one
      this.making[slot] = made;
    }
    if (!this.options.borrow)
      return (this.making[slot] as Promise<string>).finally(() => this.clearError(slot));
    const ready = this.pool.find((id) => id !== undefined);
    if (ready) return ready;
    const pending = this.making.filter((p): p is Promise<string> => p !== undefined);
    // the first one up (its own when both are), or this slot's own error when none comes up
    return Promise.any(pending).then(
      (id) => this.pool[slot] ?? id,
      (): Promise<string> => {
        // none came up: this slot's own error, for this task
        const err = this.makeError[slot];
        this.clearError(slot);
        throw err;
      },
    );
  }

  /** The slot's creation error was thrown to the task that waited for it: not again to the next one. */
  private clearError(slot: number): void {
    this.makeError[slot] = undefined;
  }

  /** Takes a container out of the pool: the slot holding it gets a fresh one next time. */
  private retire(id: string): void {
    const slot = this.pool.indexOf(id);
    if (slot >= 0) {
      this.pool[slot] = undefined;
      this.making[slot] = undefined;
    }
    this.retired.add(id);
  }

  /** Removes a container now (a lost machine, a cancelled future): the attempts in it end. */
  private async discard(id: string): Promise<void> {
    this.retire(id);
    this.retired.delete(id);
    this.discarded.add(id);
    await this.remove(id);
  }

  /** An attempt is done with `id`: a retired container goes with the last attempt that used it. */
  private async release(id: string): Promise<void> {
    const n = (this.users.get(id) ?? 1) - 1;
    if (n > 0) {
      this.users.set(id, n);
      return;
    }
    this.users.delete(id);
    if (this.retired.delete(id)) await this.remove(id);
  }

  /** Uploads the inputs the node lacks (asked by digest first), once per node and run. */
  private ensureInputs(inputs: BatchInput[]): Promise<void> {
    if (inputs.length === 0) return Promise.resolve();
    this.inputsReady ??= (async () => {
      const missing = new Set(await this.client.missingInputs([...new Set(inputs.map((i) => i.digest))]));
      for (const i of inputs) {
        if (!missing.delete(i.digest)) continue;
        const r = await this.client.putInput(i.digest, Bun.file(i.path));
        this.traffic.sent += r.bytes;
      }
    })().catch((err) => {
      this.inputsReady = undefined;
      throw err;
    });
    return this.inputsReady;
  }

  /** Runs one attempt in `slot` and says how it ended; node errors are returned, not thrown. */
  async run(slot: number, a: Attempt, clock: Clock): Promise<TaskOutcome> {
    const t0 = clock.now();
    let containerId: string | undefined;
    let held: string | undefined;
    try {
      containerId = await this.container(slot);
      if (!this.job.freshContainer) {
        held = containerId;
        this.users.set(held, (this.users.get(held) ?? 0) + 1);
        this.current[slot] = held;
      }
      if (this.cancelled) throw new P2prcError("E_CONFLICT", "batch cancelled");
      const runtime = a.runtime === true && a.inputs.length === 0;
      const outputs = this.job.outputs ?? [];
      // the outputs come back in the task's reply (one call), from a node that knows the field
      const inReply = a.outDir !== undefined && outputs.length > 0 && !runtime && this.outputsInReply;
      const task = {
        command: a.command ?? this.job.command,
        env: a.env,
        timeoutSeconds: this.job.timeoutSeconds,
        inputs: a.inputs.map((i) => ({ name: i.name, digest: i.digest })),
        ...(inReply ? { outputs } : {}),
      };
      await this.ensureInputs(a.inputs);
      let r: TaskReply;
      try {
        r = await this.runOne(containerId, task, runtime);
      } catch (err) {
        if (inReply && isOutputsRefused(err)) {
          // an older node: the task without the field, and its outputs fetched one by one after it
          this.outputsInReply = false;
          const { outputs: _, ...plain } = task;
          r = await this.client.runTask(containerId, plain);
        } else {
          if (!isMissingInput(err)) throw err;
          // evicted from the node's cache since: sent again, once
          this.inputsReady = undefined;
          await this.ensureInputs(a.inputs);
          r = await this.client.runTask(containerId, task);
        }
      }
      for (const i of a.inputs) this.traffic.perTask += i.size;
      if (r.timedOut) {
        // the process may still run: this container is not reused (removed once no other task runs in it)
        this.retire(containerId);
        containerId = undefined;
        return { kind: "timedOut", seconds: this.job.timeoutSeconds };
      }
      a.onReply?.(r, containerId);
      const outDir = a.outDir;
      if (outDir === undefined)
        return { kind: "exited", exitCode: r.exitCode, durationMs: clock.now() - t0, missing: [] };
      if (r.outputs) checkReply(r, containerId, this.id);
      mkdirSync(outDir, { recursive: true });
      writeFileSync(join(outDir, "stdout"), r.stdout);
      writeFileSync(join(outDir, "stderr"), r.stderr);
      const missing: string[] = [];
      const carried = new Map((r.outputs ?? []).map((o) => [o.path, o]));
      for (const out of outputs) {
        if (!(await saveOutput(this.client, containerId, r.workingDir, out, carried.get(out), outDir)))
          missing.push(out);
      }
      return { kind: "exited", exitCode: r.exitCode, durationMs: clock.now() - t0, missing };
    } catch (error) {
      // its machine is gone (the node is not): the slot's next task gets a fresh container
      if (containerId && isLostContainer(error)) {
        await this.discard(containerId);
        containerId = undefined;
      } else if (containerId && this.discarded.has(containerId) && isNotFound(error)) {
        // another task found this container's machine lost and removed it while this one ran in it: lost
        // for this task too (run again in a fresh container), not the node refusing it
        return {
          kind: "error",
          error: new P2prcError("E_ENGINE_UNAVAILABLE", `container ${containerId.slice(0, 12)} was lost`, {
            field: "container",
            retryable: true,
            cause: error,
          }),
        };
      }
      return { kind: "error", error };
    } finally {
      if (containerId && this.job.freshContainer) await this.remove(containerId);
      if (held) {
        if (this.current[slot] === held) this.current[slot] = undefined;
        await this.release(held);
      }
    }
  }

  /** A task, or a future in the node's runtime (falling back to a task where the node lacks the route). */
  private async runOne(containerId: string, task: Parameters<NodeClient["runTask"]>[1], runtime: boolean) {
    if (runtime && this.runtimeRoute) {
      try {
        return await this.client.runFuture(containerId, task);
      } catch (err) {
        if (
          !(err instanceof P2prcError && err.code === "E_NOT_FOUND" && /\bno route POST /.test(err.message))
        )
          throw err;
        this.runtimeRoute = false;
      }
    }
    return this.client.runTask(containerId, task);
  }

  /**
   * Removes the warm containers, best effort (a node that refused may still answer; a dead one fails
   * fast), those still being made once they are. The node removes them behind its answer (an older node
   * before it): the batch does not wait for the engine's removals.
   */
  async cleanup(): Promise<void> {
    this.ending = true;
    const making = this.making.splice(0, this.making.length, ...this.making.map(() => undefined));
    await Promise.allSettled(making);
    const ids = this.pool.splice(0, this.pool.length, ...this.pool.map(() => undefined));
    // retired ones no attempt uses any more too (those in use go when their attempt ends)
    for (const id of this.retired) if (!this.users.has(id)) ids.push(id);
    for (const id of ids) if (id) this.retired.delete(id);
    await Promise.all(ids.map((id) => (id ? this.remove(id, true) : undefined)));
  }

  /** Removes the container of `slot` now (its running exec ends); the slot gets a fresh one next time. */
  async abort(slot: number): Promise<void> {
    const id = this.current[slot] ?? this.pool[slot];
    if (id) await this.discard(id);
  }

  /** The node's id when known (the target's, or its health answer's once a container was made). */
  get id(): string | undefined {
    return this.target.id ?? this.nodeId;
  }

  /** A cancel: nothing more runs here, and the warm containers go now (their running execs end). */
  async cancel(): Promise<void> {
    this.cancelled = true;
    await this.cleanup();
  }
}
