import type { ConsolaInstance } from "consola";

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

/** A consola logger on stderr at `level`. */
export function createLogger(level: LogLevel = "info", tag = "p2prc"): Logger {
  // Loaded on first use: consola costs ~20 ms of start-up that commands without logs should not pay.
  const { createConsola } = require("consola") as typeof import("consola");
  const stderr = process.stderr;
  return wrap(createConsola({ level: LEVELS[level], stdout: stderr, stderr }).withTag(tag));
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
