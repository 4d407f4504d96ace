// The node's long-lived future runtimes (`POST /v1/containers/:id/futures/run`): one runtime process per
// warm futures container (future-runtime-loop.ts), started once through the engine's interactive exec and
// fed one future's program at a time through its stdin, so a future costs no exec. The answer has the
// shape of a batch task's (exit code, stdout, stderr, timed out), so the route signs it the same way and
// the caller reads it the same way. A runtime is started again when it died (a future called
// process.exit, or it was killed for memory), killed and dropped when a future times out (the next one
// gets a fresh process), and gone with its container (its exec's stream ends).
import { randomBytes } from "node:crypto";
import { type Clock, FrameDemuxer, P2prcError, RUNTIME_BIN } from "../core/index.ts";
import type { Caller } from "./caller.ts";
import type { ContainerService } from "./containers.ts";
import type { ContainerEngine, ExecResult, ExecSession } from "./engine/index.ts";
import { RUNTIME_LOOP, RUNTIME_MARKER } from "./future-runtime-loop.ts";
import type { TaskRequest } from "./types.ts";

/** Most characters of a runtime's output kept while one future runs (its answer line included). */
const MAX_OUTPUT_CHARS = 12 * 1024 * 1024;

export interface FutureRuntimesDeps {
  /** Whose container it is (a member reaches only its own). */
  containers: Pick<ContainerService, "record">;
  engine: Pick<ContainerEngine, "openExec" | "exec">;
  clock: Clock;
  /**
   * Futures one runtime process answers before it is retired (its stdin closed: it exits) and the next
   * future gets a fresh one. Each future is a module the process keeps; this bounds what they hold. Default 1000.
   */
  maxRunsPerRuntime?: number;
  /** Most characters of a runtime's output kept while one future runs; beyond it the runtime is killed. */
  maxOutputChars?: number;
}

/** How often runtimes ran futures, were started, died and timed out (GET /v1/futures/stats). */
export interface FutureRuntimeStats {
  /** Futures answered by a runtime (no exec each). */
  runs: number;
  /** Runtime processes started (one interactive exec each). */
  starts: number;
  /** Runtimes found dead (their stream ended) while or before a future ran. */
  deaths: number;
  /** Futures that ran past their timeout (their runtime was killed). */
  timeouts: number;
  /** Runtimes alive now. */
  alive: number;
}

/** A future's answer: a task's shape, run in the runtime's working directory. */
export type FutureRunResult = ExecResult & { workingDir: string };

interface Pending {
  id: string;
  resolve: (r: ExecResult) => void;
}

/** One runtime process and what it printed so far. */
interface Runtime {
  session: ExecSession;
  pid: number | undefined;
  out: string;
  err: string;
  dead: boolean;
  pending: Pending | undefined;
  /** Futures it answered. */
  served: number;
}

/** The runtimes of a node's futures containers, one per container. */
export class FutureRuntimes {
  private readonly runtimes = new Map<string, Runtime>();
  /** Each container's queue: one future at a time per runtime. */
  private readonly turns = new Map<string, Promise<unknown>>();
  private readonly counts = { runs: 0, starts: 0, deaths: 0, timeouts: 0 };

  constructor(private readonly deps: FutureRuntimesDeps) {}

  /** Runs a future's program (`command` = [p2prc, "-e", program], no inputs) in the container's runtime. */
  async run(idOrName: string, caller: Caller, req: TaskRequest): Promise<FutureRunResult> {
    const rec = this.deps.containers.record(idOrName, caller);
    const [bin, flag, program, ...rest] = req.command;
    if (bin !== RUNTIME_BIN || flag !== "-e" || program === undefined || rest.length > 0)
      throw new P2prcError("E_INVALID", `command: a future runtime runs ["${RUNTIME_BIN}", "-e", program]`, {
        field: "command",
      });
    if ((req.inputs ?? []).length > 0)
      throw new P2prcError("E_INVALID", "inputs: a future runtime takes none (use the tasks route)", {
        field: "inputs",
      });
    const timeoutMs = (req.timeoutSeconds ?? 600) * 1000;
    const prev = this.turns.get(rec.id) ?? Promise.resolve();
    const turn = prev.then(() => this.runOne(rec.id, program, req.env ?? {}, timeoutMs));
    const settled = turn.catch(() => {});
    this.turns.set(rec.id, settled);
    settled.then(() => {
      if (this.turns.get(rec.id) === settled) this.turns.delete(rec.id);
    });
    return { ...(await turn), workingDir: "/tmp" };
  }

  private async runOne(
    id: string,
    program: string,
    env: Record<string, string>,
    timeoutMs: number,
  ): Promise<ExecResult> {
    let rt = this.runtimes.get(id);
    if (rt?.dead) {
      this.runtimes.delete(id);
      rt = undefined;
    }
    rt ??= await this.start(id);
    const reqId = randomBytes(12).toString("hex");
    const body = Buffer.from(JSON.stringify({ id: reqId, program, env }));
    const frame = Buffer.alloc(4 + body.length);
    frame.writeUInt32BE(body.length, 0);
    body.copy(frame, 4);
    const runtime = rt;
    const answer = new Promise<ExecResult>((resolve) => {
      runtime.pending = { id: reqId, resolve };
    });
    const cancel = this.deps.clock.setTimeout(() => {
      this.counts.timeouts++;
      this.answer(runtime, { exitCode: -1, stdout: runtime.out, stderr: runtime.err, timedOut: true });
      this.kill(id, runtime);
    }, timeoutMs);
    try {
      await runtime.session.write(frame);
    } catch {
      // its stdin is closed: the runtime died; its stream's end answers
    }
    this.scan(runtime);
    try {
      return await answer;
    } finally {
      cancel();
      if (++runtime.served >= (this.deps.maxRunsPerRuntime ?? 1000) && !runtime.dead)
        this.retire(id, runtime);
    }
  }

  /** Starts the container's runtime: one interactive exec, read until its stream ends. */
  private async start(id: string): Promise<Runtime> {
    const session = await this.deps.engine.openExec(id, [RUNTIME_BIN, "-e", RUNTIME_LOOP], { tty: false });
    this.counts.starts++;
    const rt: Runtime = {
      session,
      pid: undefined,
      out: "",
      err: "",
      dead: false,
      pending: undefined,
      served: 0,
    };
    this.runtimes.set(id, rt);
    void this.read(id, rt);
    return rt;
  }

  private async read(id: string, rt: Runtime): Promise<void> {
    const demux = new FrameDemuxer();
    const decoders = [new TextDecoder(), new TextDecoder()];
    try {
      for await (const chunk of rt.session.output) {
        for (const p of demux.push(chunk)) {
          const text = (decoders[p.stream === 2 ? 1 : 0] as TextDecoder).decode(p.data, { stream: true });
          if (p.stream === 2) rt.err += text;
          else rt.out += text;
        }
        this.scan(rt);
        // too much output (a future's, or a timer's it left running between futures): killed
        const max = this.deps.maxOutputChars ?? MAX_OUTPUT_CHARS;
        if (rt.out.length + rt.err.length > max) {
          rt.err += `\nfuture runtime: the output passed ${max} characters (killed)\n`;
          this.answer(rt, { exitCode: -1, stdout: rt.out, stderr: rt.err, truncated: true });
          this.kill(id, rt);
          break;
        }
      }
    } catch {
      // the engine's stream broke: the runtime is gone as far as the node can tell
    }
    rt.dead = true;
    if (this.runtimes.get(id) === rt) this.runtimes.delete(id);
    if (rt.pending) {
      this.counts.deaths++;
      const code = (await rt.session.exitCode().catch(() => undefined)) ?? 137;
      this.answer(rt, { exitCode: code, stdout: rt.out, stderr: rt.err });
    }
  }

  /** Reads the ready line and the pending future's answer out of what the runtime printed. */
  private scan(rt: Runtime): void {
    const ready = `\n${RUNTIME_MARKER}ready:`;
    const at = rt.out.indexOf(ready);
    if (rt.pid === undefined && at >= 0) {
      const end = rt.out.indexOf("\n", at + ready.length);
      if (end < 0) return;
      rt.pid = Number(rt.out.slice(at + ready.length, end));
      rt.out = rt.out.slice(0, at) + rt.out.slice(end + 1);
    }
    const p = rt.pending;
    if (!p) return;
    const mark = `\n${RUNTIME_MARKER}${p.id}:`;
    const m = rt.out.indexOf(mark);
    if (m < 0) return;
    const end = rt.out.indexOf("\n", m + mark.length);
    if (end < 0) return;
    const stray = rt.out.slice(0, m);
    const line = rt.out.slice(m + mark.length, end);
    rt.out = rt.out.slice(end + 1);
    const errText = rt.err;
    rt.err = "";
    try {
      const r = JSON.parse(Buffer.from(line, "base64").toString("utf8")) as ExecResult;
      this.counts.runs++;
      this.answer(rt, { exitCode: r.exitCode, stdout: stray + r.stdout, stderr: errText + r.stderr });
    } catch {
      this.answer(rt, {
        exitCode: 1,
        stdout: stray,
        stderr: `${errText}future runtime: an unreadable answer\n`,
      });
    }
  }

  private answer(rt: Runtime, r: ExecResult): void {
    const p = rt.pending;
    rt.pending = undefined;
    p?.resolve(r);
  }

  /** Retires a runtime that served its share: its stdin ends, so it exits; the next future starts another. */
  private retire(id: string, rt: Runtime): void {
    rt.dead = true;
    if (this.runtimes.get(id) === rt) this.runtimes.delete(id);
    rt.session.endInput();
  }

  /** Kills a runtime (a future ran too long): its process ends, the next future gets a fresh one. */
  private kill(id: string, rt: Runtime): void {
    rt.dead = true;
    if (this.runtimes.get(id) === rt) this.runtimes.delete(id);
    rt.session.close();
    if (rt.pid !== undefined)
      this.deps.engine
        .exec(id, [RUNTIME_BIN, "-e", `process.kill(${rt.pid}, 9)`], { timeoutMs: 30_000 })
        .catch(() => {});
  }

  /** The counters, for the stats route and tests. */
  stats(): FutureRuntimeStats {
    return { ...this.counts, alive: this.runtimes.size };
  }

  /** Closes every runtime's stream (the node stops). */
  closeAll(): void {
    for (const rt of this.runtimes.values()) {
      rt.dead = true;
      rt.session.close();
    }
    this.runtimes.clear();
  }
}
