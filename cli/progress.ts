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
