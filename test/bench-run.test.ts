// bench/run.sh counts its benches right: it fails when one fails and when none ran (all skipped: 77),
// and succeeds when at least one ran and none failed. Tiny scripts stand in for the real benches.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "p2prc-bench-run-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const script = (name: string, code: number) => {
  const path = join(dir, `${name}.ts`);
  writeFileSync(path, `console.log("${name}");\nprocess.exit(${code});\n`);
  return path;
};
const ok = script("ok", 0);
const skip = script("skip", 77);
const skip2 = script("skip2", 77);
const broken = script("broken", 1);

function runBenches(...scripts: string[]) {
  const r = Bun.spawnSync(["bash", join(ROOT, "bench/run.sh")], {
    cwd: ROOT,
    env: { ...process.env, P2PRC_BENCHES: scripts.join(" "), P2PRC_BENCH_OUT: join(dir, "out") },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

test("every bench skipped: make bench fails, saying nothing was measured", () => {
  const r = runBenches(skip, skip2);
  expect(r.out).toContain("0 ran, 2 skipped, 0 failed");
  expect(r.err).toContain("no bench ran");
  expect(r.code).toBe(1);
});

test("one ran, one skipped: succeeds", () => {
  const r = runBenches(ok, skip);
  expect(r.out).toContain("1 ran, 1 skipped, 0 failed");
  expect(r.code).toBe(0);
});

test("one failed: fails, naming it", () => {
  const r = runBenches(ok, broken, skip);
  expect(r.out).toContain("1 ran, 1 skipped, 1 failed");
  expect(r.err).toContain("bench: broken failed (exit 1)");
  expect(r.code).not.toBe(0);
});
