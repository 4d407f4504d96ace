import type { ConsolaInstance, LogObject } from "consola";

export type LogLevel = "silent" | "error" | "warn" | "info" | "debug";

/** The logger every module takes: tagged per module, writing to stderr only. */
export interface Logger {
  debug(message: string, ...args: unknown[]): void;
  info(message: string, ...args: unknown[]): void;
  warn(message: string, ...args: unknown[]): void;
  error(message: string, ...args: unknown[]): void;
  /** A child logger with a tag (`server:engine`). */
  withTag(tag: string): Logger;
}

const LEVELS: Record<LogLevel, number> = { silent: -999, error: 0, warn: 1, info: 3, debug: 4 };

function wrap(c: ConsolaInstance): Logger {
  return {
    debug: (m, ...a) => c.debug(m, ...a),
    info: (m, ...a) => c.info(m, ...a),
    warn: (m, ...a) => c.warn(m, ...a),
    error: (m, ...a) => c.error(m, ...a),
    withTag: (tag) => wrap(c.withTag(tag)),
  };
}

/** One plain line per entry on stderr: `2026-11-23T20:00:00.000Z info [p2prc:server] message`. */
function stderrReporter(out: NodeJS.WritableStream) {
  return {
    log(entry: LogObject) {
      const { formatWithOptions } = require("node:util") as typeof import("node:util");
      const text = formatWithOptions({ colors: false, breakLength: Number.POSITIVE_INFINITY }, ...entry.args);
      out.write(`${entry.date.toISOString()} ${entry.type} [${entry.tag}] ${text}\n`);
    },
  };
}

/**
 * A consola logger on stderr at `level`. consola's core with a one-line reporter: the full build's
 * fancy reporters cost ~10 MB of memory and ~20 ms of start-up, and logs go to files and journals.
 */
export function createLogger(
  level: LogLevel = "info",
  tag = "p2prc",
  out: NodeJS.WritableStream = process.stderr,
): Logger {
  const { createConsola } = require("consola/core") as typeof import("consola/core");
  return wrap(createConsola({ level: LEVELS[level], reporters: [stderrReporter(out)] }).withTag(tag));
}

/** A logger that keeps lines in memory (tests). */
export function memoryLogger(lines: string[] = []): Logger & { lines: string[] } {
  const make = (tag: string): Logger => {
    const push = (level: string) => (m: string) => {
      lines.push(`${level} [${tag}] ${m}`);
    };
    return {
      debug: push("debug"),
      info: push("info"),
      warn: push("warn"),
      error: push("error"),
      withTag: (t) => make(`${tag}:${t}`),
    };
  };
  return Object.assign(make("test"), { lines });
}
