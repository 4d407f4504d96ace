import type { NodeOptions } from "../abstractions/index.ts";
import type { FlagName } from "./flags.ts";
import type { CliIO } from "./io.ts";

/** Parsed flag values by canonical name. */
export type FlagValues = Partial<Record<FlagName, string | boolean>>;

/** What every command handler gets. */
export interface CommandContext {
  io: CliIO;
  flags: FlagValues;
  json: boolean;
  node: NodeOptions;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM); long-running commands wait on it. */
  stopSignal: AbortSignal;
}

/** A command handler. Thin: parse → call abstractions → print. */
export type Command = (ctx: CommandContext) => Promise<void>;

/** The value of a string flag, or undefined. */
export function stringFlag(ctx: CommandContext, name: FlagName): string | undefined {
  const v = ctx.flags[name];
  return typeof v === "string" ? v : undefined;
}
