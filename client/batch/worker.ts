// The I/O of one node in a batch: its warm containers, and one attempt of a task there (files in, exec,
// stdout/stderr and outputs back). It decides nothing: it reports how the attempt ended (scheduler.ts).
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { createTar, parseTar } from "nanotar";
import { type Clock, P2prcError } from "../../core/index.ts";
import type { ClientDeps } from "../containers.ts";
import { type CreatedContainer, connect, type NodeClient } from "../node-client.ts";
import type { NodeTarget } from "../resolve.ts";
import type { Job } from "./job.ts";
import { isLeaseRefused, isMissingPath, type TaskOutcome } from "./scheduler.ts";

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

/** One task's attempt as the worker runs it. */
export interface Attempt {
  index: number;
  attempt: number;
  env: Record<string, string>;
  inputs: { name: string; data: Uint8Array }[];
  /** The task's own output directory on this machine. */
  outDir: string;
}

/** A node's side of a batch: one warm container per slot (or a fresh one per task). */
export class NodeWorker {
  readonly client: NodeClient;
  readonly label: string;
  private readonly pool: (string | undefined)[];
  /** Set by cancel(): an attempt that gets its container after it runs nothing. */
  private cancelled = false;

  /** The node's id, for tracking: the target's, or its health answer's (a host:port target). */
  private nodeId: string | undefined;

  constructor(
    readonly target: NodeTarget,
    readonly slots: number,
    private readonly job: Job,
    private readonly ttlSeconds: number,
    private readonly deps: ClientDeps,
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

  /** Runs one attempt in `slot` and says how it ended; node errors are returned, not thrown. */
  async run(slot: number, a: Attempt, clock: Clock): Promise<TaskOutcome> {
    const t0 = clock.now();
    let containerId: string | undefined;
    try {
      containerId = await this.container(slot);
      if (this.cancelled) throw new P2prcError("E_CONFLICT", "batch cancelled");
      const dir = `/p2prc-task/${a.index}-${a.attempt}`;
      await this.client.putFiles(
        containerId,
        "/",
        createTar([
          // root-owned and world-writable: tasks may run as the image's own user, and root has no
          // DAC_OVERRIDE in a p2prc container
          { name: "p2prc-task/", attrs: { mode: "1777", uid: 0, gid: 0 } },
          { name: `${dir.slice(1)}/`, attrs: { mode: "777", uid: 0, gid: 0 } },
          ...a.inputs.map((f) => ({
            name: `${dir.slice(1)}/${f.name}`,
            data: f.data,
            attrs: { mode: "644", uid: 0, gid: 0 },
          })),
        ]),
      );
      const r = await this.client.exec(containerId, this.job.command, {
        env: a.env,
        workingDir: dir,
        timeoutSeconds: this.job.timeoutSeconds,
      });
      if (r.timedOut) {
        // the process may still run: this container is not reused
        await this.discard(slot);
        containerId = undefined;
        return { kind: "timedOut", seconds: this.job.timeoutSeconds };
      }
      mkdirSync(a.outDir, { recursive: true });
      writeFileSync(join(a.outDir, "stdout"), r.stdout);
      writeFileSync(join(a.outDir, "stderr"), r.stderr);
      const missing: string[] = [];
      for (const out of this.job.outputs ?? []) {
        if (!(await this.fetchOutput(containerId, out.startsWith("/") ? out : `${dir}/${out}`, a.outDir)))
          missing.push(out);
      }
      return { kind: "exited", exitCode: r.exitCode, durationMs: clock.now() - t0, missing };
    } catch (error) {
      return { kind: "error", error };
    } finally {
      if (containerId && this.job.freshContainer) await this.remove(containerId);
    }
  }

  /** Copies `path` out of the container into `outDir`; false when the node says the path is not there. */
  private async fetchOutput(containerId: string, path: string, outDir: string): Promise<boolean> {
    let tar: Uint8Array;
    try {
      tar = await this.client.getFiles(containerId, path);
    } catch (err) {
      if (isMissingPath(err)) return false;
      throw err;
    }
    for (const entry of parseTar(tar.slice())) {
      const target = safeJoin(outDir, entry.name);
      if (!target || entry.type !== "file" || !entry.data) continue;
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, entry.data);
    }
    return true;
  }

  /** Removes the warm containers, best effort (a node that refused may still answer; a dead one fails fast). */
  async cleanup(): Promise<void> {
    const ids = this.pool.splice(0, this.pool.length, ...this.pool.map(() => undefined));
    await Promise.all(ids.map((id) => (id ? this.remove(id) : undefined)));
  }

  /** A cancel: nothing more runs here, and the warm containers go now (their running execs end). */
  async cancel(): Promise<void> {
    this.cancelled = true;
    await this.cleanup();
  }
}
