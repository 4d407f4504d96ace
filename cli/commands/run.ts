// `p2prc run <node|auto> script.ts [args…]`: a script file runs on a node in p2prc's runtime container, as
// futures do (Docs/Futures.md); its stdout and stderr come back as they were, and its exit code is ours.
import type { ArgsDef } from "citty";
import { runScript } from "../../abstractions/index.ts";
import { type CliIO, toJson, usageError, writeRaw } from "../io.ts";
import type { RunOptions } from "../run.ts";
import { subcommandArgs } from "../subcommand.ts";
import { RUN_HELP } from "../verbs.ts";

const ARGS: ArgsDef = {
  node: { type: "positional", required: false, description: "node id, name, host:port or auto" },
  script: { type: "positional", required: false, description: "the script file" },
  cpus: { type: "string", description: "Cores of the container" },
  "memory-mb": { type: "string", description: "Memory of the container in MB" },
  timeout: { type: "string", description: "Seconds the script may run (default 600)" },
  json: { type: "boolean", description: "Machine-readable result" },
  "config-dir": { type: "string", description: "Node home directory" },
};

function positive(name: string, raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== "string" || !Number.isFinite(n) || n <= 0)
    throw usageError(`--${name}: expected a positive number`, RUN_HELP);
  return n;
}

/** Flags that take a value as the next word. */
const VALUED = new Set(["--cpus", "--memory-mb", "--timeout", "--config-dir"]);

/** Ours are the words up to the script (the second positional); the rest, or all after `--`, are the script's. */
export function splitArgs(argv: string[]): { own: string[]; scriptArgs: string[] } {
  let positionals = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--") return { own: argv.slice(0, i), scriptArgs: argv.slice(i + 1) };
    if (VALUED.has(a)) i++;
    else if (!a.startsWith("-") && ++positionals === 2) {
      // `run n s.ts -- --flag`: the `--` only says where the script's own arguments begin
      const rest = argv.slice(i + 1);
      return { own: argv.slice(0, i + 1), scriptArgs: rest[0] === "--" ? rest.slice(1) : rest };
    }
  }
  return { own: argv, scriptArgs: [] };
}

/** `p2prc run <node|auto> script.ts [args…] [--cpus N] [--memory-mb N] [--timeout S] [--json]`. */
export async function runScriptCommand(argv: string[], io: CliIO, options: RunOptions): Promise<number> {
  const { own, scriptArgs } = splitArgs(argv);
  const args = subcommandArgs(own, ARGS, RUN_HELP, io);
  if (!args) return 0;
  if (typeof args.node !== "string" || typeof args.script !== "string")
    throw usageError("run needs a node (or auto) and a script file", RUN_HELP);
  const home = { configDir: args["config-dir"] as string | undefined, env: options.env ?? process.env };
  const timeout = positive("timeout", args.timeout);
  const r = await runScript(args.node, args.script, scriptArgs, {
    home,
    cpus: positive("cpus", args.cpus),
    memoryMb: positive("memory-mb", args["memory-mb"]),
    timeoutMs: timeout === undefined ? undefined : timeout * 1000,
  });
  if (args.json === true) {
    io.out(toJson(r));
    return 0;
  }
  writeRaw(io, r.stdout, "out");
  writeRaw(io, r.stderr, "err");
  return r.exitCode;
}
