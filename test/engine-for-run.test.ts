// Item 6: `make run` on a machine with no engine answering brings one up as `make test` does, and a
// user's own DOCKER_HOST is kept. test/engine/engine-for-run.sh is what the Makefile's run target evals.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const ENGINE = process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock";
const root = mkdtempSync(join(tmpdir(), "p2prc-run-engine-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function script(env: Record<string, string>) {
  const r = Bun.spawnSync([join(ROOT, "test/engine/engine-for-run.sh")], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: root,
      P2PRC: join(root, "home"),
      P2PRC_BIN: `${process.execPath} ${join(ROOT, "cli/main.ts")}`,
      ...env,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

describe("make run's engine", () => {
  test("an engine that answers at DOCKER_HOST is used as it is", () => {
    const r = script({ DOCKER_HOST: ENGINE });
    expect(r.code).toBe(0);
    expect(r.out).toBe("");
    expect(r.err).toContain(`run: using the container engine at ${ENGINE}`);
  }, 30_000);

  test("a user's own DOCKER_HOST that does not answer is kept, with one warning; no engine is started", () => {
    const r = script({ DOCKER_HOST: "tcp://127.0.0.1:1" });
    expect(r.code).toBe(0);
    expect(r.out).toBe("");
    expect(r.err).toContain("no container engine answers at tcp://127.0.0.1:1 (your DOCKER_HOST, kept)");
    expect(r.err).not.toContain("engine:");
  }, 30_000);

  // where /var/run/docker.sock is there, the first case's path is taken instead
  test.skipIf(existsSync("/var/run/docker.sock"))(
    "no DOCKER_HOST and nothing at the default socket: it says so and brings one up as make test does",
    () => {
      // the private engine make test starts is found (on a bare machine ensure-engine.sh starts it)
      const dir = ENGINE.replace(/^unix:\/\//, "").replace(/\/docker\.sock$/, "");
      const r = script({ P2PRC_TEST_ENGINE_DIR: dir });
      expect(r.code).toBe(0);
      expect(r.err).toContain(
        "run: no container engine answers at unix:///var/run/docker.sock; bringing one up",
      );
      expect(r.err).toContain("engine: using running engine at");
      expect(r.out.trim()).toBe(`export DOCKER_HOST=${ENGINE}`);
    },
    30_000,
  );

  test("the Makefile's run target evals it before starting the server", () => {
    const make = readFileSync(join(ROOT, "Makefile"), "utf8");
    const run = make.slice(make.indexOf("\nrun:"), make.indexOf("\ntest:"));
    expect(run).toContain("test/engine/engine-for-run.sh");
    expect(run.indexOf("engine-for-run.sh")).toBeLessThan(run.indexOf("--as-server"));
  });
});
