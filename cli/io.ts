import { P2prcError } from "../core/index.ts";

/** Where a command writes: results to `out` (stdout), messages to `err` (stderr). Tests pass their own. */
export interface CliIO {
  out(text: string): void;
  err(text: string): void;
}

export const processIO: CliIO = {
  out: (t) => process.stdout.write(t.endsWith("\n") ? t : `${t}\n`),
  err: (t) => process.stderr.write(t.endsWith("\n") ? t : `${t}\n`),
};

/** A user error in CLI usage (exit 2). */
export function usageError(message: string, hint?: string): P2prcError {
  return new P2prcError("E_INVALID", message, { hint });
}

/** Exit code for an error: 2 for usage, config and validation errors; 1 for everything else. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof P2prcError && ["E_CONFIG", "E_INVALID", "E_NOT_AVAILABLE"].includes(err.code)) return 2;
  return 1;
}

/** One line (plus an optional hint line) on stderr; the stack only with --debug. */
export function reportError(io: CliIO, err: unknown, debug: boolean): void {
  if (err instanceof P2prcError) {
    io.err(`p2prc: ${err.message}`);
    if (err.hint) io.err(`hint: ${err.hint}`);
  } else {
    const message = err instanceof Error ? err.message : String(err);
    io.err(`p2prc: internal error: ${message.split("\n")[0]}`);
    if (!debug) io.err("hint: run again with --debug for details");
  }
  if (debug && err instanceof Error && err.stack) io.err(err.stack);
}

/** Pretty JSON for `--json` and JSON-shaped results. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
