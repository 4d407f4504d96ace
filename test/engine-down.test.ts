// The engine going away and coming back: a node talks to the real engine through a small unix-socket
// proxy the test serves, which it takes down and brings back. While down the node keeps serving (503 for
// engine routes, specs say unreachable); once back, the periodic reconcile recovers by itself: what was
// changed behind the node's back meanwhile is reconciled, and creating works again.
import { afterAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { defaultConfig } from "../config/index.ts";
import { memoryLogger, systemClock } from "../core/index.ts";
import { createDockerEngine, type ServerNode, startServerNode } from "../server/index.ts";
import { openStore } from "../store/index.ts";
import { waitFor } from "./support.ts";

const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const REAL = DOCKER_HOST.replace(/^unix:\/\//, "");
const docker = new Docker({ socketPath: REAL });
const BUSYBOX = "p2prc-test/busybox";
const NODE_ID = randomBytes(32).toString("hex");
const root = mkdtempSync(join(tmpdir(), "p2prc-engine-down-"));
const proxyPath = join(root, "engine.sock");

/** A unix socket in front of the real engine that can be taken down (connections cut) and brought back. */
class EngineProxy {
  private server: Server | undefined;
  private readonly open = new Set<Socket>();
  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(REAL);
      for (const s of [client, upstream]) {
        this.open.add(s);
        s.on("close", () => this.open.delete(s));
        s.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((res, rej) => server.listen(proxyPath, res).once("error", rej));
    this.server = server;
  }
  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.open) s.destroy();
    if (server) await new Promise<void>((res) => server.close(() => res())); // also removes the socket file
    rmSync(proxyPath, { force: true });
  }
}

const proxy = new EngineProxy();
let node: ServerNode | undefined;
const store = openStore(":memory:");

afterAll(async () => {
  await node?.stop();
  store.close();
  await proxy.down();
  const left = await docker.listContainers({ all: true, filters: { label: [`p2prc.node=${NODE_ID}`] } });
  for (const c of left) await docker.getContainer(c.Id).remove({ force: true });
  rmSync(root, { recursive: true, force: true });
});

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${node?.url}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies checked field by field
  return { status: res.status, json: (await res.json()) as any };
}

test("engine down, then back: the node serves throughout and its reconcile recovers", async () => {
  await proxy.up();
  node = await startServerNode({
    nodeId: NODE_ID,
    version: "test",
    config: {
      ...defaultConfig(hostname()),
      serverHost: "127.0.0.1",
      serverPort: 0,
      defaultImage: BUSYBOX,
      defaultMemoryMb: 32,
      defaultCpus: 0.25,
    },
    engine: createDockerEngine({ host: `unix://${proxyPath}` }),
    records: store.containers,
    clock: systemClock,
    logger: memoryLogger(),
    gpus: async () => [],
    dataDir: root,
    resolveCaller: () => ({ id: "local", admin: true, operator: true }),
    reconcileIntervalMs: 200,
  });

  const kept = await api("POST", "/v1/containers", { command: ["sleep", "300"] });
  const gone = await api("POST", "/v1/containers", { command: ["sleep", "300"] });
  expect(kept.status).toBe(201);
  expect(gone.status).toBe(201);

  // down: engine routes answer 503 at once, the rest still serves, reconcile passes fail quietly
  await proxy.down();
  const t0 = performance.now();
  const refused = await api("POST", "/v1/containers", {});
  expect(refused.status).toBe(503);
  expect(performance.now() - t0).toBeLessThan(5_000);
  expect((await api("GET", "/v1/health")).status).toBe(200);
  const specs = await api("GET", "/v1/specs");
  expect(specs.status).toBe(200);
  expect(specs.json.engine.reachable).toBe(false);
  await expect(node.reconciler.run()).rejects.toThrow();

  // behind its back while it cannot see: one of its containers removed, an orphan with its label added
  await docker.getContainer(gone.json.id).remove({ force: true });
  const orphan = await docker.createContainer({
    Image: BUSYBOX,
    Cmd: ["sleep", "300"],
    Labels: { "p2prc.node": NODE_ID },
    HostConfig: { Memory: 32 * 1024 * 1024 },
  });
  await Bun.sleep(500); // a few failed periodic passes

  // back: without any call from the test, the periodic reconcile catches up
  await proxy.up();
  await waitFor(
    "reconcile after the engine came back",
    async () => {
      const ids = store.containers.list().map((r) => r.id);
      const orphanLeft = (await docker.listContainers({ all: true, filters: { id: [orphan.id] } })).length;
      return ids.includes(gone.json.id) || orphanLeft > 0 ? undefined : ids;
    },
    10_000,
    100,
  );
  const list = await api("GET", "/v1/containers");
  expect(list.status).toBe(200);
  expect(list.json.containers.map((c: { id: string }) => c.id)).toEqual([kept.json.id]);
  const specsBack = await api("GET", "/v1/specs");
  expect(specsBack.json.engine.reachable).toBe(true);
  const again = await api("POST", "/v1/containers", { command: ["sleep", "300"] });
  expect(again.status).toBe(201);
}, 60_000);
