// A node runs itself again with its allocator setting (issue 12): the same process, the same arguments,
// once; a value the user set is kept. The compiled binary's path is checked in test/binary.test.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { NODE_ALLOCATOR_ENV, runsNode } from "./allocator.ts";

const dir = mkdtempSync(join(tmpdir(), "p2prc-allocator-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const script = join(dir, "node.ts");
writeFileSync(
  script,
  `import { execWithNodeAllocator } from ${JSON.stringify(resolve(import.meta.dir, "allocator.ts"))};
const before = process.env.P2PRC_TEST_STARTS ?? "";
process.env.P2PRC_TEST_STARTS = before + "x"; // seen by the exec'd image only if it came through env
await execWithNodeAllocator();
console.log(JSON.stringify({ pid: process.pid, env: process.env, argv: process.argv.slice(2) }));
`,
);

function run(env: Record<string, string>) {
  const proc = Bun.spawnSync([process.execPath, script, "--as-server", "a b", "c"], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(proc.exitCode).toBe(0);
  return { spawned: proc.pid, ...JSON.parse(proc.stdout.toString()) } as {
    spawned: number;
    pid: number;
    env: Record<string, string>;
    argv: string[];
  };
}

describe("the node's allocator setting", () => {
  test("runsNode: the server action under any of its names", () => {
    expect(runsNode(["--as-server"])).toBe(true);
    expect(runsNode(["--config-dir", "/x", "-s"])).toBe(true);
    expect(runsNode(["--Server"])).toBe(true);
    expect(runsNode(["--asServer"])).toBe(true);
    expect(runsNode(["--as-server=true"])).toBe(true);
    expect(runsNode(["--name", "as-server"])).toBe(false);
    expect(runsNode(["--ni"])).toBe(false);
    expect(runsNode(["--ls"])).toBe(false);
    expect(runsNode([])).toBe(false);
  });

  test.if(process.platform === "linux")(
    "the process runs itself again with the setting: same pid, same arguments, once",
    () => {
      const r = run({});
      for (const [k, v] of Object.entries(NODE_ALLOCATOR_ENV)) expect(r.env[k]).toBe(v);
      expect(r.pid).toBe(r.spawned); // the spawned process itself printed: execve keeps the pid
      expect(r.argv).toEqual(["--as-server", "a b", "c"]);
      expect(r.env.P2PRC_TEST_STARTS).toBe("xx"); // the first image, then the second: no third
    },
  );

  test.if(process.platform === "linux")("a value the user set is kept, and nothing runs twice", () => {
    const set = Object.fromEntries(Object.keys(NODE_ALLOCATOR_ENV).map((k) => [k, "1"]));
    const r = run(set);
    for (const k of Object.keys(NODE_ALLOCATOR_ENV)) expect(r.env[k]).toBe("1");
    expect(r.env.P2PRC_TEST_STARTS).toBe("x");
  });
});
