// bench/signed.ts runs end to end in its short mode and prints every figure and ratio the issue names
// (the full run is `make bench`; its figures are in Docs/Benchmarks.md).
import { expect, test } from "bun:test";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

test("bench/signed.ts --seconds 2: V, B, B', P, M, F and the judged ratios", async () => {
  const proc = Bun.spawn([process.execPath, "bench/signed.ts", "--seconds", "2", "--side-seconds", "1"], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  expect({ code, err: code === 0 ? "" : err }).toEqual({ code: 0, err: "" });
  for (const line of [
    /^V {2}Ed25519 verification, one core: +\d+/m,
    /^B {2}bare Bun\.serve TLS, same \(signing\) client: \d+/m,
    /^B' bare Bun\.serve TLS, unsigned client: +\d+/m,
    /^P {2}p2prc signed GET \/v1\/specs \(cached\): +\d+ req\/s over 2 s \(0 not 200\)/m,
    /^ {3}first 1 s [\d.]+ req\/s, last 1 s [\d.]+ req\/s; server RSS [\d.]+ MB at start/m,
    /^F {2}a member alone [\d.]+ req\/s; beside a non-member's flood/m,
    /^P \/ B \(same client\), goal ≥ 0\.25 +[\d.]+ {2}(met|MISSED)$/m,
    /^M {2}p2prc GET \/v1\/specs with request MACs: +\d+ req\/s over 2 s \(0 not 200\); server CPU [\d.]+ µs per request/m,
    /^V \/ P \(every request signed\), for reference +[\d.]+$/m,
    /^ {3}per core of server CPU: \d+ req\/s \(one verification [\d.]+ µs; TLS and HTTP alone, as B: [\d.]+ µs\)/m,
    /^V \/ P per server core \(signed\), for reference +[\d.]+$/m,
    /^V \/ M per server core \(MACs\), goal ≤ 1\.5 +[\d.]+ {2}(met|MISSED)$/m,
    /^M last \/ first \(no decay\), goal within 10% +[\d.]+ {2}(met|MISSED)$/m,
    /^member during flood \/ alone, goal ≥ 0\.8 +[\d.]+ {2}(met|MISSED)$/m,
  ])
    expect(out).toMatch(line);
}, 120_000);
