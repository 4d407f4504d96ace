// Defect 9: a non-member's `--us` showed a table with only itself, and neither side said that the peers
// refused it. A closed node (trusts nobody but itself) and a client home that knows only that node.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { runCommand, spawnNode, waitFor } from "./support.ts";

const ROOT = resolve(import.meta.dir, "..");
const root = mkdtempSync(join(tmpdir(), "p2prc-us-refused-"));
const procs: Subprocess[] = [];
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill(9);
  await Promise.all(procs.map((p) => p.exited));
  rmSync(root, { recursive: true, force: true });
});

const cli = (args: string[]) =>
  runCommand(
    [process.execPath, join(ROOT, "cli/main.ts"), ...args],
    {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: root,
        P2PRC: join(root, "client"),
        P2PRC_LOG_LEVEL: "warn",
        P2PRC_TLS: "false",
      },
    },
    procs,
  );

test("--us by a non-member says which nodes refused it and how to get in; the node logs whom it refused", async () => {
  const node = await spawnNode({
    home: join(root, "closed"),
    procs,
    name: "closed",
    command: [process.execPath, join(ROOT, "cli/main.ts")],
    env: { HOME: root },
  });
  const me = JSON.parse((await cli(["--whoami", "--json"])).out) as { id: string };
  expect((await cli(["--as", `127.0.0.1:${node.port}`])).code).toBe(0);
  const r = await cli(["--us"]);
  expect(r.code).toBe(0);
  // the table still prints (only this node is in it), and stderr says why
  expect(r.out).toContain(me.id.slice(0, 12));
  expect(r.errLines[0]).toBe("p2prc: 1 of the nodes asked refused this node (not a member there):");
  expect(r.errLines[1]).toContain(`127.0.0.1:${node.port}`);
  expect(r.errLines[1]).toContain("is not a member");
  expect(r.errLines[2]).toStartWith("hint: send them this node's id (p2prc --whoami)");
  // --json keeps stdout parseable; the refusal is still on stderr
  const j = await cli(["--us", "--json"]);
  expect(JSON.parse(j.out).map((p: { id: string }) => p.id)).toEqual([me.id]);
  expect(j.err).toContain("refused this node");
  await waitFor(
    "the node's log names the refused client",
    async () =>
      node.stderr.join("").includes(`refused node ${me.id}: not a member here`) ? true : undefined,
    5000,
  );
}, 40_000);
