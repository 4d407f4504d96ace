// A node's stop: the networks of owners that have no container left are removed then, not left for a
// pass that a node stopping for good never runs; an owner's network that still has containers stays
// (containers outlive a node's restart).
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultConfig } from "../config/index.ts";
import { generateIdentity, memoryLogger, systemClock } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import type { Caller } from "./caller.ts";
import { FakeEngine } from "./engine/fake.ts";
import { startServerNode } from "./index.ts";

const dir = mkdtempSync(join(tmpdir(), "p2prc-node-stop-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("stopping removes the networks of owners with no container left, at once", async () => {
  const identity = generateIdentity();
  const engine = new FakeEngine();
  const node = await startServerNode({
    nodeId: identity.nodeId,
    version: "test",
    config: {
      ...defaultConfig("stop-test"),
      serverHost: "127.0.0.1",
      serverPort: 0,
      defaultImage: "p2prc-test/busybox",
    },
    engine,
    records: openStore(":memory:").containers,
    clock: systemClock,
    logger: memoryLogger(),
    gpus: async () => [],
    dataDir: dir,
  });
  const a: Caller = { id: "a".repeat(64), admin: false, operator: false };
  const b: Caller = { id: "b".repeat(64), admin: false, operator: false };
  const owners = async () =>
    (await engine.listNetworks(`p2prc.node=${identity.nodeId}`)).map((n) => n.labels["p2prc.owner"]).sort();
  await node.containers.create({ command: ["tail", "-f", "/dev/null"] }, a, "127.0.0.1");
  const mine = await node.containers.create({ command: ["tail", "-f", "/dev/null"] }, b, "127.0.0.1");
  await node.containers.remove(mine.id, b);
  // within the idle time a pass keeps b's network (its next create does not wait for a new one)
  expect((await node.reconciler.run()).networks).toEqual([]);
  expect(await owners()).toEqual([a.id, b.id]);
  await node.stop();
  expect(await owners()).toEqual([a.id]);
});
