import type { ArgsDef } from "citty";
import { batchStatus, demoMandelbrot, loadConfig, runBatch } from "../../abstractions/index.ts";
import { shellQuote } from "../../core/index.ts";
import { SUBCOMMAND_USAGE } from "../help.ts";
import { type CliIO, toJson, usageError } from "../io.ts";
import { progressReporter } from "../progress.ts";
import type { RunOptions } from "../run.ts";
import { subcommandArgs } from "../subcommand.ts";

const common: ArgsDef = {
  out: { type: "string", description: "Output directory (batch) or PNG file (demo)" },
  nodes: { type: "string", description: "Comma-separated node ids, names or host:port; default auto" },
  json: { type: "boolean", description: "Machine-readable summary" },
  "config-dir": { type: "string", description: "Node home directory" },
};

const BATCH_ARGS: ArgsDef = {
  job: { type: "positional", description: "job.json or job.yaml" },
  "retry-failed": { type: "boolean", description: "Run only the tasks that failed in an earlier run again" },
  ...common,
};
const STATUS_ARGS: ArgsDef = {
  status: { type: "positional", description: "status" },
  dir: { type: "positional", description: "The batch's --out directory" },
  json: common.json as ArgsDef[string],
  "config-dir": common["config-dir"] as ArgsDef[string],
};
const DEMO_ARGS: ArgsDef = {
  demo: { type: "positional", description: "mandelbrot" },
  tiles: { type: "string", description: "Number of tiles (tasks)" },
  size: { type: "string", description: "WxH in pixels (default 400x300)" },
  image: { type: "string", description: "Image with awk (default: the node's defaultImage)" },
  "max-iter": { type: "string", description: "Iterations per pixel (default 200)" },
  ...common,
};

const SUBCOMMAND_HELP = { batch: SUBCOMMAND_USAGE.batch, demo: SUBCOMMAND_USAGE.demo };

/** `p2prc batch -h` and `p2prc demo -h`. */
const LONG_HELP = {
  batch: [
    `usage: ${SUBCOMMAND_USAGE.batch}`,
    `       ${SUBCOMMAND_USAGE.status}`,
    "",
    "Runs the job's tasks on the nodes; the same command again resumes it (finished tasks are not redone).",
    "--retry-failed runs only the tasks that failed in an earlier run again. `batch status <dir>` shows",
    "what the store says about the batch written to <dir>. Ctrl-C cancels: no new task starts, the",
    "batch's warm containers are removed and what is left stays pending (exit 130); a second Ctrl-C",
    "exits at once. Docs: Docs/Client.md#batch-jobs.",
  ].join("\n"),
  demo: `usage: ${SUBCOMMAND_USAGE.demo}`,
};

function positiveInt(name: string, raw: unknown, fallback?: number): number {
  if (raw === undefined && fallback !== undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== "string" || !Number.isInteger(n) || n < 1 || n > 100000)
    throw usageError(`--${name}: expected a whole number from 1 to 100000`);
  return n;
}

/** `p2prc batch …` and `p2prc demo mandelbrot …`. */
export async function runSubcommand(
  name: "batch" | "demo",
  argv: string[],
  io: CliIO,
  options: RunOptions,
): Promise<number> {
  if (argv.includes("-h") || argv.includes("--help")) {
    io.out(LONG_HELP[name]);
    return 0;
  }
  if (name === "batch" && argv[0] === "status") return status(argv, io, options);
  const args = subcommandArgs(argv, name === "batch" ? BATCH_ARGS : DEMO_ARGS, SUBCOMMAND_HELP[name], io);
  if (!args) return 0;
  const json = args.json === true;
  const node = { configDir: args["config-dir"] as string | undefined, env: options.env ?? process.env };
  const signal = options.stopSignal;
  const onStop = () =>
    io.err("p2prc: cancelling: no new tasks; removing the batch's warm containers (Ctrl-C again exits now)");
  signal?.addEventListener("abort", onStop, { once: true });
  const nodes =
    typeof args.nodes === "string"
      ? args.nodes
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : undefined;
  const out = args.out;
  if (typeof out !== "string" || out === "") throw usageError(`--out is required`, SUBCOMMAND_HELP[name]);
  const mode = json ? "none" : process.stderr.isTTY ? "tty" : "lines";
  const progress = progressReporter(io, mode);
  try {
    if (name === "batch") {
      if (typeof args.job !== "string") throw usageError("a job file is required", SUBCOMMAND_HELP.batch);
      const r = await runBatch(node, args.job, out, {
        nodes,
        onProgress: (p) => progress.update(p),
        signal,
        retryFailed: args["retry-failed"] === true,
      });
      progress.finish();
      const done = r.results.filter((t) => t.state === "done").length;
      const failed = r.results.filter((t) => t.state === "failed").length;
      const left = r.results.length - done - failed;
      if (json)
        io.out(
          toJson({
            batchId: r.batchId,
            resumed: r.resumed,
            cancelled: r.cancelled,
            done,
            failed,
            pending: left,
            durationMs: r.durationMs,
            inputs: r.inputs,
            results: r.results,
          }),
        );
      else if (r.cancelled)
        io.out(`cancelled: ${done} done, ${failed} failed, ${left} left; resume with: ${rerun(argv)}`);
      else {
        const inputs = r.inputs.perTask
          ? `; inputs: ${mib(r.inputs.sent)} sent, ${mib(r.inputs.saved)} saved by the nodes' caches`
          : "";
        io.out(
          `${done} done, ${failed} failed in ${(r.durationMs / 1000).toFixed(1)} s${r.resumed ? " (resumed)" : ""}${inputs}; results: ${out}/results.json`,
        );
        if (failed > 0 && args["retry-failed"] !== true)
          io.err(`hint: run only the failed tasks again: ${rerun([...argv, "--retry-failed"])}`);
      }
      if (r.cancelled) return 130;
      return failed > 0 ? 1 : 0;
    }
    if (args.demo !== "mandelbrot")
      throw usageError(`unknown demo "${String(args.demo ?? "")}"`, SUBCOMMAND_HELP.demo);
    const size = typeof args.size === "string" ? args.size : "400x300";
    const m = /^(\d{1,5})x(\d{1,5})$/.exec(size);
    if (!m || Number(m[1]) < 1 || Number(m[2]) < 1)
      throw usageError(`--size: expected WxH such as 400x300, got "${size}"`);
    const tiles = positiveInt("tiles", args.tiles);
    if (tiles > Number(m[2])) throw usageError(`--tiles: at most one tile per row (${m[2]})`);
    const image = typeof args.image === "string" ? args.image : loadConfig(node).config.defaultImage;
    const t0 = Date.now();
    const r = await demoMandelbrot(node, {
      tiles,
      width: Number(m[1]),
      height: Number(m[2]),
      image,
      maxIter: positiveInt("max-iter", args["max-iter"], 200),
      out,
      nodes,
      onProgress: (p) => progress.update(p),
    });
    progress.finish();
    const perNode = [...new Set(r.result.results.map((t) => t.node))].length;
    if (json)
      io.out(
        toJson({
          out: r.out,
          bytes: r.bytes,
          tiles,
          width: r.width,
          height: r.height,
          nodes: perNode,
          durationMs: Date.now() - t0,
        }),
      );
    else
      io.out(
        `wrote ${r.out} (${r.width}x${r.height}, ${tiles} tiles on ${perNode} nodes, ${((Date.now() - t0) / 1000).toFixed(1)} s)`,
      );
    return 0;
  } catch (err) {
    // a cancelled demo throws; the exit code says it was cancelled
    if (signal?.aborted) {
      io.err(`p2prc: ${(err as Error).message}`);
      return 130;
    }
    throw err;
  } finally {
    signal?.removeEventListener("abort", onStop);
    progress.finish();
  }
}

/** The same command, quoted so it works when pasted into a shell. */
function rerun(argv: string[]): string {
  return ["p2prc", "batch", ...argv].map(shellQuote).join(" ");
}

/** `p2prc batch status <dir>`: counts by state and the failed tasks, from this home's store. */
async function status(argv: string[], io: CliIO, options: RunOptions): Promise<number> {
  const usage = SUBCOMMAND_USAGE.status;
  const args = subcommandArgs(argv, STATUS_ARGS, usage, io);
  if (!args) return 0;
  if (typeof args.dir !== "string" || args.dir === "")
    throw usageError("a batch's --out directory is required", usage);
  const node = { configDir: args["config-dir"] as string | undefined, env: options.env ?? process.env };
  const s = await batchStatus(node, args.dir);
  if (args.json === true) {
    io.out(toJson(s));
    return 0;
  }
  io.out(
    `batch ${s.batchId.slice(0, 8)} in ${s.outDir}: ${s.done}/${s.total} done, ${s.failed} failed, ${s.pending} pending, ${s.running} running`,
  );
  for (const t of s.failedTasks)
    io.out(`  task ${t.index} failed${t.node ? ` on ${t.node}` : ""}: ${t.error ?? `exit ${t.exitCode}`}`);
  if (s.running > 0)
    io.out("  running: a client is running it now, or one that was killed left them (a rerun resumes them)");
  if (s.older > 0)
    io.out(`  (${s.older} older batch${s.older > 1 ? "es" : ""} of another job wrote here too)`);
  return 0;
}

/** Bytes as MiB with one decimal (`20.0 MiB`). */
function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}
