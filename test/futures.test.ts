// Futures on real processes: three `p2prc --as-server` nodes on 127.0.0.1 sharing the engine, and a client
// home that knows them; the futures API runs in this process (abstractions' cluster()). One cluster is
// shared by the tests. Order matters: the last test kills node 2.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import { PNG } from "pngjs";
import { cluster, type FutureCluster, trackedContainers } from "../abstractions/index.ts";
import { Future, mandelbrotLocal, toPng } from "../client/index.ts";
import { nodeIdentity, openNetworkEnv, removeTestNodes, signedFetch, spawnNode, waitFor } from "./support.ts";

/** Bound on the node by the future's `imports` (Docs/Futures.md: how TypeScript learns of an import's name). */
declare const zlib: typeof import("node:zlib");

const ROOT = resolve(import.meta.dir, "..");
const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const root = mkdtempSync(join(tmpdir(), "p2prc-futures-"));
const clientHome = join(root, "client");
const procs: Subprocess[] = [];
/** The client's env: its own home, plain HTTP as the nodes serve, this process's engine. */
const clientEnv: Record<string, string> = { P2PRC: clientHome, P2PRC_TLS: "false", P2PRC_LOG_LEVEL: "warn" };
Object.assign(clientEnv, { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: root, DOCKER_HOST });
const home = { configDir: clientHome, env: clientEnv };

interface Node {
  name: string;
  port: number;
  url: string;
  id: string;
  proc: Subprocess;
}
const nodes: Node[] = [];
let c: FutureCluster;

function cli(args: string[]) {
  const p = Bun.spawnSync([process.execPath, join(ROOT, "cli/main.ts"), ...args], {
    env: clientEnv,
    cwd: root,
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

beforeAll(async () => {
  const start = async (name: string, bootstrap: string) => {
    const nodeHome = join(root, name);
    const n = await spawnNode({
      home: nodeHome,
      procs,
      name,
      command: [process.execPath, join(ROOT, "cli/main.ts")],
      env: { ...openNetworkEnv(nodeHome, name, bootstrap), HOME: root, DOCKER_HOST },
    });
    nodes.push({ name, port: n.port, url: n.url, id: n.nodeId, proc: n.proc });
    return n;
  };
  const first = await start("fu-node-0", "");
  await Promise.all(["fu-node-1", "fu-node-2"].map((n) => start(n, `127.0.0.1:${first.port}`)));
  const added = cli(["--as", `127.0.0.1:${first.port}`]);
  if (added.code !== 0) throw new Error(`--as failed: ${added.err}`);
  await waitFor(
    "the client knows all three nodes with addresses",
    async () => {
      const rows = JSON.parse(cli(["--us", "--json"]).out) as { id: string; port: number | null }[];
      const known = rows.filter((x) => x.port !== null).map((x) => x.id);
      return nodes.every((n) => known.includes(n.id)) ? true : undefined;
    },
    20_000,
    300,
  );
  // one core per container: Bun starts in ~40 ms of CPU, which a quarter core stretches over CFS periods
  c = await cluster({ home, cpus: 1, memoryMb: 256, maxPerNode: 2, timeoutMs: 60_000, replay: false });
}, 60_000);

afterAll(async () => {
  await c?.close();
  await removeTestNodes(
    docker,
    procs,
    nodes.map((n) => n.id),
  );
  rmSync(root, { recursive: true, force: true });
}, 60_000);

describe("futures", () => {
  test("values of many types come back equal", async () => {
    const value = {
      n: 42,
      neg0: -0,
      nan: Number.NaN,
      big: 2n ** 70n,
      s: "héllo ✓",
      when: new Date(1_700_000_000_000),
      m: new Map<unknown, unknown>([
        ["a", 1],
        [2, new Set([1, 2])],
      ]),
      bytes: new Uint8Array([1, 2, 255]),
      floats: new Float64Array([0.5, -1.25]),
      nested: [{ u: undefined, nul: null, re: /a+b/gi }],
    };
    const f = c.future((v: typeof value) => v, [value]);
    expect(await f.value()).toEqual(value);
    expect(f.state).toBe("done");
    expect(nodes.map((n) => n.name)).toContain(f.node ?? "");
    // computed there, with its arguments: an async function, awaited
    expect(await c.future(async (a: number, b: number) => a ** b, [2, 10]).value()).toBe(1024);
  }, 120_000);

  test("a thrown error keeps its name, message and stack; console output is replayed", async () => {
    const f = c.future(
      function thrower(n: number) {
        console.log("working on", n, { deep: [1] });
        console.error("about to fail");
        throw new RangeError(`bad ${n}`);
      },
      [7],
    );
    const err = (await f.value().catch((e: unknown) => e)) as Error & { remote: { name: string } };
    expect(err.name).toBe("RangeError");
    expect(err.message).toBe("bad 7");
    expect(err.remote.name).toBe("RangeError");
    expect(err.stack).toContain("thrower");
    expect(err.stack).toContain("<future on fu-node-");
    expect(f.output()).toEqual([
      { level: "log", text: "working on 7 {\n  deep: [ 1 ],\n}" },
      { level: "error", text: "about to fail" },
    ]);
    // value() replays it (a cluster with replay on, the default)
    const seen: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => seen.push(a.join(" "));
    try {
      const g = c.future(() => {
        console.log("from the node");
        return 1;
      });
      (g as unknown as { replay: boolean }).replay = true;
      expect(await g.value()).toBe(1);
    } finally {
      console.log = log;
    }
    expect(seen).toEqual(["from the node"]);
  }, 120_000);

  test("a closure over a local variable is refused before anything is sent", async () => {
    // not a constant (Bun's transpiler would write a constant's value into the function's source)
    const factor = Number(process.env.P2PRC_TEST_FACTOR ?? 3);
    const f = c.future((x: number) => x * factor, [2]);
    const err = (await f.value().catch((e: unknown) => e)) as Error & { code: string; hint: string };
    expect(err.code).toBe("E_INVALID");
    expect(err.message).toContain("fn uses `factor` from outside the function");
    expect(err.hint).toContain("pass it as an argument");
    expect(f.node).toBeUndefined();
    // the allowed imports are names it may use: bundled for it (node:zlib is the runtime's own)
    const g = c.future((s: string) => zlib.gunzipSync(zlib.gzipSync(s)).toString(), ["round trip"], {
      imports: { zlib: "node:zlib" },
    });
    expect(await g.value()).toBe("round trip");
  }, 120_000);

  test("map over 100 items on 3 nodes returns the results in order", async () => {
    const items = Array.from({ length: 100 }, (_, i) => i);
    const out = await c.map(items, (x: number, i: number) => ({ x: x * x, i }));
    expect(out).toEqual(items.map((i) => ({ x: i * i, i })));
    // the futures went to every node
    const fs = items.slice(0, 12).map((i) =>
      c.future(
        async (x: number) => {
          await Bun.sleep(300);
          return x;
        },
        [i],
      ),
    );
    expect(await Promise.all(fs.map((f) => f.value()))).toEqual(items.slice(0, 12));
    expect(new Set(fs.map((f) => f.node)).size).toBe(3);
    // the fast path: each node's long-lived runtimes ran them (one per warm container), no exec each
    let runs = 0;
    for (const n of nodes) {
      const res = await signedFetch(nodeIdentity(clientHome), `${n.url}/v1/futures/stats`);
      const st = (await res.json()) as { runs: number; starts: number };
      expect(st.starts).toBeLessThanOrEqual(2);
      runs += st.runs;
    }
    expect(runs).toBeGreaterThanOrEqual(112);
  }, 180_000);

  test("the worker's view: ordinary containers owned by the caller, tracked by the client", async () => {
    const clientId = nodeIdentity(clientHome).nodeId;
    const n = nodes[0] as Node;
    const res = await signedFetch(nodeIdentity(join(root, n.name)), `${n.url}/v1/containers`);
    const { containers } = (await res.json()) as {
      containers: { id: string; owner: string; image: string }[];
    };
    const ours = containers.filter((x) => x.image.startsWith("p2prc-runtime:"));
    expect(ours.length).toBeGreaterThan(0);
    for (const x of ours) expect(x.owner).toBe(clientId);
    const tracked = await trackedContainers(home);
    for (const x of ours) expect(tracked.map((t) => t.id)).toContain(x.id);
  }, 60_000);

  test("a future cannot touch the worker's host", async () => {
    const port = (nodes[0] as Node).port;
    const probe = await c
      .future(
        async (p: number) => {
          const fs = require("node:fs");
          let api = "refused";
          try {
            await fetch(`http://127.0.0.1:${p}/v1/health`, { signal: AbortSignal.timeout(2000) });
            api = "reached";
          } catch {}
          let wrote = "no";
          try {
            fs.writeFileSync("/proc/sys/kernel/hostname", "x");
            wrote = "yes";
          } catch {}
          return {
            api,
            wrote,
            dockerSock: fs.existsSync("/var/run/docker.sock"),
            hostRoot: fs.existsSync("/work") || fs.existsSync("/home"),
            pid1: fs.readFileSync("/proc/1/cmdline", "utf8").split("\0")[0],
            capEff: /CapEff:\s+(\S+)/.exec(fs.readFileSync("/proc/self/status", "utf8"))?.[1],
            noNewPrivs: /NoNewPrivs:\s+(\S+)/.exec(fs.readFileSync("/proc/self/status", "utf8"))?.[1],
          };
        },
        [port],
      )
      .value();
    expect(probe).toEqual({
      api: "refused",
      wrote: "no",
      dockerSock: false,
      hostRoot: false,
      // its own process namespace: the container's init, not the host's
      pid1: "/sbin/docker-init",
      capEff: "0000000000000000",
      noNewPrivs: "1",
    });
  }, 60_000);

  test("cancel stops the remote work: its container is gone, value() throws", async () => {
    const f = c.future(async () => {
      await Bun.sleep(120_000);
      return "never";
    });
    await waitFor("the future runs", async () => (f.state === "running" ? true : undefined), 60_000, 50);
    // the container whose runtime runs the future's program (written to its /tmp while it runs)
    const clientId = nodeIdentity(clientHome).nodeId;
    const list = await docker.listContainers({ filters: { label: [`p2prc.owner=${clientId}`] } });
    const running: string[] = [];
    await waitFor(
      "its program shows",
      async () => {
        for (const x of list) {
          const tmp = await docker
            .getContainer(x.Id)
            .getArchive({ path: "/tmp" })
            .then((s) => new Response(s as unknown as ReadableStream).text())
            .catch(() => "");
          if (tmp.includes("Bun.sleep(120")) running.push(x.Id);
        }
        return running.length > 0 ? true : undefined;
      },
      20_000,
      200,
    );
    await f.cancel();
    const err = (await f.value().catch((e: unknown) => e)) as Error;
    expect(err.name).toBe("FutureCancelledError");
    expect(f.state).toBe("cancelled");
    for (const id of running)
      expect(
        await docker
          .getContainer(id)
          .inspect()
          .catch((e: { statusCode?: number }) => e.statusCode),
      ).toBe(404);
    // the cluster goes on
    expect(await c.future(() => "after").value()).toBe("after");
  }, 120_000);

  test("examples/mandelbrot-futures.ts: one future per tile, the PNG equals the local reference", async () => {
    const out = join(root, "m.png");
    const proc = Bun.spawn(
      [
        process.execPath,
        join(ROOT, "examples/mandelbrot-futures.ts"),
        "--tiles",
        "6",
        "--size",
        "120x90",
        "--max-iter",
        "100",
        "--out",
        out,
      ],
      { cwd: root, env: clientEnv, stdout: "pipe", stderr: "pipe" },
    );
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
    const r = JSON.parse(stdout.trim()) as { tiles: number; perNode: Record<string, number> };
    expect(Object.values(r.perNode).reduce((a, b) => a + b, 0)).toBe(6);
    const m = { width: 120, height: 90, tiles: 6, maxIter: 100, image: "" };
    const want = PNG.sync.read(Buffer.from(toPng(mandelbrotLocal(m), m)));
    const got = PNG.sync.read(readFileSync(out));
    expect(Buffer.compare(got.data, want.data)).toBe(0);
  }, 120_000);

  test("p2prc run <node> script.ts: bundled with its imports; stdout, stderr and exit code come back", async () => {
    const dir = join(root, "script");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "lib.ts"), 'export const greet = (who: string): string => "hello " + who;\n');
    writeFileSync(
      join(dir, "main.ts"),
      [
        'import { greet } from "./lib.ts";',
        "console.log(greet(process.argv.slice(2).join(' ')));",
        'console.error("to stderr");',
        "process.exit(3);",
      ].join("\n"),
    );
    const r = cli(["run", nodes[0]?.name as string, join(dir, "main.ts"), "big", "world"]);
    expect({ code: r.code, out: r.out, err: r.err }).toEqual({
      code: 3,
      out: "hello big world\n",
      err: "to stderr\n",
    });
    const j = cli(["run", "--json", "auto", join(dir, "main.ts")]);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.out)).toMatchObject({ exitCode: 3, stderr: "to stderr\n" });
  }, 120_000);

  test("kill -9 of a node running futures: every future still resolves, once, with its value", async () => {
    const victim = nodes[2] as Node;
    // every settle a future gets, counted (a second one would be ignored by the future: none may come)
    const settles = new Map<string, number>();
    const settle = Future.prototype.settle;
    Future.prototype.settle = function (this: Future, ...a: Parameters<Future["settle"]>) {
      settles.set(this.id, (settles.get(this.id) ?? 0) + 1);
      return settle.apply(this, a);
    };
    const fs = Array.from({ length: 12 }, (_, i) =>
      c.future(
        async (x: number) => {
          await Bun.sleep(1500);
          return x * 10;
        },
        [i],
      ),
    );
    await waitFor(
      "a future runs on the victim",
      async () => (fs.some((f) => f.state === "running" && f.node === victim.name) ? true : undefined),
      60_000,
      50,
    );
    victim.proc.kill(9);
    const values = await Promise.all(fs.map((f) => f.value()));
    expect(values).toEqual(Array.from({ length: 12 }, (_, i) => i * 10));
    expect(fs.every((f) => f.state === "done" && f.node !== victim.name)).toBe(true);
    Future.prototype.settle = settle;
    expect(fs.map((f) => settles.get(f.id))).toEqual(fs.map(() => 1));
  }, 180_000);
});
