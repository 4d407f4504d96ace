// Gossip flood across real processes (issue 19, finding 2): a member posts two /v1/p2p/sync bodies of
// 3000 valid self-signed records of made-up keys to a `p2prc --as-server` node. The table and state.db
// stay bounded, the node answers exchanges small and fast, and a new node bootstrapped from it still
// learns the real node. p2p/flood.test.ts has the same in process, with a manual clock.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { generateIdentity, type Identity } from "../core/index.ts";
import { signedRecord } from "../p2p/fixtures.ts";
import type { SignedRecord } from "../p2p/index.ts";
import { signedFetch, spawnNode, waitFor } from "./support.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-flood-"));
const procs: Subprocess[] = [];

interface Node {
  name: string;
  home: string;
  url: string;
  id: string;
  stderr: string[];
}

async function startNode(name: string, bootstrap: string): Promise<Node> {
  const home = join(root, name);
  const { url, nodeId, stderr } = await spawnNode({
    home,
    procs,
    name,
    env: {
      HOME: root,
      DOCKER_HOST: process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock",
      P2PRC_MACHINE_NAME: name,
      P2PRC_BOOTSTRAP: bootstrap,
      P2PRC_OPEN_NETWORK: "true", // any signer is a member: the flood comes from one
      P2PRC_GOSSIP_INTERVAL_MS: "300",
      P2PRC_SUSPECT_TIMEOUT_MS: "1500",
    },
  });
  return { name, home, url, id: nodeId, stderr };
}

/** A fresh record of `who` at 127.0.0.1:`port`, self-signed (p2p/fixtures.ts has the rest of it). */
const freshRecord = (who: Identity, port: number, name: string): SignedRecord =>
  signedRecord(who, {
    name,
    addresses: [{ host: "127.0.0.1", port }],
    version: Date.now(),
    issuedAt: Date.now(),
  });

const mallory = generateIdentity();
async function post(n: Node, path: string, body: unknown) {
  const t0 = performance.now();
  const res = await signedFetch(mallory, `${n.url}/v1/p2p${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, bytes: text.length, ms: performance.now() - t0 };
}
const tableIds = async (n: Node) =>
  (
    (await (await signedFetch(mallory, `${n.url}/v1/p2p/table`)).json()) as { nodes: { id: string }[] }
  ).nodes.map((v) => v.id);
const dbBytes = (n: Node) =>
  ["state.db", "state.db-wal"].reduce((sum, f) => {
    try {
      return sum + statSync(join(n.home, f)).size;
    } catch {
      return sum;
    }
  }, 0);

let victim: Node;
let real: Node;
beforeAll(async () => {
  victim = await startNode("victim", "");
  real = await startNode("real", `127.0.0.1:${new URL(victim.url).port}`);
  await waitFor(
    "the victim knows the real node",
    async () => (await tableIds(victim)).includes(real.id) || undefined,
    20_000,
  );
}, 60_000);

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill(9);
  await Promise.all(procs.map((p) => p.exited));
  rmSync(root, { recursive: true, force: true });
});

test("two syncs of 3000 valid self-signed records: table and state.db bounded, answers small and quick, a new node learns the real one", async () => {
  const from = freshRecord(mallory, 2, "mallory");
  const bodies = [0, 1].map((i) => ({
    from,
    // made-up keys at addresses nobody answers at
    records: Array.from({ length: 3000 }, (_, j) =>
      freshRecord(generateIdentity(), 20000 + i * 3000 + j, `f${j}`),
    ),
    deaths: [],
    want: [],
  }));
  const db0 = dbBytes(victim);
  const syncMs: number[] = [];
  for (const body of bodies) {
    const r = await post(victim, "/sync", body);
    expect(r.status).toBe(200);
    syncMs.push(Math.round(r.ms));
  }
  const after = (await tableIds(victim)).length;
  await Bun.sleep(3000); // ten rounds: the introductions are probed
  const later = (await tableIds(victim)).length;
  const db = dbBytes(victim);
  const exchange = await post(victim, "/exchange", { from, hash: "0".repeat(64) });
  const t0 = performance.now();
  const newcomer = await startNode("newcomer", `127.0.0.1:${new URL(victim.url).port}`);
  await waitFor(
    "the new node learns the real one",
    async () => (await tableIds(newcomer)).includes(real.id) || undefined,
    10_000,
  );
  const learnedMs = Math.round(performance.now() - t0);
  console.log(
    `flood across processes: syncs taken in ${syncMs.join(", ")} ms; table ${after} after, ${later} 3 s later; ` +
      `state.db ${db0} → ${db} bytes; exchange answer ${exchange.bytes} bytes in ${Math.round(exchange.ms)} ms; ` +
      `a new node learned the real one ${learnedMs} ms after it was started`,
  );
  expect(after).toBeLessThanOrEqual(5);
  expect(later).toBeLessThanOrEqual(5);
  expect(db).toBeLessThan(2 * 1024 * 1024);
  expect(exchange.status).toBe(200);
  expect(exchange.bytes).toBeLessThan(10_000);
  expect(exchange.ms).toBeLessThan(800);
  expect((await tableIds(victim)).includes(real.id)).toBe(true);
}, 60_000);
