import { P2prcError } from "../core/index.ts";

/** Where a command writes: results to `out` (stdout), messages to `err` (stderr). Tests pass their own. */
export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  /** Bytes as they come (a log stream, a command's output), no newline added; default: as text lines. */
  write?(chunk: Uint8Array | string, to: "out" | "err"): void;
}

export const processIO: CliIO = {
  out: (t) => process.stdout.write(t.endsWith("\n") ? t : `${t}\n`),
  err: (t) => process.stderr.write(t.endsWith("\n") ? t : `${t}\n`),
  write: (chunk, to) => (to === "out" ? process.stdout : process.stderr).write(chunk),
};

/** Writes bytes or text as they are to stdout or stderr (`io.write`, else `out`/`err` as text). */
export function writeRaw(io: CliIO, chunk: Uint8Array | string, to: "out" | "err"): void {
  if (io.write) {
    io.write(chunk, to);
    return;
  }
  const text = typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
  if (text !== "") io[to](text);
}

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

/** The user's terminal, for `exec -i/-t`. Tests pass their own. */
export interface Terminal {
  /** Whether stdin is a terminal (`-t` needs one). */
  readonly isTTY: boolean;
  /** stdin as bytes, as they come (keys in raw mode, or a pipe); ends with stdin. */
  input(): ReadableStream<Uint8Array>;
  /** Raw mode on (keys go as typed, Ctrl-C included); returns the restore. */
  raw(): () => void;
  /** The terminal's size, when stdout is one. */
  size(): { cols: number; rows: number } | undefined;
  /** Calls `fn` when the terminal is resized; returns the removal. */
  onResize(fn: (cols: number, rows: number) => void): () => void;
}
