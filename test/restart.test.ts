// Restart and leases: the server process is killed hard, the engine is changed behind its back, and
// after a restart the server's list and the engine agree exactly. Leases end on time.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import { start } from "../abstractions/index.ts";
import { type Identity, memoryLogger } from "../core/index.ts";
import { freePort, nodeIdentity, removeNodeNetworks, signedFetch, spawnNode, waitFor } from "./support.ts";

const ROOT = resolve(import.meta.dir, "..");
const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const BUSYBOX = "p2prc-test/busybox";
const root = mkdtempSync(join(tmpdir(), "p2prc-restart-"));
const nodeIds = new Set<string>();
const procs: Subprocess[] = [];

const engineIds = async (nodeId: string) =>
  (await docker.listContainers({ all: true, filters: { label: [`p2prc.node=${nodeId}`] } }))
    .map((c) => c.Id)
    .sort();

/** Starts `bun cli/main.ts --as-server` on the home and port; resolves once /v1/health answers. */
async function startCli(home: string, port: number) {
  const s = await spawnNode({
    home,
    port,
    procs,
    name: "server",
    command: [process.execPath, join(ROOT, "cli/main.ts")],
    env: { P2PRC_DEFAULT_CPUS: "0.5" },
    timeoutMs: 15_000,
  });
  nodeIds.add(s.nodeId);
  return s;
}

/** A request signed by `as` (the node's own key: admin, it manages every container). */
async function api(as: Identity, url: string, method: string, path: string, body?: unknown) {
  const res = await signedFetch(as, `${url}${path}`, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: body === undefined ? undefined : { "content-type": "application/json" },
  });
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies checked field by field
  return { status: res.status, json: (await res.json()) as any };
}

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill(9);
  for (const id of nodeIds) {
    for (const c of await engineIds(id)) await docker.getContainer(c).remove({ force: true });
  }
  await removeNodeNetworks(docker, nodeIds);
  rmSync(root, { recursive: true, force: true });
});

describe("restart after kill -9", () => {
  const home = join(root, "cli-node");
  let port = 0;
  let url = "";
  let nodeId = "";
  let kept = "";
  let removed = "";
  let orphan = "";
  const admin = () => nodeIdentity(home);

  test("the CLI server starts and runs two containers", async () => {
    port = await freePort();
    const s = await startCli(home, port);
    url = s.url;
    nodeId = s.nodeId;
    expect(nodeId).toMatch(/^[0-9a-f]{64}$/);
    const a = await api(admin(), url, "POST", "/v1/containers", {});
    const b = await api(admin(), url, "POST", "/v1/containers", {});
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    removed = a.json.id;
    kept = b.json.id;
    expect(await engineIds(nodeId)).toEqual([kept, removed].sort());

    s.proc.kill(9);
    expect(await s.proc.exited).not.toBe(0);
    expect(s.proc.signalCode).toBe("SIGKILL");
  }, 30_000);

  test("behind its back: one container removed, an unlabelled orphan added", async () => {
    await docker.getContainer(removed).remove({ force: true });
    const c = await docker.createContainer({
      Image: BUSYBOX,
      Cmd: ["sleep", "300"],
      Labels: { "p2prc.node": nodeId },
      HostConfig: { Memory: 32 * 1024 * 1024 },
    });
    await c.start();
    orphan = c.id;
    expect(await engineIds(nodeId)).toEqual([kept, orphan].sort());
  });

  test("after restart the server's list and the engine agree exactly", async () => {
    const s = await startCli(home, port);
    expect(s.nodeId).toBe(nodeId);
    const list = await api(admin(), url, "GET", "/v1/containers");
    expect(list.status).toBe(200);
    const listed = list.json.containers.map((c: { id: string }) => c.id).sort();
    const engine = await engineIds(nodeId);
    expect(listed).toEqual(engine);
    expect(listed).toEqual([kept]);
    expect(listed).not.toContain(removed);
    expect(engine).not.toContain(orphan);
    expect((await api(admin(), url, "GET", `/v1/containers/${removed}`)).status).toBe(404);
    const one = await api(admin(), url, "GET", `/v1/containers/${kept}`);
    expect(one.json).toMatchObject({ id: kept, running: true, owner: nodeId });
    s.proc.kill(9);
    await s.proc.exited;
  }, 30_000);

  test("a lost state database: the labelled container is adopted again", async () => {
    for (const f of readdirSync(home)) if (f.startsWith("state.db")) rmSync(join(home, f));
    const s = await startCli(home, port);
    const list = await api(admin(), url, "GET", "/v1/containers");
    expect(list.json.containers.map((c: { id: string }) => c.id)).toEqual([kept]);
    expect(await engineIds(nodeId)).toEqual([kept]);
    expect(list.json.containers[0]).toMatchObject({ owner: nodeId, memoryMb: 64, cpus: 0.5 });

    const t0 = Date.now();
    s.proc.kill("SIGTERM");
    const code = await Promise.race([s.proc.exited, Bun.sleep(8000).then(() => "timeout" as const)]);
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    // a graceful stop leaves task containers running; their leases are still the server's
    expect(await engineIds(nodeId)).toEqual([kept]);
  }, 30_000);

  test("SIGTERM on an idle, freshly started CLI server → exit 0 within a few seconds", async () => {
    const p = await freePort();
    const s = await startCli(join(root, "idle-node"), p);
    const t0 = Date.now();
    s.proc.kill("SIGTERM");
    const code = await Promise.race([s.proc.exited, Bun.sleep(8000).then(() => "timeout" as const)]);
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    // the port is free again
    const again = await fetch(`http://127.0.0.1:${p}/v1/health`).then(
      () => "answered",
      () => "refused",
    );
    expect(again).toBe("refused");
  }, 30_000);
});

describe("leases", () => {
  test("ttlSeconds 1 → gone from the engine and the list within ~5 s", async () => {
    const port = await freePort();
    const node = await start({
      configDir: join(root, "lease-node"),
      env: { DOCKER_HOST, P2PRC_TLS: "false" },
      logger: memoryLogger(),
      gpus: async () => [],
      overrides: {
        defaultImage: BUSYBOX,
        serverHost: "127.0.0.1",
        serverPort: port,
        defaultMemoryMb: 64,
        defaultCpus: 0.5,
      },
      reconcileIntervalMs: 300,
    });
    nodeIds.add(node.nodeId);
    const key = nodeIdentity(join(root, "lease-node")); // the node's own key
    try {
      // the long one first: it makes the owner's network, so the short one's create (its lease already
      // running) does not wait for that too
      const long = await api(key, node.url, "POST", "/v1/containers", { ttlSeconds: 600 });
      const short = await api(key, node.url, "POST", "/v1/containers", { ttlSeconds: 1 });
      expect(short.status).toBe(201);
      expect(long.status).toBe(201);
      const lease = Date.parse(short.json.expiresAt) - Date.now();
      expect(lease).toBeLessThanOrEqual(1000);
      expect(lease).toBeGreaterThan(-2000);
      const t0 = Date.now();
      await waitFor(
        "condition",
        async () => {
          const engine = await engineIds(node.nodeId);
          const list = (await api(key, node.url, "GET", "/v1/containers")).json.containers.map(
            (c: { id: string }) => c.id,
          );
          return !engine.includes(short.json.id) && !list.includes(short.json.id) ? true : undefined;
        },
        5000,
      );
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(await engineIds(node.nodeId)).toEqual([long.json.id]);
      const list = (await api(key, node.url, "GET", "/v1/containers")).json.containers;
      expect(list.map((c: { id: string }) => c.id)).toEqual([long.json.id]);
    } finally {
      await node.stop();
    }
  }, 20_000);

  test("a lease that ends while the server is down is removed by the first pass at start", async () => {
    const home = join(root, "down-lease-node");
    const port = await freePort();
    const opts = {
      configDir: home,
      env: { DOCKER_HOST, P2PRC_TLS: "false" },
      logger: memoryLogger(),
      gpus: async () => [],
      overrides: { defaultImage: BUSYBOX, serverHost: "127.0.0.1", serverPort: port, defaultMemoryMb: 64 },
      reconcileIntervalMs: 60_000,
    };
    const first = await start(opts);
    nodeIds.add(first.nodeId);
    const key = nodeIdentity(home); // the node's own key
    const c = await api(key, first.url, "POST", "/v1/containers", { ttlSeconds: 1 });
    expect(c.status).toBe(201);
    await first.stop();
    expect(await engineIds(first.nodeId)).toEqual([c.json.id]);
    await Bun.sleep(1100);
    const second = await start(opts);
    try {
      expect(await engineIds(second.nodeId)).toEqual([]);
      expect((await api(key, second.url, "GET", "/v1/containers")).json.containers).toEqual([]);
    } finally {
      await second.stop();
    }
  }, 20_000);
});
