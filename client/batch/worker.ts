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
import { isLeaseRefused, isLostContainer, isMissingPath, type TaskOutcome } from "./scheduler.ts";
import { extractTar } from "./untar.ts";

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
}

/** A node's side of a batch: one warm container per slot (or a fresh one per task). */
export class NodeWorker {
  readonly client: NodeClient;
  readonly label: string;
  private readonly pool: (string | undefined)[];
  /** False once the node answered that it has no future runtime route (an older p2prc): tasks then. */
  private runtimeRoute = true;
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

  /** Removes a container; it stops being tracked once its node says it is gone. */
  private async remove(id: string): Promise<void> {
    try {
      await this.client.removeContainer(id);
      this.deps.tracking.untrack(id);
    } catch (err) {
      // gone already: untracked; a node that does not answer: it stays tracked (--tc shows it
      // unreachable) until its lease ends
      if (err instanceof P2prcError && err.code === "E_NOT_FOUND") this.deps.tracking.untrack(id);
    }
  }

  private async container(slot: number): Promise<string> {
    if (this.job.freshContainer) return this.newContainer();
    this.pool[slot] ??= await this.newContainer();
    return this.pool[slot] as string;
  }

  /** Drops a slot's container (after a timeout); the slot gets a fresh one for its next task. */
  private async discard(slot: number): Promise<void> {
    const id = this.pool[slot];
    this.pool[slot] = undefined;
    if (id) await this.remove(id);
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
    try {
      containerId = await this.container(slot);
      if (this.cancelled) throw new P2prcError("E_CONFLICT", "batch cancelled");
      const task = {
        command: a.command ?? this.job.command,
        env: a.env,
        timeoutSeconds: this.job.timeoutSeconds,
        inputs: a.inputs.map((i) => ({ name: i.name, digest: i.digest })),
      };
      await this.ensureInputs(a.inputs);
      let r: TaskReply;
      try {
        r = await this.runOne(containerId, task, a.runtime === true && a.inputs.length === 0);
      } catch (err) {
        if (!isMissingInput(err)) throw err;
        // evicted from the node's cache since: sent again, once
        this.inputsReady = undefined;
        await this.ensureInputs(a.inputs);
        r = await this.client.runTask(containerId, task);
      }
      for (const i of a.inputs) this.traffic.perTask += i.size;
      if (r.timedOut) {
        // the process may still run: this container is not reused
        await this.discard(slot);
        containerId = undefined;
        return { kind: "timedOut", seconds: this.job.timeoutSeconds };
      }
      a.onReply?.(r, containerId);
      const outDir = a.outDir;
      if (outDir === undefined)
        return { kind: "exited", exitCode: r.exitCode, durationMs: clock.now() - t0, missing: [] };
      mkdirSync(outDir, { recursive: true });
      writeFileSync(join(outDir, "stdout"), r.stdout);
      writeFileSync(join(outDir, "stderr"), r.stderr);
      const missing: string[] = [];
      for (const out of this.job.outputs ?? []) {
        const path = out.startsWith("/") ? out : `${r.workingDir}/${out}`;
        if (!(await this.fetchOutput(containerId, path, outDir))) missing.push(out);
      }
      return { kind: "exited", exitCode: r.exitCode, durationMs: clock.now() - t0, missing };
    } catch (error) {
      // its machine is gone (the node is not): the slot's next task gets a fresh container
      if (containerId && isLostContainer(error)) {
        await this.discard(slot);
        containerId = undefined;
      }
      return { kind: "error", error };
    } finally {
      if (containerId && this.job.freshContainer) await this.remove(containerId);
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

  /** Streams `path` out of the container into `outDir`; false when the node says the path is not there. */
  private async fetchOutput(containerId: string, path: string, outDir: string): Promise<boolean> {
    let tar: ReadableStream<Uint8Array>;
    try {
      tar = await this.client.getFilesStream(containerId, path);
    } catch (err) {
      if (isMissingPath(err)) return false;
      throw err;
    }
    await extractTar(tar, outDir);
    return true;
  }

  /** Removes the warm containers, best effort (a node that refused may still answer; a dead one fails fast). */
  async cleanup(): Promise<void> {
    const ids = this.pool.splice(0, this.pool.length, ...this.pool.map(() => undefined));
    await Promise.all(ids.map((id) => (id ? this.remove(id) : undefined)));
  }

  /** Removes the container of `slot` now (its running exec ends); the slot gets a fresh one next time. */
  async abort(slot: number): Promise<void> {
    await this.discard(slot);
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
