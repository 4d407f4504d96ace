// Batch tasks at the speed of `docker exec`: a task is one exec in a working directory made beforehand.
// Directories come in runs (8, then 16, 32, up to 64 at once) made by one archive upload per run, each
// with the task's inputs hard-linked from the container's own copy of the node's cached file
// (`/p2prc-inputs/<digest>`, sent into the container once). So a task costs the engine one exec, as a
// `docker exec` does, plus a share of an upload made of tar headers.
import { randomBytes } from "node:crypto";
import { P2prcError } from "../../core/index.ts";
import type { Caller } from "../caller.ts";
import type { ContainerService } from "../containers.ts";
import type { ContainerEngine, ExecResult } from "../engine/index.ts";
import { type StreamEntry, tarStream } from "../tar.ts";
import type { TaskRequest } from "../types.ts";
import type { InputCache } from "./cache.ts";
import { collectOutputs, type TaskOutput } from "./outputs.ts";

/** The parent of the task directories, and the container's copy of its inputs (paths without the `/`). */
const TASKS = "p2prc-task";
const INPUTS = "p2prc-inputs";
/** Directories made in one upload: the first run, then as many as made so far, up to the most. */
const FIRST_RUN = 8;
const MAX_RUN = 64;
/** Containers whose prepared directories are remembered; the oldest are forgotten beyond it. */
const MAX_CONTAINERS = 4096;
/** Most bytes kept of each of stdout and stderr (as the exec route). */
const MAX_OUTPUT_BYTES = 8 * 1024 * 1024;

/**
 * What a task answers: the exec's result, the directory it ran in (outputs are relative to it) and, when
 * the request named outputs, each of them (a task that timed out has none).
 */
export type TaskResult = ExecResult & { workingDir: string; outputs?: TaskOutput[] };

export interface TaskServiceDeps {
  /** Whose container it is (a member reaches only its own). */
  containers: ContainerService;
  engine: ContainerEngine;
  /** Where the tasks' inputs come from. */
  cache: InputCache;
}

/** One container's prepared directories. */
interface Prepared {
  /** The inputs (names and digests) the ready directories hold. */
  signature: string;
  ready: string[];
  /** Directories made in this container by this node process (the next run's size follows it). */
  made: number;
  /** Digests copied into `/p2prc-inputs` already. */
  placed: Set<string>;
  preparing?: Promise<void> | undefined;
}

/** Runs batch tasks in a member's containers (`POST /v1/containers/:id/tasks`). */
export class TaskService {
  /** Names of this process's directories: a restarted node never hands out a used one. */
  private readonly boot = randomBytes(4).toString("hex");
  private readonly prepared = new Map<string, Prepared>();
  /** The next directory's number: unique in this process, so a directory made again never reuses a name. */
  private seq = 0;

  constructor(private readonly deps: TaskServiceDeps) {}

  async run(idOrName: string, caller: Caller, req: TaskRequest): Promise<TaskResult> {
    const rec = this.deps.containers.record(idOrName, caller);
    const inputs = req.inputs ?? [];
    const opts = {
      env: req.env,
      timeoutMs: (req.timeoutSeconds ?? 600) * 1000,
      maxOutputBytes: MAX_OUTPUT_BYTES,
    };
    for (let attempt = 0; ; attempt++) {
      const workingDir = await this.takeDir(rec.id, caller, inputs);
      let r: ExecResult;
      try {
        r = await this.deps.engine.exec(rec.id, req.command, { ...opts, workingDir });
      } catch (err) {
        this.prepared.delete(rec.id);
        throw err;
      }
      // the directory is gone (a task removed /p2prc-task): made again, once
      if (attempt === 0 && r.exitCode === 126 && /chdir to cwd/.test(`${r.stdout}${r.stderr}`)) {
        this.prepared.delete(rec.id);
        continue;
      }
      if (req.outputs === undefined || r.timedOut) return { ...r, workingDir };
      const outputs = await collectOutputs(this.deps.engine, rec.id, workingDir, req.outputs);
      return { ...r, workingDir, outputs };
    }
  }

  /** Forgets a removed container's directories. */
  forget(containerId: string): void {
    this.prepared.delete(containerId);
  }

  private async takeDir(id: string, caller: Caller, inputs: NonNullable<TaskRequest["inputs"]>) {
    const signature = JSON.stringify(inputs.map((i) => [i.name, i.digest]));
    // the files are checked (and counted as served) for every task, so an owner's eviction shows at once
    const lease = this.deps.cache.use(
      caller.id,
      inputs.map((i) => i.digest),
    );
    let failed = false;
    try {
      for (;;) {
        let p = this.prepared.get(id);
        if (!p) {
          p = { signature, ready: [], made: 0, placed: new Set() };
          this.prepared.set(id, p);
          if (this.prepared.size > MAX_CONTAINERS) {
            const oldest = this.prepared.keys().next().value;
            if (oldest !== undefined) this.prepared.delete(oldest);
          }
        }
        if (p.signature !== signature && !p.preparing) {
          p.signature = signature;
          p.ready = [];
        }
        if (p.signature === signature) {
          const dir = p.ready.shift();
          if (dir) return dir;
        }
        if (!p.preparing) {
          const run = this.prepare(id, p, inputs, lease.files);
          p.preparing = run.finally(() => {
            if (p) p.preparing = undefined;
          });
        }
        try {
          await p.preparing;
        } catch (err) {
          // an earlier task removed the container's input copy (a link to it fails): all made again, once
          if (failed) throw err;
          failed = true;
        }
      }
    } finally {
      lease.release();
    }
  }

  /** Makes the next run of directories in one upload (the inputs' content only the first time). */
  private async prepare(
    id: string,
    p: Prepared,
    inputs: NonNullable<TaskRequest["inputs"]>,
    files: Map<string, { path: string; size: number }>,
  ): Promise<void> {
    const count = Math.min(MAX_RUN, Math.max(FIRST_RUN, p.made));
    const entries: StreamEntry[] = [];
    if (p.made === 0) {
      // root-owned, world-writable: tasks may run as the image's own user, and root has no
      // DAC_OVERRIDE in a p2prc container
      entries.push({ kind: "dir", path: TASKS, mode: 0o1777 }, { kind: "dir", path: INPUTS, mode: 0o755 });
    }
    for (const [digest, f] of files) {
      if (p.placed.has(digest)) continue;
      // read-only for everyone: a task cannot change what its siblings read through their links
      entries.push({ kind: "file", path: `${INPUTS}/${digest}`, mode: 0o444, source: f.path, size: f.size });
    }
    const dirs: string[] = [];
    for (let k = 0; k < count; k++) {
      const dir = `${TASKS}/${this.boot}-${this.seq++}`;
      dirs.push(`/${dir}`);
      entries.push({ kind: "dir", path: dir, mode: 0o777 });
      for (const i of inputs)
        entries.push({
          kind: "link",
          path: `${dir}/${i.name}`,
          mode: 0o444,
          target: `${INPUTS}/${i.digest}`,
        });
    }
    try {
      await this.deps.engine.putArchive(id, "/", tarStream(entries));
    } catch (err) {
      this.prepared.delete(id);
      throw err instanceof P2prcError ? err : new P2prcError("E_ENGINE", `prepare task directories: ${err}`);
    }
    for (const d of files.keys()) p.placed.add(d);
    p.made += count;
    p.ready.push(...dirs);
  }
}
