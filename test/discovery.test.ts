// Peer-to-peer discovery across real processes: five `p2prc --as-server` nodes on 127.0.0.1, nodes
// 1-4 bootstrapped from node 0 only, with short gossip intervals. The CLI table commands run against
// each node's home while it serves. No containers are needed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { generateIdentity, type Identity } from "../core/index.ts";
import type { NodeRecord, SignedRecord } from "../p2p/index.ts";
import {
  freePort,
  nodeIdentity,
  p2prcCommand,
  runCommand,
  signedFetch,
  spawnNode,
  waitFor,
} from "./support.ts";

const ROOT = resolve(import.meta.dir, "..");
const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock";
const INTERVAL_MS = 300;
const SUSPECT_MS = 1500;
const root = mkdtempSync(join(tmpdir(), "p2prc-discovery-"));
const procs: Subprocess[] = [];
const tcpServers: Server[] = [];
const sockets: Socket[] = [];

const COMMAND = p2prcCommand();

interface Node {
  name: string;
  home: string;
  port: number;
  url: string;
  id: string;
  bootstrap: string;
  /** P2PRC_OPEN_NETWORK: any signer is a member (default true: the test network's nodes use each other). */
  open?: boolean;
  /** P2PRC_TRUSTED: node ids besides its own that may use it. */
  trusted?: string[];
  /** Its own node key (admin), loaded once it has started. */
  key?: Identity;
  proc?: Subprocess;
  stderr: string[];
}

/**
 * Starts (or restarts) a node's server, over plain HTTP (test/cluster.test.ts runs its nodes over TLS);
 * resolves once /v1/health answers.
 */
async function startNode(n: Node): Promise<Node> {
  const started = await spawnNode({
    home: n.home,
    port: n.port,
    procs,
    name: n.name,
    command: COMMAND,
    env: {
      ...(n.open === false ? {} : { P2PRC_OPEN_NETWORK: "true" }),
      ...(n.trusted ? { P2PRC_TRUSTED: n.trusted.join(",") } : {}),
      DOCKER_HOST,
      P2PRC_MACHINE_NAME: n.name,
      P2PRC_BOOTSTRAP: n.bootstrap,
      P2PRC_GOSSIP_INTERVAL_MS: String(INTERVAL_MS),
      P2PRC_SUSPECT_TIMEOUT_MS: String(SUSPECT_MS),
    },
    timeoutMs: 15_000,
  });
  n.proc = started.proc;
  n.stderr = started.stderr;
  n.id = started.nodeId;
  n.key = nodeIdentity(n.home);
  expect(n.key.nodeId).toBe(n.id);
  return n;
}

async function newNode(name: string, bootstrap: string): Promise<Node> {
  const port = await freePort();
  return {
    name,
    home: join(root, name),
    port,
    url: `http://127.0.0.1:${port}`,
    id: "",
    bootstrap,
    stderr: [],
  };
}

/** Runs the CLI against a node's home (or any home) and waits for it. */
async function cli(home: string, args: string[], extraEnv: Record<string, string> = {}) {
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? root,
    DOCKER_HOST,
    P2PRC: home,
    P2PRC_LOG_LEVEL: "warn",
    P2PRC_TLS: "false",
    ...extraEnv,
  };
  return runCommand([...COMMAND, ...args], { cwd: ROOT, env }, procs);
}

interface Row {
  id: string;
  name: string;
  address: string | null;
  port: number | null;
  nat: boolean;
  reach: "direct" | "relay";
  relays: string[];
  latencyMs: number | null;
  lastSeen: string;
  metadata: string;
}

async function ls(home: string): Promise<Row[]> {
  const r = await cli(home, ["--ls", "--json"]);
  if (r.code !== 0) throw new Error(`--ls exited ${r.code}: ${r.err}`);
  return JSON.parse(r.out) as Row[];
}

interface View {
  id: string;
  name: string;
  lastSeen: string;
  address?: string;
  port?: number;
  metadata: string;
  state: string;
  self: boolean;
}

/** A request to `n` signed by its own key (the operator's view). */
function own(n: Node, path: string): Promise<Response> {
  if (!n.key) throw new Error(`${n.name}: not started`);
  return signedFetch(n.key, `${n.url}${path}`);
}

async function table(n: Node): Promise<View[]> {
  const res = await own(n, "/v1/p2p/table");
  if (!res.ok) throw new Error(`${n.name} table: HTTP ${res.status}`);
  return ((await res.json()) as { nodes: View[] }).nodes;
}

interface Stats {
  rounds: number;
  exchanges: number;
  failures: number;
  bytesSent: number;
  bytesReceived: number;
  recordsReceived: number;
}

async function stats(n: Node): Promise<Stats> {
  return (await (await own(n, "/v1/p2p/stats")).json()) as Stats;
}

/** POST to n's /v1/p2p routes, signed by `as` (or not signed at all when `as` is null). */
async function post(n: Node, path: string, body: unknown, as: Identity | null) {
  const url = `${n.url}/v1/p2p${path}`;
  const init = {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  };
  const res = as ? await signedFetch(as, url, init) : await fetch(url, init);
  return { status: res.status, text: await res.text() };
}

const OFFER = {
  cpus: 1,
  memoryMb: 512,
  gpus: 0,
  freeContainers: 1,
  maxCpusPerContainer: 1,
  maxMemoryMbPerContainer: 512,
};

function signedRecord(
  who: Identity,
  port: number,
  over: Partial<NodeRecord> = {},
  signer: Identity = who,
): SignedRecord {
  const record: NodeRecord = {
    id: who.nodeId,
    name: "outsider",
    addresses: [{ host: "127.0.0.1", port }],
    nat: false,
    reach: "direct",
    version: Date.now(),
    metadata: "",
    offer: OFFER,
    issuedAt: Date.now(),
    ...over,
  };
  return { record, signature: signer.signJson(record) };
}

/** The version `n` holds for `id`, asked over /sync (by a throwaway identity that is then in n's table). */
async function versionAt(
  n: Node,
  id: string,
  asker: SignedRecord,
  as: Identity,
): Promise<number | undefined> {
  const r = await post(n, "/sync", { from: asker, records: [], deaths: [], want: [id] }, as);
  const body = JSON.parse(r.text) as { records: SignedRecord[] };
  return body.records.find((x) => x.record.id === id)?.record.version;
}

const nodes: Node[] = [];
const ids = (views: { id: string }[]) => views.map((v) => v.id).sort();
const allIds = () => nodes.map((n) => n.id).sort();

beforeAll(async () => {
  const first = await newNode("node-0", "");
  await startNode(first);
  nodes.push(first);
  const rest = await Promise.all([1, 2, 3, 4].map((i) => newNode(`node-${i}`, `127.0.0.1:${first.port}`)));
  await Promise.all(rest.map(startNode));
  nodes.push(...rest);
}, 30_000);

afterAll(async () => {
  for (const s of sockets) s.destroy();
  for (const s of tcpServers) s.close();
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill(9);
  await Promise.all(procs.map((p) => p.exited));
  rmSync(root, { recursive: true, force: true });
});

describe("discovery across processes", () => {
  test("five nodes bootstrapped from node 0 only all list all five, with names and ports", async () => {
    const t0 = Date.now();
    await waitFor(
      "all five tables complete",
      async () => {
        const tables = await Promise.all(nodes.map(table));
        return tables.every((t) => t.length === 5) ? true : undefined;
      },
      10 * INTERVAL_MS + 5000,
    );
    const took = Date.now() - t0;
    const lists = await Promise.all(nodes.map((n) => ls(n.home)));
    lists.forEach((rows, i) => {
      const n = nodes[i] as Node;
      expect(ids(rows)).toEqual(allIds());
      expect(rows[0]?.id).toBe(n.id); // this node first (latency 0)
      for (const m of nodes) {
        const row = rows.find((r) => r.id === m.id);
        expect(row).toMatchObject({
          name: m.name,
          address: "127.0.0.1",
          port: m.port,
          nat: false,
          metadata: "",
        });
      }
    });
    expect(took).toBeLessThan(10_000);
  }, 20_000);

  test("--ls --json prints exactly {id, name, address, port, nat, reach, relays, latencyMs, lastSeen, metadata}, sorted by latency", async () => {
    const rows = await ls((nodes[1] as Node).home);
    expect(rows.length).toBeGreaterThanOrEqual(5);
    for (const r of rows) {
      expect(Object.keys(r).sort()).toEqual([
        "address",
        "id",
        "lastSeen",
        "latencyMs",
        "metadata",
        "name",
        "nat",
        "port",
        "reach",
        "relays",
      ]);
      expect(r.id).toMatch(/^[0-9a-f]{64}$/);
      expect(Number.isNaN(Date.parse(r.lastSeen))).toBe(false);
      expect(r.lastSeen).toBe(new Date(Date.parse(r.lastSeen)).toISOString());
      expect(typeof r.nat).toBe("boolean");
      expect(r.reach).toBe("direct"); // all on loopback: every node dials every other
      expect(r.relays).toEqual([]);
    }
    expect(rows[0]?.latencyMs).toBe(0);
    const lat = rows.map((r) => r.latencyMs ?? Number.POSITIVE_INFINITY);
    expect(lat).toEqual([...lat].sort((a, b) => a - b));
    // the plain table has a header and one line per node
    const plain = await cli((nodes[1] as Node).home, ["--ls"]);
    expect(plain.code).toBe(0);
    expect(plain.out.split("\n")[0]).toMatch(/^ID\s+NAME\s+ADDRESS\s+REACH\s+LATENCY/);
    for (const n of nodes) expect(plain.out).toContain(n.name);
  });

  test("steady state: bytes sent per round stay bounded and no records move", async () => {
    const n = nodes[2] as Node;
    await Bun.sleep(3 * INTERVAL_MS); // let the last syncs of the join settle
    const a = await stats(n);
    await Bun.sleep(8 * INTERVAL_MS);
    const b = await stats(n);
    const rounds = b.rounds - a.rounds;
    expect(rounds).toBeGreaterThanOrEqual(4);
    const perRound = (b.bytesSent - a.bytesSent) / rounds;
    expect(perRound).toBeGreaterThan(0);
    expect(perRound).toBeLessThan(5000);
    expect(b.recordsReceived - a.recordsReceived).toBe(0);
    expect(b.failures - a.failures).toBe(0);
  }, 10_000);

  test("--amd on one node: the metadata reaches every node's --ls --json", async () => {
    const n3 = nodes[3] as Node;
    const text = "gpu: rtx 4090, 24 GB";
    const r = await cli(n3.home, ["--amd", text]);
    expect(r.code).toBe(0);
    await waitFor(
      "metadata everywhere",
      async () => {
        const tables = await Promise.all(nodes.map(table));
        return tables.every((t) => t.find((v) => v.id === n3.id)?.metadata === text) ? true : undefined;
      },
      10 * INTERVAL_MS + 2000,
    );
    for (const n of nodes) {
      expect((await ls(n.home)).find((row) => row.id === n3.id)?.metadata).toBe(text);
    }
  }, 15_000);

  test("forged records sent to /exchange and /sync are refused and appear nowhere; a signed one is taken", async () => {
    const n0 = nodes[0] as Node;
    const n1 = nodes[1] as Node;
    const closed = await freePort(); // nothing listens: the outsiders will be declared dead later
    const mallory = generateIdentity();
    const stranger = generateIdentity();
    const ghost = generateIdentity();
    const from = signedRecord(mallory, closed, { name: "mallory" });
    const badSig = { ...from, record: { ...from.record, name: "tampered" } };
    const otherId = signedRecord(ghost, closed, { name: "ghost" }, mallory);

    for (const bad of [badSig, otherId]) {
      const r = await post(n0, "/exchange", { from: bad, hash: "0".repeat(64) }, mallory);
      expect(r.status).toBe(400);
      expect(r.text).not.toContain(n1.id); // no digest given to a forger
    }
    const honest = signedRecord(stranger, closed, { name: "stranger", metadata: "honest" });
    const tampered = { ...honest, record: { ...honest.record, metadata: "tampered" } };
    const takeover = signedRecord(
      { nodeId: n1.id } as Identity,
      closed,
      { name: "owned", version: Number.MAX_SAFE_INTEGER },
      mallory,
    );
    const ghostRec = signedRecord(ghost, closed, { name: "ghost" }, mallory);
    for (const target of [n0, nodes[2] as Node]) {
      const r = await post(
        target,
        "/sync",
        {
          from,
          records: [tampered, takeover, ghostRec],
          deaths: [],
          want: [],
        },
        mallory,
      );
      expect([200, 400]).toContain(r.status);
    }
    // a correctly signed record of a fresh identity is taken (the check is real): from its own node
    // (a record passed on by another node waits until its node is reached, see p2p/flood.test.ts)
    const ok = await post(n0, "/sync", { from: honest, records: [], deaths: [], want: [] }, stranger);
    expect(ok.status).toBe(200);
    const seen = (await table(n0)).find((v) => v.id === stranger.nodeId);
    expect(seen).toMatchObject({ name: "stranger", metadata: "honest", port: closed });

    // a few rounds later, on every node: no forgery, node 1 still itself
    const end = Date.now() + 6 * INTERVAL_MS;
    while (Date.now() < end) {
      for (const t of await Promise.all(nodes.map(table))) {
        const names = t.map((v) => v.name);
        expect(names).not.toContain("tampered");
        expect(names).not.toContain("owned");
        expect(t.map((v) => v.id)).not.toContain(ghost.nodeId);
        expect(t.find((v) => v.id === n1.id)?.name).toBe("node-1");
        expect(t.find((v) => v.id === stranger.nodeId)?.metadata ?? "honest").toBe("honest");
      }
      await Bun.sleep(INTERVAL_MS);
    }
  }, 15_000);

  test("a seed that accepts TCP and never answers: gossip goes on, rounds keep coming", async () => {
    let accepted = 0;
    const tarpit = createServer((s) => {
      accepted++;
      sockets.push(s); // hold it open, never write
    });
    tcpServers.push(tarpit);
    await new Promise<void>((r) => tarpit.listen(0, "127.0.0.1", r));
    const port = (tarpit.address() as { port: number }).port;
    const n0 = nodes[0] as Node;
    const added = await cli(n0.home, ["--as", `127.0.0.1:${port}`]);
    expect(added.code).toBe(0);
    expect(added.out).toContain(`127.0.0.1:${port}`);
    await waitFor("the tarpit contacted", async () => (accepted > 0 ? true : undefined), 10 * INTERVAL_MS);
    const a = await stats(n0);
    const text = `after tarpit ${Date.now()}`;
    expect((await cli(n0.home, ["--amd", text])).code).toBe(0);
    await waitFor(
      "node 0's metadata everywhere",
      async () => {
        const tables = await Promise.all(nodes.map(table));
        return tables.every((t) => t.find((v) => v.id === n0.id)?.metadata === text) ? true : undefined;
      },
      10 * INTERVAL_MS + 2000,
    );
    await Bun.sleep(4 * INTERVAL_MS);
    const b = await stats(n0);
    // a round waits at most one exchange timeout (< the interval) for the tarpit
    expect(b.rounds - a.rounds).toBeGreaterThanOrEqual(4);
    expect(b.failures).toBeGreaterThan(a.failures);
    for (const t of await Promise.all(nodes.map(table)))
      for (const n of nodes) expect(ids(t)).toContain(n.id);
  }, 15_000);

  test("kill -9 one node: every other node drops it within 3 × suspectTimeoutMs; restarted, it rejoins everywhere", async () => {
    const victim = nodes[4] as Node;
    const others = nodes.slice(0, 4);
    // when each node last heard from it: none may drop it before suspectTimeoutMs past that (a death
    // notice spreads the first one's verdict, so the earliest of them bounds when all have dropped it)
    const heard = (await Promise.all(others.map(table))).map((t) =>
      Date.parse(t.find((v) => v.id === victim.id)?.lastSeen ?? ""),
    );
    expect(heard.every((at) => Number.isFinite(at))).toBe(true);
    victim.proc?.kill(9);
    await victim.proc?.exited;
    await waitFor(
      "the dead node dropped everywhere",
      async () => {
        const tables = await Promise.all(others.map(table));
        return tables.every((t) => !t.some((v) => v.id === victim.id)) ? true : undefined;
      },
      3 * SUSPECT_MS,
    );
    // not before the timeout (10 ms: the table's times are whole milliseconds, as Date.now's)
    expect(Date.now()).toBeGreaterThanOrEqual(Math.min(...heard) + SUSPECT_MS - 10);
    for (const n of others) expect(ids(await ls(n.home))).not.toContain(victim.id);

    const oldId = victim.id;
    await startNode(victim);
    expect(victim.id).toBe(oldId);
    await waitFor(
      "the restarted node back everywhere",
      async () => {
        const tables = await Promise.all(nodes.map(table));
        return tables.every((t) => nodes.every((n) => t.some((v) => v.id === n.id))) ? true : undefined;
      },
      10 * INTERVAL_MS + 3000,
    );
    for (const n of nodes)
      expect((await ls(n.home)).find((r) => r.id === victim.id)).toMatchObject({
        name: "node-4",
        port: victim.port,
      });
  }, 20_000);

  test("--arn --ip H -p P adds a root node and keeps the table; the network then finds it", async () => {
    const n2 = nodes[2] as Node;
    const lone = await startNode(await newNode("node-lone", ""));
    const before = ids(await ls(n2.home));
    const r = await cli(n2.home, ["--arn", "--ip", "127.0.0.1", "-p", String(lone.port)]);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`127.0.0.1:${lone.port}`);
    const after = ids(await ls(n2.home));
    for (const id of before) expect(after).toContain(id);
    await waitFor(
      "the root node known both ways",
      async () => {
        const tables = await Promise.all([...nodes, lone].map(table));
        const everyone = [...nodes, lone].map((n) => n.id);
        return tables.every((t) => everyone.every((id) => t.some((v) => v.id === id))) ? true : undefined;
      },
      10 * INTERVAL_MS + 3000,
    );
  }, 20_000);

  test("--as and --arn with a bad address: exit 2, one line on stderr", async () => {
    const home = (nodes[1] as Node).home;
    for (const args of [
      ["--as", "no-port-here"],
      ["--as", "127.0.0.1:70000"],
      ["--as", "127.0.0.1:"],
      ["--as", "bad host:80"],
      ["--arn", "--ip", "127.0.0.1", "-p", "0"],
      ["--arn", "--ip", "127.0.0.1"],
    ]) {
      const r = await cli(home, args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.errLines).toHaveLength(1);
      expect(r.errLines[0]).toStartWith("p2prc: ");
      expect(r.out).toBe("");
    }
  });

  test("--us from a fresh home bootstrapped from node 0 exchanges now and prints the whole table", async () => {
    const home = join(root, "us-client");
    const port = await freePort();
    const r = await cli(home, ["--us", "--json"], {
      P2PRC_BOOTSTRAP: `127.0.0.1:${(nodes[0] as Node).port}`,
      P2PRC_SERVER_HOST: "127.0.0.1",
      P2PRC_SERVER_PORT: String(port),
      P2PRC_MACHINE_NAME: "us-client",
    });
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.out) as Row[];
    for (const n of nodes)
      expect(rows.find((x) => x.id === n.id)).toMatchObject({ name: n.name, port: n.port });
    expect(rows[0]?.name).toBe("us-client");
    // node 0 was measured directly
    expect(rows.find((x) => x.id === (nodes[0] as Node).id)?.latencyMs).toBeGreaterThan(0);
    // and the result was kept: --ls on that home shows the same nodes
    expect(ids(await ls(home))).toEqual(ids(rows));
  }, 15_000);

  test("a node whose bootstrap list names its own address keeps its record version", async () => {
    const self = await newNode("node-self-seed", "");
    self.bootstrap = `127.0.0.1:${self.port}`;
    await startNode(self);
    const askerKey = generateIdentity();
    const asker = signedRecord(askerKey, await freePort(), { name: "asker" });
    await Bun.sleep(2 * INTERVAL_MS);
    const v1 = await versionAt(self, self.id, asker, askerKey);
    await Bun.sleep(5 * INTERVAL_MS);
    const v2 = await versionAt(self, self.id, asker, askerKey);
    expect(v1).toBeDefined();
    expect(v2).toBe(v1 as number);
  }, 15_000);

  test("a closed node (no openNetwork): unsigned → 401, an outsider → 403 and its gossip never enters the table; its own key and a trusted node may", async () => {
    const friend = generateIdentity();
    const outsider = generateIdentity();
    const closedNode = await newNode("node-closed", "");
    closedNode.open = false;
    closedNode.trusted = [friend.nodeId];
    await startNode(closedNode);
    const nowhere = await freePort();
    const tableUrl = `${closedNode.url}/v1/p2p/table`;

    // unsigned → 401 (a read and a gossip exchange alike); health and identity stay public
    expect((await fetch(tableUrl)).status).toBe(401);
    const outsiderRec = signedRecord(outsider, nowhere, { name: "outsider" });
    const unsigned = await post(closedNode, "/exchange", { from: outsiderRec, hash: "0".repeat(64) }, null);
    expect(unsigned.status).toBe(401);
    expect((await fetch(`${closedNode.url}/v1/health`)).status).toBe(200);
    expect((await fetch(`${closedNode.url}/v1/identity`)).status).toBe(200);

    // signed by a key that is not a member → 403, whatever the route; nothing is said about the table
    const read = await signedFetch(outsider, tableUrl);
    expect(read.status).toBe(403);
    expect(await read.text()).not.toContain(closedNode.id);
    const ex = await post(closedNode, "/exchange", { from: outsiderRec, hash: "0".repeat(64) }, outsider);
    expect(ex.status).toBe(403);
    expect(ex.text).not.toContain(closedNode.id); // no record or digest given to a non-member
    const sync = await post(
      closedNode,
      "/sync",
      { from: outsiderRec, records: [outsiderRec], deaths: [], want: [closedNode.id] },
      outsider,
    );
    expect(sync.status).toBe(403);
    expect(sync.text).not.toContain(closedNode.id);

    // the node's own key and a trusted node are members: the checks above are about membership
    expect((await own(closedNode, "/v1/p2p/table")).status).toBe(200);
    const friendRec = signedRecord(friend, nowhere, { name: "friend" });
    const ok = await post(closedNode, "/exchange", { from: friendRec, hash: "0".repeat(64) }, friend);
    expect(ok.status).toBe(200);
    expect(ok.text).toContain(closedNode.id);

    // the friend's record was taken; over a few rounds the outsider never appears
    expect((await table(closedNode)).find((v) => v.id === friend.nodeId)).toMatchObject({ name: "friend" });
    const end = Date.now() + 3 * INTERVAL_MS;
    while (Date.now() < end) {
      const t = await table(closedNode);
      expect(t.map((v) => v.id)).not.toContain(outsider.nodeId);
      expect(t.map((v) => v.name)).not.toContain("outsider");
      await Bun.sleep(INTERVAL_MS);
    }
  }, 20_000);
});
