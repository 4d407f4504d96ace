import type { ArgsDef } from "citty";
import { demoMandelbrot, loadConfig, runBatch } from "../../abstractions/index.ts";
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

const BATCH_ARGS: ArgsDef = { job: { type: "positional", description: "job.json or job.yaml" }, ...common };
const DEMO_ARGS: ArgsDef = {
  demo: { type: "positional", description: "mandelbrot" },
  tiles: { type: "string", description: "Number of tiles (tasks)" },
  size: { type: "string", description: "WxH in pixels (default 400x300)" },
  image: { type: "string", description: "Image with awk (default: the node's defaultImage)" },
  "max-iter": { type: "string", description: "Iterations per pixel (default 200)" },
  ...common,
};

export const SUBCOMMAND_HELP = {
  batch: "p2prc batch <job.json|job.yaml> --out <dir> [--nodes <list>|auto] [--json]",
  demo: "p2prc demo mandelbrot --tiles N [--size WxH] [--image ref] --out mandelbrot.png [--nodes <list>]",
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
  const args = subcommandArgs(argv, name === "batch" ? BATCH_ARGS : DEMO_ARGS, SUBCOMMAND_HELP[name], io);
  if (!args) return 0;
  const json = args.json === true;
  const node = { configDir: args["config-dir"] as string | undefined, env: options.env ?? process.env };
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
      const r = await runBatch(node, args.job, out, { nodes, onProgress: (p) => progress.update(p) });
      progress.finish();
      const done = r.results.filter((t) => t.state === "done").length;
      const failed = r.results.length - done;
      if (json)
        io.out(
          toJson({
            batchId: r.batchId,
            resumed: r.resumed,
            done,
            failed,
            durationMs: r.durationMs,
            results: r.results,
          }),
        );
      else
        io.out(
          `${done} done, ${failed} failed in ${(r.durationMs / 1000).toFixed(1)} s${r.resumed ? " (resumed)" : ""}; results: ${out}/results.json`,
        );
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
  } finally {
    progress.finish();
  }
}
