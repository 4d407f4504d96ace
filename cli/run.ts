import { parseArgs } from "citty";
import type { Config } from "../config/index.ts";
import { P2prcError, VERSION } from "../core/index.ts";
import { ACTIONS, type ActionDef } from "./actions.ts";
import type { CommandContext, FlagValues } from "./context.ts";
import { cittyArgs, FLAGS, type FlagName, flagSpellings } from "./flags.ts";
import { renderHelp } from "./help.ts";
import { type CliIO, exitCodeOf, processIO, reportError, type Terminal, usageError } from "./io.ts";
import { isContainerVerb, isRelaySubcommand } from "./verbs.ts";

/** Rewrites P2PRC's single-dash long flags (`-dc`, `-touch=x`) to `--dc`; rejects unknown flags. */
export function normalizeArgs(argv: string[]): string[] {
  const spellings = flagSpellings();
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (!arg.startsWith("-") || /^-\d/.test(arg)) {
      out.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const [rawName = "", value] = body.split(/=(.*)/s, 2);
    const negated = rawName.startsWith("no-") && !spellings.has(rawName);
    const name = negated ? rawName.slice(3) : rawName;
    const canonical = spellings.get(name);
    if (!canonical) {
      throw usageError(`unknown flag ${arg.split("=")[0]}`, "run `p2prc -h` for the list of flags");
    }
    if (negated) {
      if (FLAGS[canonical].type !== "boolean" || value !== undefined) throw usageError(`unknown flag ${arg}`);
      out.push(`--no-${canonical}`);
      continue;
    }
    out.push(value === undefined ? `--${canonical}` : `--${canonical}=${value}`);
    if (FLAGS[canonical].type === "string" && value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("-") && !/^-\d/.test(next))) {
        throw usageError(`flag --${canonical} needs a value`);
      }
      out.push(next);
      i++;
    }
  }
  return out;
}

/** The canonical names of the flags in a normalized argv (up to `--`). */
function givenFlags(normalized: string[]): Set<FlagName> {
  const given = new Set<FlagName>();
  for (const arg of normalized) {
    if (arg === "--") break;
    if (!arg.startsWith("--")) continue;
    const name = (arg.slice(2).split("=", 1)[0] as string).replace(/^no-/, "");
    if (Object.hasOwn(FLAGS, name)) given.add(name as FlagName);
  }
  return given;
}

/** Every value of a repeatable flag in a normalized argv (`--name=value` or `--name value`). */
function repeated(normalized: string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < normalized.length; i++) {
    const arg = normalized[i] as string;
    if (arg === `--${name}`) values.push(normalized[++i] ?? "");
    else if (arg.startsWith(`--${name}=`)) values.push(arg.slice(name.length + 3));
  }
  return values;
}

function configOverrides(flags: FlagValues): Partial<Config> {
  const overrides: Record<string, unknown> = {};
  const num = (s: string) => (/^-?\d+(\.\d+)?$/.test(s) ? Number(s) : s);
  if (typeof flags.port === "string") overrides.serverPort = num(flags.port);
  if (typeof flags.host === "string") overrides.serverHost = flags.host;
  if (typeof flags["log-level"] === "string") overrides.logLevel = flags["log-level"];
  return overrides as Partial<Config>;
}

export interface RunOptions {
  io?: CliIO;
  env?: Record<string, string | undefined>;
  stopSignal?: AbortSignal;
  /** The user's terminal (`exec -i/-t`); default: the process's stdin and stdout. */
  terminal?: Terminal;
}

/** Runs the CLI on `argv` (without the program name) and returns the exit code. Drivable from tests. */
export async function runCli(argv: string[], options: RunOptions = {}): Promise<number> {
  const io = options.io ?? processIO;
  const dashes = argv.indexOf("--");
  const debug = (dashes < 0 ? argv : argv.slice(0, dashes)).includes("--debug");
  try {
    const word = argv[0];
    if (word === "batch" || word === "demo" || isRelaySubcommand(word)) {
      const own = argv.slice(1).filter((a) => a !== "--debug");
      if (isRelaySubcommand(word))
        return await (await import("./commands/relay.ts")).runRelaySubcommand(word, own, io, options);
      return await (await import("./commands/batch.ts")).runSubcommand(word, own, io, options);
    }
    if (word === "image") {
      const own = argv.slice(1).filter((a) => a !== "--debug");
      return await (await import("./commands/image.ts")).runImageCommand(own, io, options);
    }
    if (word === "run") {
      const own = argv.slice(1).filter((a) => a !== "--debug");
      return await (await import("./commands/run.ts")).runScriptCommand(own, io, options);
    }
    if (word === "ui") {
      const own = argv.slice(1).filter((a) => a !== "--debug");
      return await (await import("./commands/ui.ts")).runUi(own, io, options);
    }
    if (isContainerVerb(argv[0])) {
      const { runContainerVerb } = await import("./commands/containers.ts");
      const dashes = argv.indexOf("--");
      const own = dashes < 0 ? argv.slice(1) : argv.slice(1, dashes);
      const command = dashes < 0 ? [] : argv.slice(dashes);
      return await runContainerVerb(
        argv[0],
        [...own.filter((a) => a !== "--debug"), ...command],
        io,
        options,
      );
    }
    // what follows `--` is the container's command (--touch), never flags
    const rest = dashes < 0 ? [] : argv.slice(dashes + 1);
    const normalized = normalizeArgs(dashes < 0 ? argv : argv.slice(0, dashes));
    // citty parses only the flags given (normalizeArgs has already turned every spelling into `--name`,
    // `--name=value` or `--no-name` and refused unknown ones): a command pays for its own flags, not all 60.
    const given = givenFlags(normalized);
    const parsed = parseArgs(normalized, cittyArgs(given)) as Record<string, unknown> & { _: string[] };
    const flags: FlagValues = {};
    for (const name of given) {
      const value = FLAGS[name].repeat ? repeated(normalized, name) : parsed[name];
      if (value !== undefined && value !== false) flags[name] = value as string | boolean | string[];
    }
    if (parsed._.length > 0) {
      throw usageError(`unexpected argument "${parsed._[0]}"`, "run `p2prc -h` for usage");
    }
    if (flags.help || normalized.length === 0) {
      io.out(renderHelp());
      return 0;
    }
    if (flags.version) {
      io.out(VERSION);
      return 0;
    }
    const ctx: CommandContext = {
      io,
      flags,
      json: flags.json === true,
      node: {
        configDir: typeof flags["config-dir"] === "string" ? flags["config-dir"] : undefined,
        env: options.env ?? process.env,
        overrides: configOverrides(flags),
      },
      rest,
      stopSignal: options.stopSignal ?? new AbortController().signal,
    };
    // Each action's `run` loads its own command module, so only the given actions' modules load.
    const actions: ActionDef[] = ACTIONS.filter((action) => flags[action.name] !== undefined);
    if (actions.length === 0) {
      throw usageError("no action given", "run `p2prc -h` for the list of actions");
    }
    if (rest.length > 0 && flags["exec-container"] === undefined) {
      throw usageError(`unexpected argument "${rest[0]}"`, "only --touch takes a command after --");
    }
    for (const action of actions) {
      if (action.pending !== undefined) {
        throw new P2prcError(
          "E_NOT_AVAILABLE",
          `--${action.name} is not available yet (it comes with ${action.pending})`,
        );
      }
      await action.run(ctx);
    }
    return 0;
  } catch (err) {
    reportError(io, err, debug);
    return exitCodeOf(err);
  }
}
