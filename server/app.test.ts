// In-process API tests: the Hono app over a real container engine, an in-memory store and a
// memory logger. Every container carries this file's node id and is removed in afterAll.
import { afterAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { cpus, hostname, tmpdir } from "node:os";
import Docker from "dockerode";
import { type Config, defaultConfig } from "../config/index.ts";
import { memoryLogger, systemClock } from "../core/index.ts";
import { openStore, type Store } from "../store/index.ts";
import { callApp } from "./fixtures.ts";
import {
  type CallerResolver,
  type ContainerEngine,
  ContainerService,
  createDockerEngine,
  createServerApp,
  createTar,
  type GpuProbe,
} from "./index.ts";

const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const NODE_ID = randomBytes(32).toString("hex");
const BUSYBOX = "p2prc-test/busybox";
const stores: Store[] = [];

const admin: CallerResolver = () => ({ id: "local", admin: true, operator: true });

interface AppOptions {
  config?: Partial<Config>;
  resolveCaller?: CallerResolver;
  gpus?: GpuProbe;
  engine?: ContainerEngine;
  maxJsonBytes?: number;
  /** Share another app's service (and store) so several callers see the same containers. */
  containers?: ContainerService;
}

function makeApp(o: AppOptions = {}) {
  const config: Config = {
    ...defaultConfig(hostname()),
    defaultImage: BUSYBOX,
    serverHost: "127.0.0.1",
    defaultMemoryMb: 64,
    defaultCpus: 0.5,
    ...o.config,
  };
  const store = openStore(":memory:");
  stores.push(store);
  const deps = {
    nodeId: NODE_ID,
    config,
    engine: o.engine ?? createDockerEngine({ host: DOCKER_HOST }),
    records: store.containers,
    clock: systemClock,
    logger: memoryLogger(),
    gpus: o.gpus ?? (async () => []),
  };
  const containers = o.containers ?? new ContainerService(deps);
  const app = createServerApp({
    ...deps,
    version: "test",
    containers,
    dataDir: tmpdir(),
    resolveCaller: o.resolveCaller ?? admin,
    maxJsonBytes: o.maxJsonBytes,
  });
  return { app, containers, store, logger: deps.logger };
}

type App = ReturnType<typeof makeApp>["app"];

/** The app.test way of calling: a body is JSON unless `raw`. */
const call = (app: App, method: string, path: string, body?: unknown, raw = false) =>
  callApp(
    app,
    method,
    path,
    body === undefined ? {} : raw ? { raw: body as string | Uint8Array } : { json: body },
  );

async function ownContainers(nodeId = NODE_ID) {
  return docker.listContainers({ all: true, filters: { label: [`p2prc.node=${nodeId}`] } });
}

/** Reads a tar archive into path → content (regular files only; PAX headers skipped). */
function readTar(tar: Uint8Array): Map<string, string> {
  const files = new Map<string, string>();
  const dec = new TextDecoder();
  const str = (from: number, len: number) => dec.decode(tar.subarray(from, from + len)).replace(/\0.*$/s, "");
  let off = 0;
  while (off + 512 <= tar.length) {
    const name = str(off, 100);
    if (name === "") break;
    const prefix = str(off + 345, 155);
    const size = Number.parseInt(str(off + 124, 12).trim() || "0", 8);
    const type = str(off + 156, 1);
    const dataStart = off + 512;
    if (type === "0" || type === "") {
      files.set(prefix ? `${prefix}/${name}` : name, dec.decode(tar.subarray(dataStart, dataStart + size)));
    }
    off = dataStart + Math.ceil(size / 512) * 512;
  }
  return files;
}

async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs: number, stepMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await Bun.sleep(stepMs);
  }
}

afterAll(async () => {
  for (const c of await ownContainers()) await docker.getContainer(c.Id).remove({ force: true });
  // Each owner's containers get a network of their own (Docs/Security.md); the engine has few to give.
  for (const n of await docker.listNetworks({ filters: { label: [`p2prc.node=${NODE_ID}`] } })) {
    await docker
      .getNetwork(n.Id)
      .remove()
      .catch(() => undefined);
  }
  for (const s of stores) s.close();
});

const main = makeApp();

describe("container lifecycle", () => {
  /**
   * Each test makes the container it needs (none shares an id with another, so none can pass on an
   * empty id when the engine is missing: the create itself fails then) and removes it at its end.
   */
  async function running(body: Record<string, unknown> = {}): Promise<{ id: string; name: string }> {
    const r = await call(main.app, "POST", "/v1/containers", {
      command: ["sh", "-c", "echo started; sleep 300"],
      ...body,
    });
    expect(r.status).toBe(201);
    expect(r.json.id).toMatch(/^[0-9a-f]{64}$/);
    return { id: r.json.id, name: r.json.name };
  }
  const remove = async (id: string) =>
    expect((await call(main.app, "DELETE", `/v1/containers/${id}`)).status).toBe(200);

  test("create → 201 with id, name, image and two same-number port mappings", async () => {
    const r = await call(main.app, "POST", "/v1/containers", {
      command: ["sh", "-c", "echo started; sleep 300"],
      ports: 2,
      name: `life-${randomBytes(3).toString("hex")}`,
    });
    expect(r.status).toBe(201);
    expect(r.json.id).toMatch(/^[0-9a-f]{64}$/);
    expect(r.json.name).toStartWith("p2prc-life-");
    expect(r.json.image).toBe(BUSYBOX);
    expect(r.json.ports).toHaveLength(2);
    for (const p of r.json.ports) {
      expect(p.internal).toBe(p.external);
      expect(p.external).toBeGreaterThan(0);
    }
    expect(r.json.ports[0].external).not.toBe(r.json.ports[1].external);
    expect(r.json.ssh).toBeUndefined();
    await remove(r.json.id);
  }, 20_000);

  test("the published ports are bound on the engine", async () => {
    const { id } = await running({ ports: 2 });
    const info = await docker.getContainer(id).inspect();
    const bound = Object.entries(info.NetworkSettings.Ports ?? {})
      .filter(([, b]) => (b ?? []).length > 0)
      .map(([k, b]) => ({ internal: Number.parseInt(k, 10), external: Number(b?.[0]?.HostPort) }));
    const api = (await call(main.app, "GET", `/v1/containers/${id}`)).json.ports;
    expect(bound.sort((a, b) => a.internal - b.internal)).toEqual(api);
    await remove(id);
  }, 20_000);

  test("exec → exit code, stdout and stderr apart", async () => {
    const { id } = await running();
    const r = await call(main.app, "POST", `/v1/containers/${id}/exec`, {
      command: ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"],
    });
    expect(r.status).toBe(200);
    expect(r.json.exitCode).toBe(3);
    expect(r.json.stdout).toBe("to-out\n");
    expect(r.json.stderr).toBe("to-err\n");
    await remove(id);
  }, 20_000);

  test("exec honours env and workingDir", async () => {
    const { id } = await running();
    const r = await call(main.app, "POST", `/v1/containers/${id}/exec`, {
      command: ["sh", "-c", 'echo "$GREETING $(pwd)"'],
      env: { GREETING: "hi" },
      workingDir: "/tmp",
    });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ exitCode: 0, stdout: "hi /tmp\n" });
    await remove(id);
  }, 20_000);

  test("exec with timeoutSeconds returns when the time is up, marked timedOut", async () => {
    const { id } = await running();
    const t0 = Date.now();
    const r = await call(main.app, "POST", `/v1/containers/${id}/exec`, {
      command: ["sleep", "30"],
      timeoutSeconds: 1,
    });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(r.status).toBe(200);
    expect(r.json.timedOut).toBe(true);
    expect(r.json.exitCode).toBe(-1);
    await remove(id);
  }, 20_000);

  test("upload into a directory that does not exist → 404, not 5xx", async () => {
    const { id } = await running();
    const tar = createTar([{ path: "x.txt", mode: 0o644, content: "x" }]);
    const r = await call(main.app, "PUT", `/v1/containers/${id}/files?path=/no/such/dir`, tar, true);
    expect(r.status).toBe(404);
    await remove(id);
  }, 20_000);

  test("logs contain what the command printed", async () => {
    const { id } = await running();
    const text = await waitFor(async () => {
      const r = await call(main.app, "GET", `/v1/containers/${id}/logs`);
      expect(r.status).toBe(200);
      return r.text.includes("started") ? r.text : undefined;
    }, 5000);
    expect(text).toContain("started");
    await remove(id);
  }, 20_000);

  test("logs?follow=1 streams and can be cancelled", async () => {
    const { id } = await running();
    const ac = new AbortController();
    const res = await main.app.request(`http://127.0.0.1/v1/containers/${id}/logs?follow=1`, {
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let seen = "";
    const deadline = Date.now() + 5000;
    while (!seen.includes("started") && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    expect(seen).toContain("started");
    ac.abort();
    await reader.cancel().catch(() => undefined);
    await remove(id);
  }, 20_000);

  test("upload a tar, then download the files back", async () => {
    const { id } = await running();
    const tar = createTar([
      { path: "up", mode: 0o755 },
      { path: "up/hello.txt", mode: 0o644, content: "hello from the test\n" },
      { path: "up/data.bin", mode: 0o600, content: new Uint8Array(3000).fill(65) },
    ]);
    const put = await main.app.request(`http://127.0.0.1/v1/containers/${id}/files?path=/tmp`, {
      method: "PUT",
      body: tar,
      headers: { "content-type": "application/x-tar" },
    });
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({ uploaded: "/tmp", bytes: tar.length });

    const cat = await call(main.app, "POST", `/v1/containers/${id}/exec`, {
      command: ["cat", "/tmp/up/hello.txt"],
    });
    expect(cat.json.stdout).toBe("hello from the test\n");

    const get = await main.app.request(`http://127.0.0.1/v1/containers/${id}/files?path=/tmp/up/hello.txt`);
    expect(get.status).toBe(200);
    expect(get.headers.get("content-type")).toBe("application/x-tar");
    const one = readTar(new Uint8Array(await get.arrayBuffer()));
    expect(one.get("hello.txt")).toBe("hello from the test\n");

    const dir = await main.app.request(`http://127.0.0.1/v1/containers/${id}/files?path=/tmp/up`);
    expect(dir.status).toBe(200);
    const all = readTar(new Uint8Array(await dir.arrayBuffer()));
    expect(all.get("up/hello.txt")).toBe("hello from the test\n");
    expect(all.get("up/data.bin")).toBe("A".repeat(3000));
    await remove(id);
  }, 20_000);

  test("files of a path 500 segments deep → 400 naming the field, not the engine's 500 (too many links)", async () => {
    const { id } = await running();
    const deep = `/${Array(500).fill("d").join("/")}`;
    for (const method of ["GET", "PUT"] as const) {
      const r = await call(
        main.app,
        method,
        `/v1/containers/${id}/files?path=${deep}`,
        method === "PUT" ? "x" : undefined,
        method === "PUT",
      );
      expect(r.status).toBe(400);
      expect(r.json.error.field).toBe("path");
    }
    await remove(id);
  }, 20_000);

  test("files of a path that does not exist → 404", async () => {
    const { id } = await running();
    const r = await call(main.app, "GET", `/v1/containers/${id}/files?path=/no/such/file`);
    expect(r.status).toBe(404);
    expect(r.json.error.message).toBeString();
    await remove(id);
  }, 20_000);

  test("GET list and GET one (by id, by name, by id prefix)", async () => {
    const { id, name } = await running();
    const list = await call(main.app, "GET", "/v1/containers");
    expect(list.status).toBe(200);
    const mine = list.json.containers.find((c: { id: string }) => c.id === id);
    expect(mine).toMatchObject({ id, name, image: BUSYBOX, owner: "local", running: true, state: "running" });
    for (const ref of [id, name, id.slice(0, 12)]) {
      const one = await call(main.app, "GET", `/v1/containers/${ref}`);
      expect(one.status).toBe(200);
      expect(one.json).toMatchObject({ id, name, running: true, cpus: 0.5, memoryMb: 64, gpu: false });
      expect(Date.parse(one.json.expiresAt)).toBeGreaterThan(Date.now());
    }
    await remove(id);
  }, 20_000);

  test("DELETE → removed; then 404 for GET, exec, logs, files and DELETE", async () => {
    const { id } = await running();
    const del = await call(main.app, "DELETE", `/v1/containers/${id}`);
    expect(del.status).toBe(200);
    expect(del.json).toEqual({ removed: id });
    expect((await ownContainers()).map((c) => c.Id)).not.toContain(id);
    const again = [
      await call(main.app, "GET", `/v1/containers/${id}`),
      await call(main.app, "DELETE", `/v1/containers/${id}`),
      await call(main.app, "GET", `/v1/containers/${id}/logs`),
      await call(main.app, "POST", `/v1/containers/${id}/exec`, { command: ["true"] }),
      await call(main.app, "GET", `/v1/containers/${id}/files?path=/tmp`),
    ];
    for (const r of again) {
      expect(r.status).toBe(404);
      expect(r.json.error.code).toBe("E_NOT_FOUND");
    }
    const list = await call(main.app, "GET", "/v1/containers");
    expect(list.json.containers.map((c: { id: string }) => c.id)).not.toContain(id);
  }, 20_000);

  test("exec in a container whose command has exited → 409, not 5xx", async () => {
    const r = await call(main.app, "POST", "/v1/containers", { command: ["true"] });
    expect(r.status).toBe(201);
    await waitFor(async () => {
      const s = await call(main.app, "GET", `/v1/containers/${r.json.id}`);
      return s.json.running === false ? true : undefined;
    }, 5000);
    const ex = await call(main.app, "POST", `/v1/containers/${r.json.id}/exec`, { command: ["true"] });
    expect(ex.status).toBe(409);
    expect((await call(main.app, "DELETE", `/v1/containers/${r.json.id}`)).status).toBe(200);
  });

  test("env reaches the container's command", async () => {
    const r = await call(main.app, "POST", "/v1/containers", {
      command: ["sh", "-c", 'echo "value=$FOO"; sleep 300'],
      env: { FOO: "bar baz" },
    });
    expect(r.status).toBe(201);
    const logs = await waitFor(async () => {
      const l = await call(main.app, "GET", `/v1/containers/${r.json.id}/logs`);
      return l.text.includes("value=") ? l.text : undefined;
    }, 5000);
    expect(logs).toContain("value=bar baz");
    expect((await call(main.app, "DELETE", `/v1/containers/${r.json.name}`)).status).toBe(200);
  });

  test("publish maps a container port to a free host port", async () => {
    const r = await call(main.app, "POST", "/v1/containers", { publish: [8080] });
    expect(r.status).toBe(201);
    expect(r.json.ports).toHaveLength(1);
    expect(r.json.ports[0].internal).toBe(8080);
    expect(r.json.ports[0].external).toBeGreaterThan(0);
    expect((await call(main.app, "DELETE", `/v1/containers/${r.json.id}`)).status).toBe(200);
  });

  test("a second container with the same name → 409 naming the field", async () => {
    const n = `dup-${randomBytes(3).toString("hex")}`;
    const a = await call(main.app, "POST", "/v1/containers", { name: n });
    expect(a.status).toBe(201);
    const b = await call(main.app, "POST", "/v1/containers", { name: n });
    expect(b.status).toBe(409);
    expect(b.json.error.field).toBe("name");
    expect((await call(main.app, "DELETE", `/v1/containers/${a.json.id}`)).status).toBe(200);
  });
});

describe("isolation defaults on the engine", () => {
  test("caps dropped, no-new-privileges, limits, no swap, an init, no mounts, no restart, p2prc labels", async () => {
    const r = await call(main.app, "POST", "/v1/containers", { cpus: 0.25, memoryMb: 48 });
    expect(r.status).toBe(201);
    const info = await docker.getContainer(r.json.id).inspect();
    const hc = info.HostConfig;
    expect(hc.CapDrop).toContain("ALL");
    expect(hc.CapAdd ?? []).toEqual([]);
    expect(hc.SecurityOpt).toContain("no-new-privileges:true");
    expect(hc.PidsLimit ?? 0).toBeGreaterThan(0);
    expect(hc.Memory).toBe(48 * 1024 * 1024);
    // no swap beyond the memory limit (MemorySwap is memory + swap), and an init process (PID 1 reaps
    // zombies and passes signals), as Docs/Security.md promises
    expect(hc.MemorySwap).toBe(48 * 1024 * 1024);
    expect(hc.Init).toBe(true);
    expect(hc.NanoCpus).toBe(0.25e9);
    expect(hc.Privileged).toBe(false);
    expect(hc.Binds ?? []).toEqual([]);
    expect(info.Mounts ?? []).toEqual([]);
    expect(["no", ""]).toContain(hc.RestartPolicy?.Name ?? "");
    expect(hc.NetworkMode).not.toBe("host");
    expect(hc.PidMode ?? "").not.toBe("host");
    const labels = info.Config.Labels ?? {};
    expect(labels["p2prc.node"]).toBe(NODE_ID);
    expect(labels["p2prc.owner"]).toBe("local");
    expect(Number(labels["p2prc.expires"])).toBeGreaterThan(Date.now());
    expect((await call(main.app, "DELETE", `/v1/containers/${r.json.id}`)).status).toBe(200);
  });
});

describe("invalid input → 400 naming the field, never 5xx", () => {
  const cases: [string, string | unknown, string][] = [
    ["cpus not a number", { cpus: "x" }, "body.cpus"],
    ["unknown field", { bogus: 1 }, "body.bogus"],
    ["bad image reference", { image: "Not A/Valid!!" }, "body.image"],
    ["ttlSeconds 0", { ttlSeconds: 0 }, "body.ttlSeconds"],
    ["ttlSeconds not an integer", { ttlSeconds: 1.5 }, "body.ttlSeconds"],
    ["ports above 64", { ports: 65 }, "body.ports"],
    ["publish port 0", { publish: [0] }, "body.publish.0"],
    ["memoryMb below the engine minimum", { memoryMb: 1 }, "body.memoryMb"],
    ["empty command", { command: [] }, "body.command"],
    ["command not strings", { command: [1, 2] }, "body.command.0"],
    ["env with a bad name", { env: { "1BAD": "x" } }, "body.env"],
    ["sshPublicKey not a key", { sshPublicKey: "hello" }, "body.sshPublicKey"],
    ["bad name", { name: "../etc" }, "body.name"],
    ["gpu not a boolean", { gpu: "yes" }, "body.gpu"],
  ];
  for (const [what, body, field] of cases) {
    test(`create: ${what} → 400 ${field}`, async () => {
      const r = await call(main.app, "POST", "/v1/containers", body);
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe("E_INVALID");
      expect(r.json.error.field).toStartWith(field);
    });
  }

  test("invalid JSON → 400 field body", async () => {
    const r = await call(main.app, "POST", "/v1/containers", "{not json", true);
    expect(r.status).toBe(400);
    expect(r.json.error.field).toBe("body");
  });

  test("a JSON array or null body → 400 field body", async () => {
    for (const raw of ["[]", "null", '"text"']) {
      const r = await call(main.app, "POST", "/v1/containers", raw, true);
      expect(r.status).toBe(400);
      expect(r.json.error.field).toStartWith("body");
    }
  });

  test("a body over the JSON limit → 400/413, not 5xx, and nothing created", async () => {
    const small = makeApp({ maxJsonBytes: 1024 });
    const before = (await ownContainers()).length;
    const big = JSON.stringify({ env: { A: "x".repeat(4096) } });
    const r = await call(small.app, "POST", "/v1/containers", big, true);
    expect([400, 413]).toContain(r.status);
    expect(r.json.error.field).toBe("body");
    expect((await ownContainers()).length).toBe(before);
  });

  test("a streamed body (no content-length) over the JSON limit → 400/413", async () => {
    const small = makeApp({ maxJsonBytes: 1024 });
    const chunk = new TextEncoder().encode(JSON.stringify({ env: { A: "x".repeat(4096) } }));
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(chunk);
        c.close();
      },
    });
    const res = await small.app.request("http://127.0.0.1/v1/containers", {
      method: "POST",
      body: stream,
      duplex: "half",
    });
    expect([400, 413]).toContain(res.status);
  });

  for (const [what, query] of [
    ["relative path", "path=relative"],
    ["path with ..", "path=/a/../b"],
    ["no path", ""],
    ["NUL in path", "path=/a%00b"],
  ] as const) {
    test(`files: ${what} → 400 field path`, async () => {
      const get = await call(main.app, "GET", `/v1/containers/whatever/files?${query}`);
      expect(get.status).toBe(400);
      expect(get.json.error.field).toBe("path");
      const put = await call(
        main.app,
        "PUT",
        `/v1/containers/whatever/files?${query}`,
        createTar([{ path: "a", mode: 0o644, content: "a" }]),
        true,
      );
      expect(put.status).toBe(400);
      expect(put.json.error.field).toBe("path");
    });
  }

  test("logs: follow=maybe → 400 field follow", async () => {
    const r = await call(main.app, "GET", "/v1/containers/whatever/logs?follow=maybe");
    expect(r.status).toBe(400);
    expect(r.json.error.field).toBe("follow");
  });

  test("exec: bad bodies → 400 naming the field", async () => {
    const c = await call(main.app, "POST", "/v1/containers", {});
    expect(c.status).toBe(201);
    const cases: [unknown, string][] = [
      [{}, "body.command"],
      [{ command: "ls" }, "body.command"],
      [{ command: ["ls"], workingDir: "tmp" }, "body.workingDir"],
      [{ command: ["ls"], timeoutSeconds: 0 }, "body.timeoutSeconds"],
      [{ command: ["ls"], extra: true }, "body.extra"],
    ];
    for (const [body, field] of cases) {
      const r = await call(main.app, "POST", `/v1/containers/${c.json.id}/exec`, body);
      expect(r.status).toBe(400);
      expect(r.json.error.field).toBe(field);
    }
    const bad = await call(main.app, "POST", `/v1/containers/${c.json.id}/exec`, "{", true);
    expect(bad.status).toBe(400);
    expect(bad.json.error.field).toBe("body");
    expect((await call(main.app, "DELETE", `/v1/containers/${c.json.id}`)).status).toBe(200);
  });

  test("exec of a program that does not exist → not 5xx", async () => {
    const c = await call(main.app, "POST", "/v1/containers", {});
    expect(c.status).toBe(201);
    const r = await call(main.app, "POST", `/v1/containers/${c.json.id}/exec`, {
      command: ["/no/such/program"],
    });
    expect(r.status).toBeLessThan(500);
    if (r.status === 200) expect(r.json.exitCode).not.toBe(0);
    expect((await call(main.app, "DELETE", `/v1/containers/${c.json.id}`)).status).toBe(200);
  });

  test("upload: a body too short for a tar → 400 field body", async () => {
    const r = await call(main.app, "PUT", "/v1/containers/whatever/files?path=/tmp", "not a tar", true);
    expect(r.status).toBe(400);
    expect(r.json.error.field).toBe("body");
  });

  test("upload: 1 KiB of garbage that is not a tar → 4xx, not 5xx", async () => {
    const c = await call(main.app, "POST", "/v1/containers", {});
    expect(c.status).toBe(201);
    const r = await call(
      main.app,
      "PUT",
      `/v1/containers/${c.json.id}/files?path=/tmp`,
      new Uint8Array(1024).fill(120),
      true,
    );
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect((await call(main.app, "DELETE", `/v1/containers/${c.json.id}`)).status).toBe(200);
  });

  test("a container id with characters outside the id alphabet → 400 or 404, never 5xx", async () => {
    for (const ref of ["%20", "-rf", "a%3Bb", "x".repeat(200)]) {
      const r = await call(main.app, "GET", `/v1/containers/${ref}`);
      expect([400, 404]).toContain(r.status);
    }
  });

  test("unknown container → 404 field id", async () => {
    const r = await call(main.app, "GET", "/v1/containers/does-not-exist");
    expect(r.status).toBe(404);
    expect(r.json.error.field).toBe("id");
  });

  test("unknown route → 404 JSON", async () => {
    const r = await call(main.app, "GET", "/v1/nothing-here");
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe("E_NOT_FOUND");
    expect(r.json.error.message).toContain("/v1/nothing-here");
  });
});

describe("limits and refusals", () => {
  test("cpus above maxCpusPerContainer → 409 naming the limit", async () => {
    const r = await call(main.app, "POST", "/v1/containers", { cpus: 3 });
    expect(r.status).toBe(409);
    expect(r.json.error.message).toContain("maxCpusPerContainer");
    expect(r.json.error.field).toBe("cpus");
  });

  test("memoryMb above maxMemoryMbPerContainer → 409 naming the limit", async () => {
    const r = await call(main.app, "POST", "/v1/containers", { memoryMb: 4096 });
    expect(r.status).toBe(409);
    expect(r.json.error.message).toContain("maxMemoryMbPerContainer");
  });

  test("ttlSeconds above maxTtlSeconds → 409 naming the limit", async () => {
    const r = await call(main.app, "POST", "/v1/containers", { ttlSeconds: 8 * 24 * 3600 });
    expect(r.status).toBe(409);
    expect(r.json.error.message).toContain("maxTtlSeconds");
  });

  test("cpus within maxCpusPerContainer but above the host's cores → 4xx naming cpus, not 5xx", async () => {
    const cores = cpus().length;
    const big = makeApp({ config: { maxCpusPerContainer: cores + 1 } });
    const r = await call(big.app, "POST", "/v1/containers", { cpus: cores + 1 });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    expect(r.json.error.field).toBe("cpus");
  });

  test("maxContainers=1: a second create → 429 naming maxContainers; freed after DELETE", async () => {
    const one = makeApp({ config: { maxContainers: 1 } });
    const a = await call(one.app, "POST", "/v1/containers", {});
    expect(a.status).toBe(201);
    const b = await call(one.app, "POST", "/v1/containers", {});
    expect(b.status).toBe(429);
    expect(b.json.error.message).toContain("maxContainers");
    const specs = await call(one.app, "GET", "/v1/specs");
    expect(specs.json.free.containers).toBe(0);
    expect((await call(one.app, "DELETE", `/v1/containers/${a.json.id}`)).status).toBe(200);
    const c = await call(one.app, "POST", "/v1/containers", {});
    expect(c.status).toBe(201);
    expect((await call(one.app, "DELETE", `/v1/containers/${c.json.id}`)).status).toBe(200);
  });

  test("maxContainers=1: two concurrent creates → exactly one 201 and one 429", async () => {
    const one = makeApp({ config: { maxContainers: 1 } });
    const replies = await Promise.all([
      call(one.app, "POST", "/v1/containers", {}),
      call(one.app, "POST", "/v1/containers", {}),
    ]);
    expect(replies.map((r) => r.status).sort()).toEqual([201, 429]);
    const made = replies.find((r) => r.status === 201);
    expect((await call(one.app, "DELETE", `/v1/containers/${made?.json.id}`)).status).toBe(200);
  });

  test("maxContainers=0 → 429", async () => {
    const none = makeApp({ config: { maxContainers: 0 } });
    const r = await call(none.app, "POST", "/v1/containers", {});
    expect(r.status).toBe(429);
    expect(r.json.error.message).toContain("maxContainers");
  });

  test("gpu:true on a node without GPUs → 409 field gpu", async () => {
    const r = await call(main.app, "POST", "/v1/containers", { gpu: true });
    expect(r.status).toBe(409);
    expect(r.json.error.field).toBe("gpu");
  });

  test("an image that is not present and cannot be pulled → 404 field image, nothing left", async () => {
    const before = (await ownContainers()).length;
    const r = await call(main.app, "POST", "/v1/containers", { image: "p2prc-test/nope:1" });
    expect(r.status).toBe(404);
    expect(r.json.error.field).toBe("image");
    expect((await ownContainers()).length).toBe(before);
  }, 30_000);

  test("allowedImages set → another image is 403 field image; the allowed one works", async () => {
    const only = makeApp({ config: { allowedImages: [`${BUSYBOX}:latest`] } });
    const r = await call(only.app, "POST", "/v1/containers", { image: "p2prc-test/debian-sshd" });
    expect(r.status).toBe(403);
    expect(r.json.error.field).toBe("image");
    expect(r.json.error.message).toContain("allowedImages");
    const images = await call(only.app, "GET", "/v1/images");
    const tags = images.json.images.flatMap((i: { tags: string[] }) => i.tags);
    expect(tags).toEqual([`${BUSYBOX}:latest`]);
    const ok = await call(only.app, "POST", "/v1/containers", { image: `${BUSYBOX}:latest` });
    expect(ok.status).toBe(201);
    expect((await call(only.app, "DELETE", `/v1/containers/${ok.json.id}`)).status).toBe(200);
  });

  // An image named without a tag is the same image as name:latest; allowedImages should treat both alike.
  test("allowedImages ['name'] lists the image tagged name:latest in GET /v1/images", async () => {
    const bare = makeApp({ config: { allowedImages: [BUSYBOX] } });
    const listed = (await call(bare.app, "GET", "/v1/images")).json.images.flatMap(
      (i: { tags: string[] }) => i.tags,
    );
    expect(listed).toContain(`${BUSYBOX}:latest`);
  });

  test("allowedImages ['name:latest'] accepts a create for image 'name'", async () => {
    const tagged = makeApp({ config: { allowedImages: [`${BUSYBOX}:latest`] } });
    const r = await call(tagged.app, "POST", "/v1/containers", { image: BUSYBOX });
    expect(r.status).toBe(201);
    if (r.status === 201)
      expect((await call(tagged.app, "DELETE", `/v1/containers/${r.json.id}`)).status).toBe(200);
  });

  test("a command that cannot run → created, then reported as exited with a non-zero code", async () => {
    const r = await call(main.app, "POST", "/v1/containers", { command: ["/no/such/binary"] });
    expect(r.status).toBeLessThan(500);
    if (r.status !== 201) return;
    const view = await waitFor(async () => {
      const v = await call(main.app, "GET", `/v1/containers/${r.json.id}`);
      return v.json.running === false ? v.json : undefined;
    }, 5000);
    expect(view.exitCode).not.toBe(0);
    expect((await call(main.app, "DELETE", `/v1/containers/${r.json.id}`)).status).toBe(200);
  });
});

describe("callers", () => {
  test("no caller → 401 on container routes; health, specs and images stay 200 (without the auth middleware)", async () => {
    const anon = makeApp({ resolveCaller: () => undefined });
    for (const [method, path] of [
      ["GET", "/v1/containers"],
      ["POST", "/v1/containers"],
      ["GET", "/v1/containers/abc"],
      ["DELETE", "/v1/containers/abc"],
      ["GET", "/v1/containers/abc/logs"],
      ["POST", "/v1/containers/abc/exec"],
      ["GET", "/v1/containers/abc/files?path=/tmp"],
    ] as const) {
      const r = await call(anon.app, method, path, method === "POST" ? {} : undefined);
      expect(r.status).toBe(401);
      expect(r.json.error.code).toBe("E_UNAUTHORIZED");
    }
    expect((await ownContainers()).filter((c) => c.Labels["p2prc.owner"] === undefined)).toEqual([]);
    for (const path of ["/v1/health", "/v1/specs", "/v1/images", "/server_info"]) {
      expect((await call(anon.app, "GET", path)).status).toBe(200);
    }
  });

  test("a non-admin caller sees and touches only its own containers", async () => {
    const alice = makeApp({ resolveCaller: () => ({ id: "alice", admin: false, operator: false }) });
    const bob = makeApp({
      resolveCaller: () => ({ id: "bob", admin: false, operator: false }),
      containers: alice.containers,
    });
    const boss = makeApp({ resolveCaller: admin, containers: alice.containers });
    const c = await call(alice.app, "POST", "/v1/containers", {});
    expect(c.status).toBe(201);
    const id = c.json.id;
    expect((await call(bob.app, "GET", `/v1/containers/${id}`)).status).toBe(404);
    expect((await call(bob.app, "POST", `/v1/containers/${id}/exec`, { command: ["true"] })).status).toBe(
      404,
    );
    expect((await call(bob.app, "GET", `/v1/containers/${id}/logs`)).status).toBe(404);
    expect((await call(bob.app, "GET", `/v1/containers/${id}/files?path=/etc`)).status).toBe(404);
    expect((await call(bob.app, "DELETE", `/v1/containers/${id}`)).status).toBe(404);
    expect((await call(bob.app, "GET", "/v1/containers")).json.containers).toEqual([]);
    const mine = await call(alice.app, "GET", "/v1/containers");
    expect(mine.json.containers.map((x: { id: string }) => x.id)).toEqual([id]);
    expect(mine.json.containers[0].owner).toBe("alice");
    expect((await call(boss.app, "GET", `/v1/containers/${id}`)).json.owner).toBe("alice");
    expect((await call(alice.app, "DELETE", `/v1/containers/${id}`)).status).toBe(200);
  }, 30_000);
});

describe("member quotas", () => {
  test("a member over memberMaxContainers gets 429, over memberMaxCpus or memberMaxMemoryMb 409; the node's own key is exempt", async () => {
    const quota = { memberMaxContainers: 2, memberMaxCpus: 1, memberMaxMemoryMb: 200 };
    const carol = makeApp({
      resolveCaller: () => ({ id: "carol", admin: false, operator: false }),
      config: quota,
    });
    const boss = makeApp({ resolveCaller: admin, config: quota, containers: carol.containers });
    const ids: string[] = [];
    try {
      const a = await call(carol.app, "POST", "/v1/containers", { cpus: 0.5, memoryMb: 64 });
      expect(a.status).toBe(201);
      ids.push(a.json.id);
      const cpu = await call(carol.app, "POST", "/v1/containers", { cpus: 0.6, memoryMb: 64 });
      expect(cpu.status).toBe(409);
      expect(cpu.json.error.message).toContain("memberMaxCpus");
      expect(cpu.json.error.field).toBe("cpus");
      const mem = await call(carol.app, "POST", "/v1/containers", { cpus: 0.5, memoryMb: 150 });
      expect(mem.status).toBe(409);
      expect(mem.json.error.message).toContain("memberMaxMemoryMb");
      const b = await call(carol.app, "POST", "/v1/containers", { cpus: 0.5, memoryMb: 64 });
      expect(b.status).toBe(201);
      ids.push(b.json.id);
      const third = await call(carol.app, "POST", "/v1/containers", { cpus: 0.01, memoryMb: 8 });
      expect(third.status).toBe(429);
      expect(third.json.error.message).toContain("memberMaxContainers");
      const own = await call(boss.app, "POST", "/v1/containers", { cpus: 0.5, memoryMb: 64 });
      expect(own.status).toBe(201);
      ids.push(own.json.id);
    } finally {
      for (const id of ids) await call(boss.app, "DELETE", `/v1/containers/${id}`);
    }
  }, 30_000);
});

describe("node routes", () => {
  test("GET /v1/health", async () => {
    const r = await call(main.app, "GET", "/v1/health");
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ ok: true, nodeId: NODE_ID, version: "test" });
  });

  test("GET /v1/specs has cores, memory and what is free", async () => {
    const r = await call(main.app, "GET", "/v1/specs");
    expect(r.status).toBe(200);
    expect(r.json.nodeId).toBe(NODE_ID);
    expect(r.json.cpu.cores).toBeGreaterThan(0);
    expect(r.json.memory.totalMb).toBeGreaterThan(0);
    expect(r.json.engine.reachable).toBe(true);
    expect(r.json.free.containers).toBeNumber();
    expect(r.json.free.maxCpusPerContainer).toBe(2);
    expect(r.json.free.gpu).toBe(false);
    expect(r.json.gpus).toEqual([]);
  });

  test("free.containers goes down by one per container", async () => {
    const fresh = makeApp({ config: { maxContainers: 5 } });
    expect((await call(fresh.app, "GET", "/v1/specs")).json.free.containers).toBe(5);
    const c = await call(fresh.app, "POST", "/v1/containers", {});
    expect(c.status).toBe(201);
    const after = (await call(fresh.app, "GET", "/v1/specs")).json;
    expect(after.free.containers).toBe(4);
    expect(after.tasks.running).toBe(1);
    expect((await call(fresh.app, "DELETE", `/v1/containers/${c.json.id}`)).status).toBe(200);
  }, 30_000);

  test("GET /v1/images lists the test images", async () => {
    const r = await call(main.app, "GET", "/v1/images");
    expect(r.status).toBe(200);
    const tags = r.json.images.flatMap((i: { tags: string[] }) => i.tags);
    expect(tags).toContain(`${BUSYBOX}:latest`);
  });

  test("GET /server_info (P2PRC alias) has Hostname, CPU and RAM", async () => {
    const r = await call(main.app, "GET", "/server_info");
    expect(r.status).toBe(200);
    expect(r.json.Hostname).toBe(hostname());
    expect(r.json.CPU).toMatch(/\(\d+ cores\)$/);
    expect(r.json.RAM).toMatch(/^\d+ MB$/);
    expect(r.json.GPU).toBeNull();
  });

  test("GET /ShowImages (P2PRC alias)", async () => {
    const r = await call(main.app, "GET", "/ShowImages");
    expect(r.status).toBe(200);
    const names = r.json.DockerContainer.map((d: { DockerContainerName: string }) => d.DockerContainerName);
    expect(names).toContain(`${BUSYBOX}:latest`);
  });
});

describe("engine unreachable", () => {
  const down = makeApp({ engine: createDockerEngine({ host: "unix:///nonexistent.sock" }) });

  test("create → 503 with an error body", async () => {
    const r = await call(down.app, "POST", "/v1/containers", {});
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe("E_ENGINE_UNAVAILABLE");
    expect(r.json.error.message).toContain("unreachable");
  });

  test("images → 503; health 200; specs 200 reporting the engine unreachable", async () => {
    expect((await call(down.app, "GET", "/v1/images")).status).toBe(503);
    expect((await call(down.app, "GET", "/v1/health")).status).toBe(200);
    const specs = await call(down.app, "GET", "/v1/specs");
    expect(specs.status).toBe(200);
    expect(specs.json.engine.reachable).toBe(false);
  });

  test("input is still validated first: bad input → 400, not 503", async () => {
    const r = await call(down.app, "POST", "/v1/containers", { cpus: "x" });
    expect(r.status).toBe(400);
  });
});
