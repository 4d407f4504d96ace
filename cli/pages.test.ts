// A node gives its executable's start-up code pages back (issue 12): which mappings, that it does lower
// the resident pages of a real process, and when. The compiled `--as-server` is checked in
// test/binary.test.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { executableText, keepExecutableTrimmed } from "./pages.ts";

const dir = mkdtempSync(join(tmpdir(), "p2prc-pages-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const mapping = (range: string, perms: string, path: string, anonymousKb: number) =>
  [
    `${range} ${perms} 00000000 fd:01 1234     ${path}`.trimEnd(),
    "Size:               1024 kB",
    "Rss:                 512 kB",
    `Anonymous:          ${anonymousKb} kB`,
    "VmFlags: rd ex mr mw me",
  ].join("\n");

describe("executableText", () => {
  const exe = "/usr/local/bin/p2prc";
  test("takes the executable's r-xp mappings that hold no page of their own", () => {
    const smaps = [
      mapping("55d000000000-55d000100000", "r--p", exe, 0),
      mapping("55d000100000-55d002100000", "r-xp", exe, 0),
      mapping("55d002100000-55d002200000", "r-xp", exe, 4), // a written page: left alone
      mapping("55d002200000-55d002300000", "rw-p", exe, 0),
      mapping("7f0000000000-7f0000200000", "r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0),
      mapping("7f0000200000-7f0000300000", "rw-p", "", 12),
      mapping("7f0000300000-7f0000400000", "r-xp", `${exe} (deleted)`, 0),
    ].join("\n");
    expect(executableText(smaps, exe)).toEqual([{ start: 0x55d000100000n, length: 0x2000000 }]);
  });

  test("a mapping whose Anonymous line is missing is not taken", () => {
    const smaps = `55d000100000-55d002100000 r-xp 00000000 fd:01 1234     ${exe}\nSize: 1024 kB`;
    expect(executableText(smaps, exe)).toEqual([]);
  });
});

test("trimExecutableText lowers a real process's resident executable pages, and it runs on", () => {
  const script = join(dir, "trim.ts");
  writeFileSync(
    script,
    `import { readFileSync } from "node:fs";
import { trimExecutableText } from ${JSON.stringify(resolve(import.meta.dir, "pages.ts"))};
const file = () => Number(/RssFile:\\s+(\\d+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1]);
const before = file();
const bytes = await trimExecutableText();
const after = file();
// code runs on after it: its pages come back from the page cache
const sum = [1, 2, 3].map((x) => x * 2).reduce((a, b) => a + b, 0);
console.log(JSON.stringify({ before, after, bytes, sum, again: file() }));
`,
  );
  const r = Bun.spawnSync([process.execPath, script], { stdout: "pipe", stderr: "pipe" });
  expect(r.stderr.toString()).toBe("");
  const o = JSON.parse(r.stdout.toString()) as Record<string, number>;
  expect(o.sum).toBe(12);
  if (process.platform !== "linux") {
    expect(o.bytes).toBe(0);
    return;
  }
  expect(o.bytes).toBeGreaterThan(1 << 20);
  // bun's text (tens of MB resident after start-up) is mostly given back
  expect((o.before as number) - (o.after as number)).toBeGreaterThan(4 * 1024);
});

test("keepExecutableTrimmed: first after firstMs, then twice the last wait up to everyMs; stops", async () => {
  const at: number[] = [];
  const t0 = performance.now();
  const stop = keepExecutableTrimmed({
    firstMs: 10,
    everyMs: 40,
    trim: async () => {
      at.push(performance.now() - t0);
      return 0;
    },
  });
  for (let i = 0; i < 500 && at.length < 5; i++) await Bun.sleep(10);
  stop();
  const calls = at.length;
  expect(calls).toBeGreaterThanOrEqual(5);
  // a timer fires at its time or later, never earlier: waits of 10, 20, 40, 40 ms at least
  const gaps = at.slice(1).map((t, i) => t - (at[i] as number));
  expect(at[0] as number).toBeGreaterThanOrEqual(9);
  for (const [i, ms] of [20, 40, 40].entries()) expect(gaps[i] as number).toBeGreaterThanOrEqual(ms - 1);
  await Bun.sleep(120);
  expect(at.length).toBe(calls);
});
