// Batch progress as people see it: one line per finished task when stderr is not a terminal, one
// redrawn bar with per-node counts and an ETA on a terminal, nothing with --json.
import { describe, expect, test } from "bun:test";
import type { BatchProgress } from "../abstractions/index.ts";
import type { CliIO } from "./io.ts";
import { progressReporter, transferReporter } from "./progress.ts";

function capture() {
  const lines: string[] = [];
  const written: string[] = [];
  const io: CliIO = { out: (t) => lines.push(`out:${t}`), err: (t) => lines.push(t) };
  const stream = { write: (s: string) => written.push(s) > 0 } as unknown as NodeJS.WriteStream;
  return { io, stream, lines, written };
}

const base = (over: Partial<BatchProgress> = {}): BatchProgress => ({
  total: 10,
  done: 0,
  failed: 0,
  running: 0,
  pending: 10,
  perNode: { "node-a": { done: 0, running: 0 }, "node-b": { done: 0, running: 0 } },
  etaMs: undefined,
  ...over,
});

describe("lines mode (stderr not a terminal)", () => {
  test("one line per finished, failed or rescheduled task; nothing for starts or plain updates", () => {
    const c = capture();
    const r = progressReporter(c.io, "lines", c.stream);
    r.update(base());
    r.update(base({ running: 1, event: { index: 3, state: "running", node: "node-a" } }));
    r.update(base({ done: 1, event: { index: 3, state: "done", node: "node-a", exitCode: 0 } }));
    r.update(base({ done: 1, failed: 1, event: { index: 4, state: "failed", node: "node-b", exitCode: 2 } }));
    r.update(
      base({ done: 1, event: { index: 5, state: "retry", node: "node-b", error: "cannot reach node" } }),
    );
    r.update(
      base({
        done: 1,
        failed: 2,
        event: { index: 6, state: "failed", node: "node-b", error: "no node left" },
      }),
    );
    r.finish();
    expect(c.lines).toEqual([
      "task 3 done (exit 0) on node-a [1/10]",
      "task 4 failed (exit 2) on node-b [2/10]",
      // defect 10: it failed on node-b and goes elsewhere, not "rescheduled ... on node-b"
      "task 5 failed on node-b (cannot reach node); rescheduled [1/10]",
      "task 6 failed: no node left on node-b [3/10]",
    ]);
    expect(c.written).toEqual([]);
  });

  test("a task that never ran names no node; a task the cancel stopped says it stays pending", () => {
    const c = capture();
    const r = progressReporter(c.io, "lines", c.stream);
    r.update(
      base({ failed: 1, event: { index: 7, state: "failed", node: "", error: "no node left to run it" } }),
    );
    r.update(base({ event: { index: 2, state: "cancelled", node: "node-a" } }));
    expect(c.lines).toEqual([
      "task 7 failed: no node left to run it [1/10]",
      "task 2 stopped on node-a by the cancel; pending [0/10]",
    ]);
  });
});

describe("none mode (--json)", () => {
  test("prints nothing at all", () => {
    const c = capture();
    const r = progressReporter(c.io, "none", c.stream);
    r.update(base({ done: 1, event: { index: 0, state: "done", node: "node-a", exitCode: 0 } }));
    r.finish();
    expect(c.lines).toEqual([]);
    expect(c.written).toEqual([]);
  });
});

describe("tty mode", () => {
  test("one redrawn line with a bar, counts, per-node counts and an ETA; unchanged lines are not redrawn", () => {
    const c = capture();
    const r = progressReporter(c.io, "tty", c.stream);
    const p = base({
      done: 5,
      running: 3,
      pending: 2,
      perNode: { "node-a": { done: 3, running: 2 }, "node-b": { done: 2, running: 1 } },
      etaMs: 4200,
    });
    r.update(p);
    r.update(p);
    expect(c.written).toHaveLength(1);
    const line = c.written[0] as string;
    expect(line.startsWith("\r\x1b[2K")).toBe(true);
    expect(line).toContain(`[${"#".repeat(12)}${".".repeat(12)}]`);
    expect(line).toContain("5/10 done, 3 running, 0 failed");
    expect(line).toContain("node-a:3+2 node-b:2+1");
    expect(line).toContain("ETA 5s");
    r.finish();
    expect(c.written.slice(1)).toEqual(["\n"]);
    expect(c.lines).toEqual([]);
  });

  test.each([
    [undefined, "ETA ?"],
    [59_000, "ETA 59s"],
    [60_000, "ETA 1m0s"],
    [90_500, "ETA 1m31s"],
    [119_500, "ETA 2m0s"],
    [179_999, "ETA 3m0s"],
  ])("ETA of %p ms reads %p", (etaMs, text) => {
    const c = capture();
    progressReporter(c.io, "tty", c.stream).update(base({ etaMs }));
    expect(c.written[0]).toEndWith(text);
  });
});

describe("transfer progress (image push)", () => {
  test("a line every 2 s when not a terminal: bytes, of the expected size, rate and ETA", () => {
    const c = capture();
    const r = transferReporter(c.io, "lines", c.stream);
    r.update({ bytes: 10_000_000, totalHint: 200_000_000, elapsedMs: 1000 });
    r.update({ bytes: 15_000_000, totalHint: 200_000_000, elapsedMs: 1500 });
    r.update({ bytes: 50_000_000, totalHint: 200_000_000, elapsedMs: 5000 });
    expect(c.lines).toEqual([
      "sent 10.0 MB of ~200.0 MB  10.0 MB/s  ETA 19s",
      "sent 50.0 MB of ~200.0 MB  10.0 MB/s  ETA 15s",
    ]);
  });

  test("one redrawn bar on a terminal, ended by a newline; nothing with --json; no ETA without a size", () => {
    const c = capture();
    const r = transferReporter(c.io, "tty", c.stream);
    r.update({ bytes: 100_000_000, totalHint: 200_000_000, elapsedMs: 2000 });
    r.update({ bytes: 3_000_000_000, elapsedMs: 60_000 });
    r.finish();
    expect(c.written).toEqual([
      `\r\x1b[2K[${"#".repeat(12)}${".".repeat(12)}] 100.0 MB of ~200.0 MB  50.0 MB/s  ETA 2s`,
      `\r\x1b[2K[${".".repeat(24)}] 3.0 GB  50.0 MB/s`,
      "\n",
    ]);
    const quiet = capture();
    const none = transferReporter(quiet.io, "none", quiet.stream);
    none.update({ bytes: 1, elapsedMs: 5000 });
    none.finish();
    expect([...quiet.lines, ...quiet.written]).toEqual([]);
  });
});
