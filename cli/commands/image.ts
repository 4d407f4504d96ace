// `p2prc image push|ls|rm`: images to a node without a registry (Docs/CLI.md#images).
import type { ArgsDef } from "citty";
import { listImages, type PushedImageView, pushImage, removeImage } from "../../abstractions/index.ts";
import { type CliIO, toJson, usageError } from "../io.ts";
import { formatBytes, transferReporter } from "../progress.ts";
import type { RunOptions } from "../run.ts";
import { subcommandArgs } from "../subcommand.ts";
import { IMAGE_HELP } from "../verbs.ts";

const ARGS: ArgsDef = {
  verb: { type: "positional", required: false, description: "push, ls or rm" },
  node: { type: "positional", required: false, description: "node" },
  image: { type: "positional", required: false, description: "image" },
  json: { type: "boolean", description: "Machine-readable output" },
  "config-dir": { type: "string", description: "Node home directory" },
};

function line(i: PushedImageView): string {
  return `${i.image}  ${i.id.slice(7, 19)}  ${formatBytes(i.bytes)}  pushed by ${i.owner.slice(0, 12)}  ${i.pushedAt}`;
}

/** `p2prc image push <node> <image>`, `image ls <node>`, `image rm <node> <image>`. */
export async function runImageCommand(argv: string[], io: CliIO, options: RunOptions): Promise<number> {
  const args = subcommandArgs(argv, ARGS, IMAGE_HELP, io);
  if (!args) return 0;
  const node = { configDir: args["config-dir"] as string | undefined, env: options.env ?? process.env };
  const json = args.json === true;
  const verb = args.verb;
  const target = args.node;
  if (typeof target !== "string" || !["push", "ls", "rm"].includes(String(verb)))
    throw usageError(
      verb === undefined ? "image needs a verb and a node" : `unknown image verb "${verb}"`,
      IMAGE_HELP,
    );
  if (verb === "ls") {
    const list = await listImages(node, target);
    if (json) io.out(toJson(list));
    else if (list.length === 0) io.out("(no pushed images)");
    else for (const i of list) io.out(line(i));
    return 0;
  }
  if (typeof args.image !== "string") throw usageError(`image ${verb} needs <node> <image>`, IMAGE_HELP);
  if (verb === "rm") {
    const gone = await removeImage(node, target, args.image);
    io.out(json ? toJson({ removed: gone }) : `removed ${gone.image} (${gone.id.slice(7, 19)})`);
    return 0;
  }
  const progress = transferReporter(io, json ? "none" : process.stderr.isTTY ? "tty" : "lines");
  const abort = new AbortController();
  options.stopSignal?.addEventListener("abort", () => abort.abort(), { once: true });
  try {
    const pushed = await pushImage(node, target, args.image, {
      onProgress: (p) => progress.update(p),
      signal: abort.signal,
    });
    progress.finish();
    if (json) io.out(toJson(pushed));
    else
      io.out(
        `pushed ${pushed.image} (${pushed.id.slice(7, 19)}) to ${pushed.node.url}: ${formatBytes(pushed.bytes)} in ${(pushed.elapsedMs / 1000).toFixed(1)} s, ${formatBytes(pushed.rate)}/s`,
      );
  } finally {
    progress.finish();
  }
  return 0;
}
