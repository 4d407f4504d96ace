// The batch runner against fake nodes (an injected fetch that answers the node API in-process): what it
// promises when a node misbehaves. A timed-out task runs again and its container is not reused; a task no
// node can take ends "no node left to run it"; freshContainer gives every task its own container; and
// files from a node's tar land only inside the task's output directory, whatever the entry names say.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { fetchTransport, generateIdentity, systemClock } from "../../core/index.ts";
import { openStore } from "../../store/index.ts";
import type { ClientDeps } from "../containers.ts";
import { type Job, JobSchema } from "./job.ts";
import { runBatch } from "./runner.ts";
import { safeJoin } from "./safe-join.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-runner-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => join(root, `run-${dirs++}`);

interface ExecCall {
  container: string;
  index: number;
  attempt: number;
}

/** One fake node: containers by id, every call recorded; `exec`, `files` and `create` can be replaced. */
class FakeNode {
  readonly url: string;
  created: string[] = [];
  removed: string[] = [];
  execs: ExecCall[] = [];
  private next = 0;
  constructor(
    readonly name: string,
    readonly behaviour: {
      create?: () => Response | undefined;
      exec?: (call: ExecCall) => Record<string, unknown> | undefined;
      files?: (path: string) => Uint8Array | undefined;
    } = {},
  ) {
    this.url = `http://fake-${name}.invalid:1`;
  }

  async handle(req: Request): Promise<Response> {
    const u = new URL(req.url);
    const parts = u.pathname.split("/").filter(Boolean); // v1 containers [id] [action]
    const json = (body: unknown, status = 200) => Response.json(body, { status });
    if (req.method === "POST" && parts.length === 2) {
      const refused = this.behaviour.create?.();
      if (refused) return refused;
      const id = `${this.name}-c${this.next++}`.padEnd(64, "0");
      this.created.push(id);
      return json({ id, name: id, image: "img", ports: [] }, 201);
    }
    const id = parts[2] as string;
    if (req.method === "DELETE") {
      this.removed.push(id);
      return json({ removed: id });
    }
    if (parts[3] === "files" && req.method === "PUT") {
      await req.arrayBuffer();
      return json({ uploaded: "/", bytes: 0 });
    }
    if (parts[3] === "tasks") {
      const body = (await req.json()) as { env: Record<string, string> };
      const call = {
        container: id,
        index: Number(body.env.P2PRC_TASK_INDEX),
        attempt: Number(body.env.P2PRC_TASK_ATTEMPT),
      };
      this.execs.push(call);
      const reply = this.behaviour.exec?.(call) ?? {
        exitCode: 0,
        stdout: `task ${call.index}\n`,
        stderr: "",
      };
      return json({ ...reply, workingDir: `/p2prc-task/x-${this.execs.length}` });
    }
    if (parts[3] === "files" && req.method === "GET") {
      const tar = this.behaviour.files?.(u.searchParams.get("path") ?? "");
      if (!tar) return json({ error: { code: "E_NOT_FOUND", message: "no such path", field: "path" } }, 404);
      return new Response(tar, { headers: { "content-type": "application/x-tar" } });
    }
    return json({ error: { code: "E_NOT_FOUND", message: "no route" } }, 404);
  }
}

function deps(nodes: FakeNode[]): ClientDeps {
  const byHost = new Map(nodes.map((n) => [new URL(n.url).host, n]));
  // fetchTransport always calls fetch(url: string, init)
  const fakeFetch = (async (input: string, init?: RequestInit) => {
    const req = new Request(input, init);
    const node = byHost.get(new URL(req.url).host);
    if (!node) throw new TypeError("connection refused");
    return node.handle(req);
  }) as typeof fetch;
  return {
    tracking: openStore(":memory:").client,
    identity: generateIdentity(),
    clock: systemClock,
    views: () => [],
    transport: fetchTransport(fakeFetch),
  };
}

function job(fields: Partial<Job> & { tasks: number }): Job {
  return JobSchema.parse({ image: "img", command: ["sh", "-c", "true"], ...fields });
}

async function run(j: Job, nodes: FakeNode[], outDir = freshDir()) {
  const r = await runBatch(deps(nodes), {
    job: j,
    jobText: JSON.stringify(j),
    jobDir: root,
    outDir,
    nodes: nodes.map((n) => ({ url: n.url, name: n.name })),
  });
  return { ...r, outDir };
}

describe("a timed-out task", () => {
  test("runs again, and the container it timed out in is removed and never used again", async () => {
    const node = new FakeNode("a", {
      exec: (c) =>
        c.index === 1 && c.attempt === 1
          ? { exitCode: -1, stdout: "", stderr: "", timedOut: true }
          : undefined,
    });
    const r = await run(job({ tasks: 3, maxPerNode: 1, timeoutSeconds: 5 }), [node]);
    expect(r.results.map((t) => t.state)).toEqual(["done", "done", "done"]);
    expect(r.results[1]).toMatchObject({ attempts: 2, exitCode: 0, node: "a" });
    const at = node.execs.findIndex((c) => c.index === 1 && c.attempt === 1);
    const timedOut = node.execs[at]?.container as string;
    expect(node.removed).toContain(timedOut);
    // nothing ran in that container after the timeout, and a new one was made for what followed
    const after = node.execs.slice(at + 1);
    expect(after.length).toBeGreaterThan(0);
    expect(after.map((c) => c.container)).not.toContain(timedOut);
    expect(node.created).toHaveLength(2);
    // the node stays in use after a timeout: the retry ran there
    expect(node.execs.filter((c) => c.index === 1).map((c) => c.attempt)).toEqual([1, 2]);
  });

  test("that times out every time ends failed after retries + 1 attempts, naming the timeout", async () => {
    const node = new FakeNode("a", {
      exec: (c) => (c.index === 0 ? { exitCode: -1, stdout: "", stderr: "", timedOut: true } : undefined),
    });
    const r = await run(job({ tasks: 2, maxPerNode: 1, timeoutSeconds: 7, retries: 2 }), [node]);
    expect(r.results[0]).toMatchObject({ state: "failed", attempts: 3, exitCode: null });
    expect(r.results[0]?.error).toContain("timed out after 7 s");
    expect(r.results[1]).toMatchObject({ state: "done" });
  });
});

describe("no node left", () => {
  test("every node refuses: the tasks that never ran end 'no node left to run it', results.json says so", async () => {
    const refuse = () =>
      Response.json({ error: { code: "E_ENGINE", message: "engine unreachable" } }, { status: 503 });
    const a = new FakeNode("a", { create: refuse });
    const b = new FakeNode("b", { create: refuse });
    const r = await run(job({ tasks: 4, maxPerNode: 1 }), [a, b]);
    expect(r.results.every((t) => t.state === "failed")).toBe(true);
    const reasons = r.results.map((t) => t.error);
    // the reason now names why each node was given up: "no node left to run it (<node> refused: …)"
    expect(reasons.filter((e) => e?.startsWith("no node left to run it (")).length).toBeGreaterThan(0);
    // the tasks that were tried carry the node's own error instead
    for (const t of r.results.filter((t) => t.attempts > 0)) expect(t.error).toContain("engine unreachable");
    expect(a.execs).toEqual([]);
    expect(b.execs).toEqual([]);
    const file = JSON.parse(readFileSync(join(r.outDir, "results.json"), "utf8")) as { error?: string }[];
    expect(file.map((t) => t.error)).toEqual(reasons);
  });

  test("a node that goes away mid-batch: its tasks finish on the other node", async () => {
    let calls = 0;
    const flaky = new FakeNode("flaky", {
      exec: () => {
        if (++calls > 1) throw new Error("gone");
        return undefined;
      },
    });
    const good = new FakeNode("good");
    // an exception in the fake becomes a 500 from "the node": the runner drops that node
    const orig = flaky.handle.bind(flaky);
    flaky.handle = async (req) => orig(req).catch(() => new Response("boom", { status: 500 }));
    const r = await run(job({ tasks: 6, maxPerNode: 1 }), [flaky, good]);
    expect(r.results.every((t) => t.state === "done")).toBe(true);
    expect(r.results.filter((t) => t.node === "flaky").length).toBeLessThanOrEqual(1);
  });
});

describe("a container lost under its tasks", () => {
  test("one task finds its machine lost, another finds the container already removed for it: both run again, the node is kept", async () => {
    // a swarm-backed node whose machine died: the first task in c0 answers "machine lost" (the client then
    // removes c0), a second task borrowed into c0 meanwhile gets "no such container" once c0 is removed
    const node = new FakeNode("lossy");
    const orig = node.handle.bind(node);
    let c0: string | undefined;
    let inC0 = 0;
    let creates = 0;
    let removed!: () => void;
    const c0Removed = new Promise<void>((r) => {
      removed = r;
    });
    let arrived!: () => void;
    const secondArrived = new Promise<void>((r) => {
      arrived = r;
    });
    const fail = (status: number, error: object) => Response.json({ error }, { status });
    node.handle = async (req) => {
      const parts = new URL(req.url).pathname.split("/").filter(Boolean);
      const create = req.method === "POST" && parts.length === 2;
      if (create && creates++ === 1) await c0Removed; // the slot's own container comes up late: it borrows c0
      if (req.method === "DELETE" && parts[2] === c0) removed();
      if (parts[3] === "tasks" && parts[2] === c0) {
        const k = ++inC0;
        if (k === 1) {
          await secondArrived;
          return fail(503, {
            code: "E_ENGINE_UNAVAILABLE",
            message: "swarm machine m2 does not answer",
            field: "container",
          });
        }
        if (k === 2) {
          arrived();
          await c0Removed;
          return fail(404, { code: "E_NOT_FOUND", message: `no such container: ${c0}` });
        }
      }
      const res = await orig(req);
      if (create && c0 === undefined) c0 = ((await res.clone().json()) as { id: string }).id;
      return res;
    };
    const r = await run(job({ tasks: 4, maxPerNode: 2 }), [node]);
    expect(inC0).toBeGreaterThanOrEqual(2);
    expect(r.results.map((t) => [t.state, t.node])).toEqual(Array(4).fill(["done", "lossy"]));
  });
});

describe("freshContainer", () => {
  test("true: every task gets its own container, removed after it", async () => {
    const node = new FakeNode("a");
    const r = await run(job({ tasks: 5, maxPerNode: 2, freshContainer: true }), [node]);
    expect(r.results.every((t) => t.state === "done")).toBe(true);
    const used = node.execs.map((c) => c.container);
    expect(new Set(used).size).toBe(5);
    expect(node.created.sort()).toEqual([...used].sort());
    expect(node.removed.sort()).toEqual([...used].sort());
  });

  test("false (default): a warm pool of one container per slot, removed at the end", async () => {
    const node = new FakeNode("a");
    const r = await run(job({ tasks: 5, maxPerNode: 2 }), [node]);
    expect(r.results.every((t) => t.state === "done")).toBe(true);
    expect(node.created).toHaveLength(2);
    // tasks run in the first container up while the second is made (worker.ts: borrow), so one or both
    const used = new Set(node.execs.map((c) => c.container));
    expect(used.size).toBeGreaterThanOrEqual(1);
    for (const id of used) expect(node.created).toContain(id);
    expect(node.removed.sort()).toEqual([...node.created].sort());
  });
});

/** A tar written byte by byte, so hostile names and link entries reach the client as a node sends them. */
function rawTar(entries: { name: string; data?: string; type?: string; link?: string }[]): Uint8Array {
  const enc = new TextEncoder();
  const blocks: Uint8Array[] = [];
  for (const e of entries) {
    const h = new Uint8Array(512);
    const put = (s: string, off: number, len: number) => h.set(enc.encode(s).subarray(0, len), off);
    const data = enc.encode(e.data ?? "");
    put(e.name, 0, 100);
    put("0000644\0", 100, 8);
    put("0000000\0", 108, 8);
    put("0000000\0", 116, 8);
    put(`${data.length.toString(8).padStart(11, "0")}\0`, 124, 12);
    put("00000000000\0", 136, 12);
    put(e.type ?? "0", 156, 1);
    if (e.link) put(e.link, 157, 100);
    put("ustar\0", 257, 6);
    put("00", 263, 2);
    h.fill(32, 148, 156);
    put(
      `${h
        .reduce((a, b) => a + b, 0)
        .toString(8)
        .padStart(6, "0")}\0 `,
      148,
      8,
    );
    const body = new Uint8Array(Math.ceil(data.length / 512) * 512);
    body.set(data);
    blocks.push(h, body);
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
  let off = 0;
  for (const b of blocks) {
    out.set(b, off);
    off += b.length;
  }
  return out;
}

describe("files from a node's tar stay inside the task's output directory", () => {
  test("safeJoin: '..' climbing out and absolute names are refused or kept inside the root", () => {
    const r = "/out/7";
    expect(safeJoin(r, "a/b.txt")).toBe("/out/7/a/b.txt");
    expect(safeJoin(r, "a/../b.txt")).toBe("/out/7/b.txt");
    for (const name of [
      "../x",
      "../../x",
      "a/../../x",
      "a/../../../etc/passwd",
      "/etc/passwd",
      "/x",
      "",
      ".",
      "./",
    ]) {
      const got = safeJoin(r, name);
      if (got !== undefined) expect(got.startsWith(`${r}/`)).toBe(true);
    }
    expect(safeJoin(r, "/etc/passwd")).toBeUndefined();
    expect(safeJoin(r, "")).toBeUndefined();
    expect(safeJoin(r, ".")).toBeUndefined();
  });

  test("a batch whose node sends '..', absolute and link entries writes nothing outside the task's directory", async () => {
    const absolute = join(root, `absolute-${Date.now()}.txt`);
    const tar = rawTar([
      { name: "out/ok.txt", data: "ok" },
      { name: "../escape-1.txt", data: "x" },
      { name: "../../escape-2.txt", data: "x" },
      { name: "out/../../../escape-3.txt", data: "x" },
      { name: absolute, data: "x" },
      { name: "out/link", type: "2", link: "/etc/passwd" },
      { name: "out/hard", type: "1", link: "/etc/passwd" },
    ]);
    const node = new FakeNode("evil", { files: () => tar });
    const outDir = freshDir();
    const r = await run(job({ tasks: 1, outputs: ["out"] }), [node], outDir);
    expect(r.results[0]).toMatchObject({ state: "done" });
    const taskOut = join(outDir, "0");
    expect(readFileSync(join(taskOut, "out/ok.txt"), "utf8")).toBe("ok");
    // nothing beside the task's directory, nothing above the batch, nothing at the absolute path
    expect(readdirSync(outDir).sort()).toEqual(["0", "results.json"]);
    expect(readdirSync(root).filter((f) => f.startsWith("escape"))).toEqual([]);
    expect(existsSync(absolute)).toBe(false);
    // whatever a '..' name became is inside taskOut, and links were not written at all
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)],
      );
    for (const f of walk(taskOut)) expect(f.startsWith(`${taskOut}/`)).toBe(true);
    expect(existsSync(join(taskOut, "out/link"))).toBe(false);
    expect(existsSync(join(taskOut, "out/hard"))).toBe(false);
  });
});
