import type { NodeOptions } from "../abstractions/index.ts";
import type { FlagName } from "./flags.ts";
import type { CliIO } from "./io.ts";

/** Parsed flag values by canonical name. */
export type FlagValues = Partial<Record<FlagName, string | boolean | string[]>>;

/** What every command handler gets. */
export interface CommandContext {
  io: CliIO;
  flags: FlagValues;
  json: boolean;
  node: NodeOptions;
  /** What follows `--` (the container's command for --touch); empty when none. */
  rest: string[];
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM); long-running commands wait on it. */
  stopSignal: AbortSignal;
}

/** A command handler. Thin: parse → call abstractions → print. */
export type Command = (ctx: CommandContext) => Promise<void>;

/** Every value of a repeatable string flag (`--env a=1 --env b=2`). */
export function listFlag(ctx: CommandContext, name: FlagName): string[] {
  const v = ctx.flags[name];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
}

/** The value of a string flag, or undefined. */
export function stringFlag(ctx: CommandContext, name: FlagName): string | undefined {
  const v = ctx.flags[name];
  return typeof v === "string" ? v : undefined;
}
