// The embedding example runs as its own program: one JSON line on stdout, exit 0.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "./support.ts";

const ROOT = resolve(import.meta.dir, "..");
const home = mkdtempSync(join(tmpdir(), "p2prc-example-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

test("bun examples/embed.ts <port> prints url, nodeId and health, exit 0", async () => {
  const port = await freePort();
  const proc = Bun.spawn([process.execPath, join(ROOT, "examples/embed.ts"), String(port)], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: home,
      P2PRC: home,
      DOCKER_HOST: process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock",
      P2PRC_DEFAULT_IMAGE: "p2prc-test/busybox",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill(9), 20_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
  const lines = stdout.split("\n").filter(Boolean);
  expect(lines).toHaveLength(1);
  const out = JSON.parse(lines[0] as string);
  expect(out.url).toBe(`https://127.0.0.1:${port}`); // TLS is on by default
  expect(out.nodeId).toMatch(/^[0-9a-f]{64}$/);
  expect(out.health.ok).toBe(true);
  expect(out.health.nodeId).toBe(out.nodeId);
  // the node home was created: a second run keeps the same identity
  const again = Bun.spawnSync([process.execPath, join(ROOT, "examples/embed.ts"), String(await freePort())], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, P2PRC: home },
  });
  expect(again.exitCode).toBe(0);
  expect(JSON.parse(again.stdout.toString().trim()).nodeId).toBe(out.nodeId);
}, 30_000);
