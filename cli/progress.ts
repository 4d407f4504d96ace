import type { BatchProgress } from "../abstractions/index.ts";
import type { CliIO } from "./io.ts";

const fmtMs = (ms: number | undefined) => {
  if (ms === undefined) return "?";
  const s = Math.ceil(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${s % 60}s`;
};

/**
 * Batch progress for people: one redrawn bar on a terminal (done/running/failed, per-node counts,
 * ETA), plain lines otherwise. `--json` prints nothing until the summary.
 */
export function progressReporter(
  io: CliIO,
  mode: "tty" | "lines" | "none",
  stream: NodeJS.WriteStream = process.stderr,
) {
  let last = "";
  return {
    update(p: BatchProgress): void {
      if (mode === "none") return;
      if (mode === "lines") {
        const e = p.event;
        if (!e || e.state === "running") return;
        const on = e.node ? ` on ${e.node}` : "";
        // a reschedule names the node the attempt failed on first: the task goes elsewhere next
        const what =
          e.state === "done"
            ? `done (exit ${e.exitCode})${on}`
            : e.state === "failed"
              ? `failed${e.exitCode !== undefined ? ` (exit ${e.exitCode})` : `: ${e.error}`}${on}`
              : e.state === "cancelled"
                ? `stopped${on} by the cancel; pending`
                : `failed${on} (${e.error}); rescheduled`;
        io.err(`task ${e.index} ${what} [${p.done + p.failed}/${p.total}]`);
        return;
      }
      const width = 24;
      const filled = Math.round((width * (p.done + p.failed)) / Math.max(1, p.total));
      const nodes = Object.entries(p.perNode)
        .map(([n, c]) => `${n}:${c.done}${c.running ? `+${c.running}` : ""}`)
        .join(" ");
      const line = `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${p.done}/${p.total} done, ${p.running} running, ${p.failed} failed | ${nodes} | ETA ${fmtMs(p.etaMs)}`;
      if (line !== last) stream.write(`\r\x1b[2K${line}`);
      last = line;
    },
    finish(): void {
      if (mode === "tty" && last) stream.write("\n");
      last = "";
    },
  };
}

/** `1.5 GB`, `12.0 MB`, `800 B`. */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** How far a transfer is, as `transferReporter` shows it. */
export interface TransferProgress {
  bytes: number;
  totalHint?: number | undefined;
  elapsedMs: number;
}

/**
 * A transfer's progress for people (an image push): one redrawn line on a terminal (bytes, rate, ETA
 * against the expected size), a plain line every `everyMs` otherwise; nothing with `none` (`--json`).
 */
export function transferReporter(
  io: CliIO,
  mode: "tty" | "lines" | "none",
  stream: NodeJS.WriteStream = process.stderr,
  everyMs = 2000,
) {
  let lastAt = -Infinity;
  let drawn = false;
  const text = (p: TransferProgress) => {
    const rate = p.elapsedMs > 0 ? (p.bytes * 1000) / p.elapsedMs : 0;
    const total = p.totalHint && p.totalHint >= p.bytes ? p.totalHint : undefined;
    const eta = total && rate > 0 ? ((total - p.bytes) * 1000) / rate : undefined;
    const of = total ? ` of ~${formatBytes(total)}` : "";
    return `${formatBytes(p.bytes)}${of}  ${formatBytes(Math.round(rate))}/s${total ? `  ETA ${fmtMs(eta)}` : ""}`;
  };
  return {
    update(p: TransferProgress): void {
      if (mode === "none") return;
      const interval = mode === "tty" ? 100 : everyMs;
      if (p.elapsedMs - lastAt < interval) return;
      lastAt = p.elapsedMs;
      if (mode === "lines") {
        io.err(`sent ${text(p)}`);
        return;
      }
      const width = 24;
      const filled = p.totalHint ? Math.min(width, Math.round((width * p.bytes) / p.totalHint)) : 0;
      stream.write(`\r\x1b[2K[${"#".repeat(filled)}${".".repeat(width - filled)}] ${text(p)}`);
      drawn = true;
    },
    finish(): void {
      if (mode === "tty" && drawn) stream.write("\n");
      drawn = false;
    },
  };
}
