// Futures (Docs/Futures.md): `cluster.future(fn, args)` runs `fn(...args)` on a node of the caller's
// clusters and `value()` brings back what it returned, or throws what it threw. Each shape of future (cpus,
// memory, timeout, node) is a lane of the batch runner's machinery (lane.ts); this file turns functions
// into tasks and task replies into values.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { P2prcError, RUNTIME_BIN, RUNTIME_IMAGE, RUNTIME_KEEP_ALIVE } from "../../core/index.ts";
import type { Job } from "../batch/job.ts";
import type { BatchInput } from "../batch/worker.ts";
import type { ClientDeps } from "../containers.ts";
import type { NodeTarget } from "../resolve.ts";
import { buildProgram } from "./bundle.ts";
import { checkClosures } from "./closures.ts";
import { FutureCancelledError, FutureError } from "./errors.ts";
import { Lane, type LaneTask } from "./lane.ts";
import { encodeArgs, type LogLine, type RemoteOutcome, readReply, verifyReply } from "./program.ts";

/** Longest program or argument text sent inline (argv / env); larger ones go through the node's input cache. */
const INLINE_MAX = 60_000;

/** Where and how futures run; every field is a default a future may override. */
export interface FutureOptions {
  /** Cores of each warm container (the node's default when unset). */
  cpus?: number;
  memoryMb?: number;
  /** Most time one attempt may run (rounded up to seconds; default 600 s). */
  timeoutMs?: number;
  /** A node reference (id, prefix, name, host:port); default: any node of the cluster ("auto"). */
  node?: string;
  /** How often a future whose node died, became unreachable or timed out runs again elsewhere (default 2). */
  retries?: number;
  /** Modules the function may use, by the name it uses: `{ pako: "pako", zlib: "node:zlib" }`. */
  imports?: Record<string, string>;
}

/** A cluster's own settings. */
export interface ClusterOptions extends FutureOptions {
  /** Futures at once on one node (never more than its free capacity; default 4). */
  maxPerNode?: number;
  /** The warm containers' lease in seconds (default 3600); they are removed at close() before that. */
  leaseSeconds?: number;
  /** Where `imports` are resolved from (default: the working directory). */
  baseDir?: string;
  /** Replay what functions printed when their value() is first read (default true). */
  replay?: boolean;
}

/** What a cluster needs from the client: its deps, and the nodes a reference names ("auto": every live one). */
export interface FutureClusterDeps {
  client: ClientDeps;
  nodes: (ref: string) => NodeTarget[];
  /** Called last by close() (the composition root releases the store it opened). */
  onClose?: () => Promise<void>;
}

export type FutureState = "queued" | "running" | "done" | "failed" | "cancelled";

/** What `p2prc run` brings back: the script's output and exit code, and the node that ran it. */
export interface ScriptResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  node: string;
}

type Settled = { ok: true; value: unknown } | { ok: false; error: Error };

/** A function running (or queued to run) on a node of the cluster. */
export class Future<T = unknown> {
  /** queued, running (on `node`), done, failed or cancelled. */
  state: FutureState = "queued";
  /** The node it runs or ran on (its name, or its URL). */
  node: string | undefined;
  private settled: Settled | undefined;
  private readonly done: Promise<Settled>;
  private finish: (s: Settled) => void = () => {};
  private logs: LogLine[] = [];
  private stdout = "";
  private replayed = false;
  /** Set once submitted: cancels it in its lane. */
  cancelRemote: (() => Promise<void>) | undefined;

  constructor(
    readonly id: string,
    private readonly replay: boolean,
  ) {
    this.done = new Promise<Settled>((r) => {
      this.finish = r;
    });
  }

  /** Settles it, once: later calls (a late reply after a cancel) change nothing. */
  settle(s: Settled, state: FutureState, output?: { logs: LogLine[]; stdout: string }): void {
    if (this.settled) return;
    this.settled = s;
    this.state = state;
    if (output) {
      this.logs = output.logs;
      this.stdout = output.stdout;
    }
    this.finish(s);
  }

  /** Whether value() would answer at once. */
  resolved(): boolean {
    return this.settled !== undefined;
  }

  /**
   * The function's return value; throws what it threw (a FutureError with the remote name, message and
   * stack), a FutureCancelledError after cancel(), or a P2prcError when no node could run it. What the
   * function printed is replayed here the first time.
   */
  async value(): Promise<T> {
    const s = await this.done;
    if (this.replay && !this.replayed) {
      this.replayed = true;
      if (this.stdout.trim())
        process.stdout.write(this.stdout.endsWith("\n") ? this.stdout : `${this.stdout}\n`);
      for (const l of this.logs) console[l.level](l.text);
    }
    if (!s.ok) throw s.error;
    return s.value as T;
  }

  /** What the function printed through console, as captured on the node (empty until it is done). */
  output(): LogLine[] {
    return [...this.logs];
  }

  /** Stops it: a queued future never runs, a running one's container is removed; value() throws. */
  async cancel(): Promise<void> {
    if (this.settled) return;
    this.settle({ ok: false, error: new FutureCancelledError(this.id) }, "cancelled");
    await this.cancelRemote?.();
  }
}

/** The caller's side of futures: lanes of warm runtime containers on the cluster's nodes. */
export class FutureCluster {
  private readonly lanes = new Map<string, Lane>();
  private readonly dir = mkdtempSync(join(tmpdir(), "p2prc-futures-"));
  private seq = 0;
  private closed = false;

  constructor(
    private readonly deps: FutureClusterDeps,
    private readonly options: ClusterOptions = {},
  ) {}

  /** Runs `fn(...args)` on a node; the arguments travel as a structured clone, the function as source. */
  future<A extends unknown[], R>(
    fn: (...args: A) => R | Promise<R>,
    args: A = [] as unknown as A,
    o: FutureOptions = {},
  ): Future<Awaited<R>> {
    if (this.closed) throw new P2prcError("E_CONFLICT", "future: the cluster is closed");
    if (typeof fn !== "function")
      throw new P2prcError("E_INVALID", "future: fn must be a function", { field: "fn" });
    const opts = { ...this.options, ...o, imports: { ...this.options.imports, ...o.imports } };
    const f = new Future<Awaited<R>>(`f${++this.seq}`, this.options.replay ?? true);
    const source = fn.toString();
    const encoded = encodeArgs(args);
    this.submit(f, source, encoded, opts).catch((error: Error) => f.settle({ ok: false, error }, "failed"));
    return f;
  }

  /**
   * `fn(item, index)` for every item, as futures, at most `concurrency` at once (default: as many as the
   * nodes' slots take); the values in the items' order. The first failure cancels the rest and is thrown.
   */
  async map<T, R>(
    items: readonly T[],
    fn: (item: T, index: number) => R | Promise<R>,
    o: FutureOptions & { concurrency?: number } = {},
  ): Promise<Awaited<R>[]> {
    const out: Awaited<R>[] = new Array(items.length);
    const limit = Math.max(1, o.concurrency ?? items.length);
    const running: Future<Awaited<R>>[] = [];
    let next = 0;
    let failed: unknown;
    const worker = async () => {
      while (next < items.length && failed === undefined) {
        const i = next++;
        const f = this.future(fn as (item: T, index: number) => R, [items[i] as T, i], o);
        running.push(f);
        try {
          out[i] = await f.value();
        } catch (err) {
          failed ??= err;
          await Promise.all(running.map((r) => r.cancel()));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
    if (failed !== undefined) throw failed;
    return out;
  }

  /**
   * `p2prc run`: a script file bundled with what it imports (Bun.build) and run as `p2prc script.mjs args…`
   * on a node of the cluster; its stdout, stderr and exit code come back (signed by the node).
   */
  async runScript(path: string, args: string[] = [], o: FutureOptions = {}): Promise<ScriptResult> {
    if (this.closed) throw new P2prcError("E_CONFLICT", "run: the cluster is closed");
    let text: string | undefined;
    try {
      const out = await Bun.build({ entrypoints: [path], target: "bun", format: "esm" });
      text = out.success ? await out.outputs[0]?.text() : undefined;
    } catch (err) {
      throw new P2prcError("E_INVALID", `run: cannot bundle ${path}: ${(err as Error).message}`, {
        field: "script",
      });
    }
    if (text === undefined)
      throw new P2prcError("E_INVALID", `run: cannot bundle ${path}`, { field: "script" });
    const input = this.payload("script.mjs", text);
    const lane = this.lane({ ...this.options, ...o });
    return new Promise<ScriptResult>((resolve, reject) => {
      let reply: ScriptResult | Error | undefined;
      lane.submit({
        attempt: () => ({ command: [RUNTIME_BIN, input.name, ...args], env: {}, inputs: [input] }),
        reply: (r, containerId, node) => {
          try {
            verifyReply({ ...r, containerId }, node.id);
            reply = { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, node: node.label };
          } catch (err) {
            reply = err as Error;
          }
        },
        settle: (end) => {
          if (reply instanceof Error) reject(reply);
          else if (reply) resolve(reply);
          else reject(new P2prcError("E_NODE_UNREACHABLE", `run: ${end.error ?? "no node could run it"}`));
        },
      });
    });
  }

  private async submit(
    f: Future,
    source: string,
    encoded: string,
    o: ClusterOptions & { imports: Record<string, string> },
  ): Promise<void> {
    try {
      new Function(`return (${source}\n);`);
    } catch (err) {
      throw new P2prcError(
        "E_INVALID",
        `future: fn's source is not a function expression (${(err as Error).message}); a method shorthand cannot be sent, write it as a function or an arrow`,
        { field: "fn" },
      );
    }
    await checkClosures(source, Object.keys(o.imports));
    const program = await buildProgram(source, o.imports, o.baseDir);
    if (f.resolved()) return; // cancelled meanwhile
    const codeInput = program.length > INLINE_MAX ? this.payload("future.mjs", program) : undefined;
    const argsInput = encoded.length > INLINE_MAX ? this.payload("args.bin", encoded) : undefined;
    const lane = this.lane(o);
    let output: (RemoteOutcome & { stdout: string }) | Error | undefined;
    let nonce = "";
    const task: LaneTask = {
      attempt: () => {
        nonce = randomBytes(12).toString("hex");
        output = undefined;
        return {
          command: codeInput ? [RUNTIME_BIN, codeInput.name] : [RUNTIME_BIN, "-e", program],
          env: { P2PRC_FUTURE_NONCE: nonce, ...(argsInput ? {} : { P2PRC_FUTURE_ARGS: encoded }) },
          inputs: [...(codeInput ? [codeInput] : []), ...(argsInput ? [argsInput] : [])],
          // inline program and arguments: the node's long-lived runtime runs it, without an exec
          runtime: !codeInput && !argsInput,
        };
      },
      started: (node) => {
        f.state = "running";
        f.node = node;
      },
      reply: (r, containerId, node) => {
        try {
          output = readReply({ ...r, containerId }, node.id, nonce);
        } catch (err) {
          output = err as Error;
        }
      },
      settle: (end) => {
        f.node = end.node || f.node;
        if (end.state === "failed" || output === undefined) {
          // the scheduler names the lane's task; the caller knows the future
          const why = (end.error ?? "no node could run it").replace(/^task \d+ /, "");
          const error =
            output instanceof Error
              ? output
              : new P2prcError(end.closed ? "E_CONFLICT" : "E_NODE_UNREACHABLE", `future ${f.id}: ${why}`);
          f.settle({ ok: false, error }, "failed");
        } else if (output instanceof Error) f.settle({ ok: false, error: output }, "failed");
        else if (output.ok) f.settle({ ok: true, value: output.value }, "done", output);
        else f.settle({ ok: false, error: new FutureError(output.error, end.node) }, "failed", output);
      },
    };
    const index = lane.submit(task);
    f.cancelRemote = () => lane.cancel(index);
  }

  /** A large program or argument text as an input file of the node's cache (uploaded once per node). */
  private payload(name: string, text: string): BatchInput {
    const digest = createHash("sha256").update(text).digest("hex");
    const path = join(this.dir, digest);
    writeFileSync(path, text);
    return { name, path, size: Buffer.byteLength(text), digest };
  }

  private lane(o: ClusterOptions): Lane {
    const timeoutSeconds = Math.max(1, Math.ceil((o.timeoutMs ?? 600_000) / 1000));
    const key = JSON.stringify([o.cpus, o.memoryMb, timeoutSeconds, o.retries, o.node ?? "auto"]);
    let lane = this.lanes.get(key);
    if (!lane) {
      const job: Job = {
        image: RUNTIME_IMAGE,
        command: [RUNTIME_BIN],
        tasks: 1,
        cpus: o.cpus,
        memoryMb: o.memoryMb,
        timeoutSeconds,
        retries: o.retries ?? 2,
        retryOnFailure: false,
        freshContainer: false,
        maxPerNode: this.options.maxPerNode ?? 4,
      };
      const targets = this.deps.nodes(o.node ?? "auto");
      if (targets.length === 0)
        throw new P2prcError("E_NOT_FOUND", "future: no node to run it on", {
          hint: "add nodes with --as host:port, join a cluster, or pass nodes",
        });
      lane = new Lane(targets, job, this.deps.client, RUNTIME_KEEP_ALIVE, this.options.leaseSeconds ?? 3600);
      this.lanes.set(key, lane);
    }
    return lane;
  }

  /** Cancels what is left, removes the warm containers and the local scratch files. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await Promise.all([...this.lanes.values()].map((l) => l.close()));
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
      await this.deps.onClose?.();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
