// Batch tasks faster than `docker exec`: a task runs through a task agent (agent.ts: a long-lived shell in
// the container fed tasks on its stdin), in a working directory made beforehand, so once the agent is up a
// task costs the engine nothing; its output files come back in the agent's answer too. Where no agent can
// run (no /bin/sh, every agent of the container busy, an env name the shell does not take) a task is one
// plain exec, as before. Directories come in runs (8, then 16, 32, up to 64 at once) made by one archive
// upload per run, each with the task's inputs hard-linked from the container's own copy of the node's
// cached file (`/p2prc-inputs/<digest>`, sent into the container once).
import { randomBytes } from "node:crypto";
import { type Clock, P2prcError, systemClock } from "../../core/index.ts";
import type { Caller } from "../caller.ts";
import type { ContainerService } from "../containers.ts";
import type { ContainerEngine, ExecResult } from "../engine/index.ts";
import { type StreamEntry, tarStream } from "../tar.ts";
import type { TaskRequest } from "../types.ts";
import type { AgentOutcome } from "./agent.ts";
import { AgentPool, type TaskStats } from "./agent-pool.ts";
import type { InputCache } from "./cache.ts";
import {
  baseName,
  collectOutputs,
  MAX_INLINE_OUTPUT_BYTES,
  outputPath,
  outputsFromRecords,
  type TaskOutput,
} from "./outputs.ts";

/** The parent of the task directories, and the container's copy of its inputs (paths without the `/`). */
const TASKS = "p2prc-task";
const INPUTS = "p2prc-inputs";
/** Directories made in one upload: the first run, then as many as made so far, up to the most. */
const FIRST_RUN = 8;
const MAX_RUN = 64;
/** The next run is started once this few (or a quarter of those made) are left. */
const PREFETCH_AT = 4;
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
  /** Times idle agents and tasks through them (default: the system clock). */
  clock?: Clock | undefined;
  /** The node's task agents (it closes them when it stops); default: the service's own. */
  agents?: AgentPool | undefined;
  /** Agents per container at most (default 16); 0: every task a plain exec. */
  maxAgentsPerContainer?: number | undefined;
  /** An idle agent is closed after this many ms (default 30 s). */
  agentIdleMs?: number | undefined;
}

/** One task, as run once in one directory. */
type Ran = ExecResult & { outputs?: TaskOutput[]; chdirFailed?: boolean };

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

  private readonly agents: AgentPool;
  private readonly clock: Clock;

  constructor(private readonly deps: TaskServiceDeps) {
    this.clock = deps.clock ?? systemClock;
    this.agents =
      deps.agents ??
      new AgentPool({
        engine: deps.engine,
        clock: this.clock,
        maxPerContainer: deps.maxAgentsPerContainer,
        idleMs: deps.agentIdleMs,
      });
  }

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
      let r: Ran;
      try {
        r = await this.runIn(rec.id, req, workingDir, opts);
      } catch (err) {
        this.prepared.delete(rec.id);
        throw err;
      }
      // the directory is gone (a task removed /p2prc-task): made again, once
      const chdir = r.chdirFailed || (r.exitCode === 126 && /chdir to cwd/.test(`${r.stdout}${r.stderr}`));
      if (attempt === 0 && chdir) {
        this.prepared.delete(rec.id);
        continue;
      }
      const { chdirFailed: _, outputs: carried, ...result } = r;
      if (req.outputs === undefined || r.timedOut) return { ...result, workingDir };
      const outputs = carried ?? (await collectOutputs(this.deps.engine, rec.id, workingDir, req.outputs));
      return { ...result, workingDir, outputs };
    }
  }

  /** How the node's tasks ran (through agents or plain execs). */
  stats(): TaskStats {
    return this.agents.stats();
  }

  /** Runs the task once in `workingDir`: through an agent when one is there for it, else one plain exec. */
  private async runIn(
    id: string,
    req: TaskRequest,
    workingDir: string,
    opts: { env?: Record<string, string> | undefined; timeoutMs: number; maxOutputBytes: number },
  ): Promise<Ran> {
    const agent = this.deps.maxAgentsPerContainer === 0 ? undefined : await this.agents.take(id);
    if (agent) {
      const full = (req.outputs ?? []).map((p) => outputPath(workingDir, p));
      let outcome: AgentOutcome | undefined;
      try {
        outcome = await agent.run(
          {
            workingDir,
            command: req.command,
            env: req.env,
            // a name the one-entry tar header cannot hold is read by the engine
            outputs: full.map((p) => (Buffer.byteLength(baseName(p)) <= 100 ? p : null)),
            cap: MAX_INLINE_OUTPUT_BYTES,
          },
          // the files' bytes up to the cap, with their record lines (64 outputs at most); past it the
          // node reads every output with the archive call
          { ...opts, recordsCap: MAX_INLINE_OUTPUT_BYTES + 64 * 128, clock: this.clock },
        );
      } finally {
        this.agents.give(id, agent);
      }
      if (outcome?.kind === "notRun" && agent.served <= 1) this.agents.disable(id);
      const r =
        outcome && outcome.kind !== "notRun" ? await this.fromAgent(id, req, workingDir, outcome) : undefined;
      if (r) {
        this.agents.counts.viaAgent++;
        return r;
      }
    }
    this.agents.counts.viaExec++;
    return this.deps.engine.exec(id, req.command, { ...opts, workingDir });
  }

  /** A task's result from its agent's answer (outputs the agent could not give read through the engine). */
  private async fromAgent(id: string, req: TaskRequest, workingDir: string, o: AgentOutcome): Promise<Ran> {
    const truncated = (t: boolean) => (t ? { truncated: true } : {});
    if (o.kind === "timedOut")
      return { exitCode: -1, stdout: o.stdout, stderr: o.stderr, timedOut: true, ...truncated(o.truncated) };
    if (o.kind === "ended")
      return { exitCode: o.exitCode, stdout: o.stdout, stderr: o.stderr, ...truncated(o.truncated) };
    if (o.kind !== "done") throw new Error("unreachable");
    const a = o.answer;
    const r: Ran = { exitCode: a.exitCode, stdout: a.stdout, stderr: a.stderr, ...truncated(a.truncated) };
    if (a.chdirFailed) return { ...r, chdirFailed: true };
    if (req.outputs !== undefined && a.records)
      r.outputs = await outputsFromRecords(this.deps.engine, id, workingDir, req.outputs, a.records);
    return r;
  }

  /** Forgets a removed or stopped container's directories and closes its agents. */
  forget(containerId: string): void {
    this.prepared.delete(containerId);
    this.agents.forget(containerId);
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
          if (dir) {
            this.prefetch(id, p, inputs);
            return dir;
          }
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

  /**
   * Starts the next run while the ready directories run low, so that tasks through agents (which cost the
   * engine nothing else) seldom wait for an upload. Only once the inputs are in the container: the run is
   * then tar headers alone, reading nothing from the cache (no lease needed).
   */
  private prefetch(id: string, p: Prepared, inputs: NonNullable<TaskRequest["inputs"]>): void {
    if (p.preparing || p.ready.length > Math.max(PREFETCH_AT, p.made >> 2)) return;
    if (!inputs.every((i) => p.placed.has(i.digest))) return;
    const run = this.prepare(id, p, inputs, new Map());
    p.preparing = run.finally(() => {
      p.preparing = undefined;
    });
    p.preparing.catch(() => undefined); // the next task that needs a directory makes them again
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
