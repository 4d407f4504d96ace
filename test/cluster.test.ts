// Shared clusters across real processes, over TLS: a host and two members run `p2prc --as-server`
// (no openNetwork, no trusted list: the cluster document is the only way in). The host hosts the
// cluster and adds and removes a member with the CLI while the nodes run; the other nodes learn each
// version by gossip. Each node's certificate is pinned from its home; nothing else is trusted.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { generateIdentity, type Identity, signRequest } from "../core/index.ts";
import { collectStderr, freePort, nodeIdentity, p2prcCommand, runCommand, waitFor } from "./support.ts";

const ROOT = resolve(import.meta.dir, "..");
const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock";
const INTERVAL_MS = 1000;
const root = mkdtempSync(join(tmpdir(), "p2prc-cluster-"));
const procs: Subprocess[] = [];

const COMMAND = p2prcCommand();

interface Node {
  name: string;
  home: string;
  port: number;
  id: string;
  key: Identity;
  bootstrap: string;
  proc?: Subprocess;
  stderr: string[];
}

const env = (n: { home: string }, extra: Record<string, string> = {}) => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: process.env.HOME ?? root,
  DOCKER_HOST,
  P2PRC: n.home,
  P2PRC_LOG_LEVEL: "warn",
  ...extra,
});

const cli = (home: string, args: string[]) =>
  runCommand([...COMMAND, ...args], { cwd: ROOT, env: env({ home }) }, procs);

/** The node's certificate, read from its home: the test pins it like a peer pins a record's. */
function certOf(n: Node): string {
  return readFileSync(join(n.home, "identity", "tls.crt"), "utf8");
}

const urlOf = (n: Node) => `https://127.0.0.1:${n.port}`;

/** A request to `n` signed by `who`, over TLS pinned to `n`'s certificate. */
function call(n: Node, who: Identity, method: string, path: string, json?: unknown): Promise<Response> {
  const url = `${urlOf(n)}${path}`;
  const body = json === undefined ? "" : JSON.stringify(json);
  return fetch(url, {
    method,
    headers: { "content-type": "application/json", ...signRequest(who, method, url, body) },
    body: json === undefined ? undefined : body,
    tls: { ca: certOf(n), checkServerIdentity: () => undefined },
    signal: AbortSignal.timeout(10_000),
  });
}

async function makeNode(name: string, bootstrap = ""): Promise<Node> {
  const home = join(root, name);
  const who = await cli(home, ["--whoami"]);
  expect(who.code).toBe(0);
  return {
    name,
    home,
    port: await freePort(),
    id: who.out.trim(),
    key: nodeIdentity(home),
    bootstrap,
    stderr: [],
  };
}

async function startNode(n: Node): Promise<void> {
  n.stderr = [];
  const proc = Bun.spawn([...COMMAND, "--as-server"], {
    cwd: ROOT,
    env: env(n, {
      P2PRC_SERVER_HOST: "127.0.0.1",
      P2PRC_SERVER_PORT: String(n.port),
      P2PRC_MACHINE_NAME: n.name,
      P2PRC_BOOTSTRAP: n.bootstrap,
      P2PRC_GOSSIP_INTERVAL_MS: String(INTERVAL_MS),
      P2PRC_DEFAULT_IMAGE: "p2prc-test/busybox",
    }),
    stdout: "ignore",
    stderr: "pipe",
  });
  procs.push(proc);
  n.proc = proc;
  collectStderr(proc, n.stderr);
  await waitFor(
    `${n.name} up`,
    async () => {
      if (proc.exitCode !== null) throw new Error(`${n.name} exited ${proc.exitCode}: ${n.stderr.join("")}`);
      if (!existsSync(join(n.home, "identity", "tls.crt"))) return undefined;
      const res = await fetch(`${urlOf(n)}/v1/health`, {
        tls: { ca: certOf(n), checkServerIdentity: () => undefined },
      }).catch(() => undefined);
      return res?.ok ? true : undefined;
    },
    15_000,
  );
}

async function stopNode(n: Node): Promise<void> {
  n.proc?.kill("SIGTERM");
  await n.proc?.exited;
  n.proc = undefined;
}

async function tableIds(n: Node): Promise<string[]> {
  const res = await call(n, n.key, "GET", "/v1/p2p/table");
  if (!res.ok) throw new Error(`${n.name} table: HTTP ${res.status}`);
  return ((await res.json()) as { nodes: { id: string }[] }).nodes.map((r) => r.id).sort();
}

let host: Node;
let alice: Node;
let bob: Node;
const carol = generateIdentity(); // a member without a node of her own: she only uses the others
const outsider = generateIdentity();
const created: { node: Node; id: string }[] = [];

const createAs = (n: Node, who: Identity) =>
  call(n, who, "POST", "/v1/containers", { command: ["sleep", "60"] });

beforeAll(async () => {
  host = await makeNode("host");
  alice = await makeNode("alice", `127.0.0.1:${host.port}`);
  bob = await makeNode("bob", `127.0.0.1:${host.port}`);
  const hosted = await cli(host.home, [
    "--host-cluster",
    "lab",
    "--users",
    `${alice.id}=alice,${bob.id}=bob`,
  ]);
  expect(hosted.code).toBe(0);
  const doc = join(host.home, "clusters", "lab.json");
  expect(existsSync(doc)).toBe(true);
  // alice joins from the document file; bob asks the running host
  expect((await cli(alice.home, ["--join", doc])).code).toBe(0);
  await startNode(host);
  const joined = await cli(bob.home, ["--join", `127.0.0.1:${host.port}`]);
  expect(joined.err).toBe("");
  expect(joined.code).toBe(0);
  await Promise.all([startNode(alice), startNode(bob)]);
  const all = [host.id, alice.id, bob.id].sort();
  for (const n of [host, alice, bob]) {
    await waitFor(
      `${n.name} sees all three`,
      async () => {
        const ids = await tableIds(n);
        return ids.length === 3 && ids.every((id, i) => id === all[i]) ? ids : undefined;
      },
      20_000,
    );
  }
}, 60_000);

afterAll(async () => {
  for (const c of created) await call(c.node, c.node.key, "DELETE", `/v1/containers/${c.id}`).catch(() => {});
  for (const p of procs) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.exited));
  rmSync(root, { recursive: true, force: true });
});

describe("a shared cluster over TLS", () => {
  test("every node serves TLS only with its own certificate; a plain or unpinned request fails", async () => {
    for (const n of [host, alice, bob]) {
      expect((await fetch(`http://127.0.0.1:${n.port}/v1/health`).catch(() => undefined))?.ok).not.toBe(true);
      await expect(fetch(`${urlOf(n)}/v1/health`)).rejects.toThrow();
      const other = n === host ? alice : host;
      await expect(
        fetch(`${urlOf(n)}/v1/health`, { tls: { ca: certOf(other), checkServerIdentity: () => undefined } }),
      ).rejects.toThrow();
    }
  });

  test("members use each other's nodes; an outsider and a not-yet member get 403", async () => {
    const res = await createAs(bob, alice.key);
    expect(res.status).toBe(201);
    created.push({ node: bob, id: ((await res.json()) as { id: string }).id });
    for (const n of [host, alice, bob]) {
      expect((await createAs(n, outsider)).status).toBe(403);
      expect((await createAs(n, carol)).status).toBe(403);
    }
  });

  test("the host adds a member while the nodes run: it can create containers everywhere", async () => {
    const added = await cli(host.home, ["--cluster-add", `${carol.nodeId}=carol`]);
    expect(added.code).toBe(0);
    for (const n of [host, alice, bob]) {
      await waitFor(
        `${n.name} lets carol in`,
        async () => ((await call(n, carol, "GET", "/v1/containers")).status === 200 ? true : undefined),
        2 * INTERVAL_MS,
      );
    }
    const res = await createAs(alice, carol);
    expect(res.status).toBe(201);
    created.push({ node: alice, id: ((await res.json()) as { id: string }).id });
  });

  test("the host removes her: within a few ms (not a gossip interval) every node answers 403", async () => {
    const removed = await cli(host.home, ["--cluster-remove", carol.nodeId]);
    expect(removed.code).toBe(0);
    expect(removed.out).not.toContain("did not take it"); // the running host took it at once
    const done = performance.now();
    const lost: Record<string, number> = {};
    await Promise.all(
      [host, alice, bob].map(async (n) => {
        await waitFor(
          `${n.name} refuses carol`,
          async () => ((await call(n, carol, "GET", "/v1/containers")).status === 403 ? true : undefined),
          5 * INTERVAL_MS,
          5, // poll every 5 ms: the bound below is far tighter than the default 50 ms step would show
        );
        lost[n.name] = performance.now() - done;
      }),
    );
    console.log(`carol lost access after (ms since the CLI returned): ${JSON.stringify(lost)}`);
    // Docs/Security.md promises 403 everywhere "within a few ms": the host takes the new version at once
    // and pushes it to every peer, not waiting for a gossip round (1 s here). Measured 8-10 ms on a loaded
    // 2-core machine; 300 ms leaves room for a slow CI machine yet fails if only gossip carried it.
    for (const ms of Object.values(lost)) expect(ms).toBeLessThanOrEqual(300);
    expect((await createAs(bob, carol)).status).toBe(403);
  });

  test("a node that was down takes the newer version by gossip when it comes back", async () => {
    await stopNode(bob);
    const added = await cli(host.home, ["--cluster-add", outsider.nodeId]);
    expect(added.code).toBe(0);
    await waitFor(
      "alice lets the new member in",
      async () => ((await call(alice, outsider, "GET", "/v1/containers")).status === 200 ? true : undefined),
      3 * INTERVAL_MS,
    );
    await startNode(bob);
    await waitFor(
      "bob learns the new version",
      async () => ((await call(bob, outsider, "GET", "/v1/containers")).status === 200 ? true : undefined),
      5 * INTERVAL_MS,
    );
    const removed = await cli(host.home, ["--cluster-remove", outsider.nodeId]);
    expect(removed.code).toBe(0);
    for (const n of [host, alice, bob]) {
      await waitFor(
        `${n.name} refuses the removed member`,
        async () => ((await call(n, outsider, "GET", "/v1/containers")).status === 403 ? true : undefined),
        2 * INTERVAL_MS,
      );
    }
  });

  test("forged documents change nothing: a member cannot sign the host's cluster or invent one", async () => {
    const held = JSON.parse(readFileSync(join(host.home, "clusters", "lab.json"), "utf8")) as {
      cluster: { members: { id: string; label: string; role: string }[]; version: number };
      signature: string;
    };
    // alice re-signs the host's document with herself… and carol added: the host's signature fails
    const cluster = {
      ...held.cluster,
      members: [...held.cluster.members, { id: carol.nodeId, label: "x", role: "admin" }],
      version: held.cluster.version + 1,
    };
    const forged = { cluster, signature: alice.key.signJson(cluster) };
    expect((await call(bob, alice.key, "POST", "/v1/p2p/cluster", forged)).status).toBe(400);
    // a cluster alice "hosts" that nobody joined is not taken
    const own = { ...cluster, host: alice.id, name: "mine" };
    const invented = { cluster: own, signature: alice.key.signJson(own) };
    const res = await call(bob, alice.key, "POST", "/v1/p2p/cluster", invented);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { result: string }).result).toBe("unknown");
    expect((await createAs(bob, carol)).status).toBe(403);
    // an outsider cannot even push
    expect((await call(bob, outsider, "POST", "/v1/p2p/cluster", held)).status).toBe(403);
  });

  test("--clusters lists the hosted cluster and the members' view", async () => {
    const mine = await cli(host.home, ["--clusters", "--json"]);
    const list = JSON.parse(mine.out) as { name: string; hosting: boolean; members: { id: string }[] }[];
    expect(list.map((c) => [c.name, c.hosting])).toEqual([["lab", true]]);
    expect(list[0]?.members.map((m) => m.id).sort()).toEqual([host.id, alice.id, bob.id].sort());
    const theirs = JSON.parse((await cli(alice.home, ["--clusters", "--json"])).out) as {
      hosting: boolean;
      active: boolean;
    }[];
    expect(theirs.map((c) => [c.hosting, c.active])).toEqual([[false, true]]);
  });

  test("a member leaves: its node stops letting the cluster in; the host cannot leave its own", async () => {
    expect((await call(bob, alice.key, "GET", "/v1/containers")).status).toBe(200);
    const hostLeaves = await cli(host.home, ["--leave-cluster", "lab"]);
    expect(hostLeaves.code).not.toBe(0);
    expect(hostLeaves.err).toContain("cannot leave");
    const left = await cli(bob.home, ["--leave-cluster", "lab"]);
    expect(left.code).toBe(0);
    await waitFor(
      "bob refuses alice",
      async () => ((await call(bob, alice.key, "GET", "/v1/containers")).status === 403 ? true : undefined),
      3 * INTERVAL_MS,
    );
    expect((await call(alice, bob.key, "GET", "/v1/containers")).status).toBe(200); // alice still lets bob in
    const again = await cli(bob.home, ["--leave-cluster", "lab"]);
    expect(again.code).not.toBe(0);
  });
});
