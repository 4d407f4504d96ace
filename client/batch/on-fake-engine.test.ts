// The batch core and shell end to end, against in-process server apps over FakeEngine (no Docker): the
// decisions of scheduler.ts seen through real node answers. Faults are injected per task (Nomad mock
// driver style) and time is one ManualClock shared by the client, the servers and the engines.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fetchTransport, generateIdentity, ManualClock, P2prcError } from "../../core/index.ts";
import { FakeEngine, type FakeExecCall, type FakeExecFaults } from "../../server/engine/fake.ts";
import { testServerApp } from "../../server/fixtures.ts";
import { openStore } from "../../store/index.ts";
import type { ClientDeps } from "../containers.ts";
import type { NodeTarget } from "../resolve.ts";
import { type Job, JobSchema } from "./job.ts";
import { type BatchOptions, runBatch } from "./runner.ts";
import type { BatchProgress } from "./scheduler.ts";
import { NodeWorker } from "./worker.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-batch-fake-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;

/** The task index and attempt of an exec the runner makes (its env says them). */
const taskOf = (c: FakeExecCall) => ({
  index: Number(c.env.P2PRC_TASK_INDEX),
  attempt: Number(c.env.P2PRC_TASK_ATTEMPT),
});

interface FakeNode {
  name: string;
  url: string;
  engine: FakeEngine;
  app: ReturnType<typeof testServerApp>["app"];
}

/** Every node made here, by the host of its URL. */
const registry = new Map<string, FakeNode>();

function node(
  name: string,
  clock: ManualClock,
  execFaults?: (c: FakeExecCall) => FakeExecFaults | undefined,
  Engine: typeof FakeEngine = FakeEngine,
) {
  const engine = new Engine({ clock, execFaults });
  const { app } = testServerApp({
    engine,
    records: openStore(":memory:").containers,
    clock,
    nodeId: name.padEnd(64, "0"),
    // its own input cache and spool directory
    dataDir: join(root, `node-${name}-${registry.size}`),
  });
  const n: FakeNode = { name, url: `http://${name}-${registry.size}.invalid:1`, engine, app };
  registry.set(new URL(n.url).host, n);
  return n;
}

/** A client of the nodes made by node() (its fetch answers in-process), on the same clock. */
function client(clock: ManualClock): ClientDeps {
  return {
    tracking: openStore(":memory:").client,
    identity: generateIdentity(),
    clock,
    views: () => [],
    transport: fetchTransport((async (input: string, init?: RequestInit) => {
      const n = registry.get(new URL(input).host);
      if (!n) throw new TypeError("connection refused");
      return n.app.request(input, init);
    }) as typeof fetch),
  };
}

/** Runs a batch on the nodes, moving the clock on while it runs (every exec's time passes on it). */
async function run(
  clock: ManualClock,
  j: Job,
  nodes: FakeNode[],
  deps = client(clock),
  outDir = join(root, `run-${dirs++}`),
  extra: Pick<BatchOptions, "signal" | "retryFailed" | "onProgress"> = {},
) {
  let settled = false;
  const batch = runBatch(deps, {
    job: j,
    jobText: JSON.stringify(j),
    jobDir: root,
    outDir,
    nodes: nodes.map((n) => ({ url: n.url, name: n.name })),
    ...extra,
  }).finally(() => {
    settled = true;
  });
  while (!settled) {
    await Bun.sleep(1);
    clock.advance(250);
  }
  return { ...(await batch), outDir, deps };
}

function job(fields: Partial<Job> & { tasks: number }): Job {
  return JobSchema.parse({
    image: "p2prc-test/busybox",
    command: ["sh", "-c", "echo task $P2PRC_TASK_INDEX > out.txt; echo done $P2PRC_TASK_INDEX"],
    outputs: ["out.txt"],
    ...fields,
  });
}

describe("a batch on FakeEngine nodes", () => {
  test("a shared input reaches each node once and every task reads it; a second run sends nothing", async () => {
    const clock = new ManualClock();
    const [a, b] = [node("a", clock), node("b", clock)];
    const content = "shared input\n".repeat(1000);
    writeFileSync(join(root, "input.txt"), content);
    const j = job({
      tasks: 12,
      maxPerNode: 2,
      inputs: ["input.txt"],
      command: ["cat", "input.txt"],
      outputs: [],
    });
    const stats = async (n: FakeNode) =>
      (await (await n.app.request("/v1/inputs/stats")).json()) as {
        bytesReceived: number;
        bytesServed: number;
      };
    const deps = client(clock);
    const r = await run(clock, j, [a, b], deps);
    expect(r.results.every((t) => t.state === "done")).toBe(true);
    for (const t of r.results)
      expect(readFileSync(join(r.outDir, String(t.index), "stdout"), "utf8")).toBe(content);
    const size = content.length;
    for (const n of [a, b]) {
      const ran = r.results.filter((t) => t.node === n.name).length;
      expect(ran).toBeGreaterThan(0);
      expect(await stats(n)).toMatchObject({ bytesReceived: size, bytesServed: ran * size });
    }
    expect(r.inputs).toEqual({ sent: 2 * size, perTask: 12 * size, saved: 10 * size });
    // the nodes keep it: the same client's next batch sends no input byte
    const again = await run(clock, j, [a, b], deps);
    expect(again.results.every((t) => t.state === "done")).toBe(true);
    expect(again.inputs).toEqual({ sent: 0, perTask: 12 * size, saved: 12 * size });
    expect((await stats(a)).bytesReceived).toBe(size);
  });

  test("every task's stdout and outputs come back; an exit code fails only its task; a missing output is named", async () => {
    const clock = new ManualClock();
    const a = node("a", clock, (c) =>
      taskOf(c).index === 2 ? { exitCode: 3, stderr: "bad input\n" } : undefined,
    );
    const b = node("b", clock);
    const r = await run(clock, job({ tasks: 6, maxPerNode: 2, outputs: ["out.txt", "never.txt"] }), [a, b]);
    const failed = r.results.filter((t) => t.state === "failed");
    // task 2 fails only where node a ran it; either way no task is retried for its own exit code
    for (const t of failed) expect(t).toMatchObject({ index: 2, exitCode: 3, attempts: 1, node: "a" });
    for (const t of r.results.filter((t) => t.state === "done")) {
      expect(readFileSync(join(r.outDir, String(t.index), "stdout"), "utf8")).toBe(`done ${t.index}\n`);
      expect(readFileSync(join(r.outDir, String(t.index), "out.txt"), "utf8")).toBe(`task ${t.index}\n`);
      expect(t.error).toBe("missing outputs: never.txt");
    }
    expect(new Set(r.results.map((t) => t.node))).toEqual(new Set(["a", "b"]));
  });

  test("a task that runs past timeoutSeconds on the clock is rescheduled; its node stays in use", async () => {
    const clock = new ManualClock();
    const slow = (c: FakeExecCall) => {
      const t = taskOf(c);
      return t.index === 1 && t.attempt === 1 ? { runForMs: 60_000 } : undefined;
    };
    const a = node("a", clock, slow);
    const r = await run(clock, job({ tasks: 3, maxPerNode: 1, timeoutSeconds: 5 }), [a]);
    expect(r.results.map((t) => t.state)).toEqual(["done", "done", "done"]);
    expect(r.results[1]).toMatchObject({ attempts: 2, node: "a", exitCode: 0 });
    // the timed-out container was removed and a fresh one made for what followed
    expect((await a.engine.listByLabel("p2prc.node")).length).toBe(0);
  });

  test("a node whose engine goes away mid-batch is given up; its tasks finish on the other node", async () => {
    const clock = new ManualClock();
    let calls = 0;
    const flaky: FakeNode = node("flaky", clock, () => {
      if (++calls > 1) flaky.engine.down = true;
      return undefined;
    });
    const good = node("good", clock);
    const r = await run(clock, job({ tasks: 6, maxPerNode: 1 }), [flaky, good]);
    expect(r.results.every((t) => t.state === "done")).toBe(true);
    expect(r.results.filter((t) => t.node === "flaky").length).toBeLessThanOrEqual(1);
    const moved = r.results.filter((t) => t.attempts === 2);
    expect(moved.length).toBeGreaterThan(0);
  });

  test("no node can run it: 'no node left'; the same job on a working node resumes and finishes it", async () => {
    const clock = new ManualClock();
    const broken = node("broken", clock, () => ({
      error: new P2prcError("E_ENGINE", "exec failed: OCI runtime error", { retryable: true }),
    }));
    const j = job({ tasks: 3, maxPerNode: 1, retries: 0 });
    const first = await run(clock, j, [broken]);
    expect(first.results.every((t) => t.state === "failed")).toBe(true);
    // the reason names the node given up and why
    expect(first.results.map((t) => t.error)).toContain(
      `no node left to run it (broken refused: ${first.results[0]?.error})`,
    );
    const good = node("good", clock);
    // the same store and outDir: the batch is found again
    const second = await run(clock, j, [good], first.deps, first.outDir);
    expect(second.resumed).toBe(true);
    expect(second.results.map((t) => [t.state, t.node])).toEqual([
      ["done", "good"],
      ["done", "good"],
      ["done", "good"],
    ]);
  });

  test("progress never counts a finished task as running: the last report is total done, 0 running (defect 4)", async () => {
    const clock = new ManualClock();
    const reports: BatchProgress[] = [];
    const r = await run(
      clock,
      job({ tasks: 16, maxPerNode: 3 }),
      [node("a", clock), node("b", clock)],
      undefined,
      undefined,
      {
        onProgress: (p) => reports.push(p),
      },
    );
    expect(r.results.every((t) => t.state === "done")).toBe(true);
    for (const p of reports) {
      expect(p.done + p.failed + p.running + p.pending).toBe(p.total);
      const perNode = Object.values(p.perNode).reduce((a, n) => a + n.running, 0);
      expect(perNode).toBe(p.running);
    }
    const doneEvents = reports.filter((p) => p.event?.state === "done");
    for (const p of doneEvents) expect(p.running).toBeLessThan(p.total - p.done + 1);
    expect(reports.at(-1)).toMatchObject({ total: 16, done: 16, running: 0, pending: 0 });
  });

  test("after a refusal (409 over its limit) each task fails with the node's reason and is reported (defect 5)", async () => {
    const clock = new ManualClock();
    const reports: BatchProgress[] = [];
    const j = job({ tasks: 3, maxPerNode: 1, cpus: 1000, retries: 1 });
    const r = await run(clock, j, [node("a", clock)], undefined, undefined, {
      onProgress: (p) => reports.push(p),
    });
    for (const t of r.results) {
      expect(t.state).toBe("failed");
      expect(t.error).toContain("cpus 1000 is over this node's limit");
    }
    expect(r.results.filter((t) => t.attempts === 0).map((t) => t.error?.split(" (")[0])).toEqual([
      "no node left to run it",
      "no node left to run it",
    ]);
    // every task's final failure is an event (the plain-line output prints one line for each)
    const failed = reports.filter((p) => p.event?.state === "failed").map((p) => p.event?.index);
    expect(failed.sort()).toEqual([0, 1, 2]);
  });

  test("cancel: no task starts, the warm containers are removed, interrupted tasks stay pending; the next run resumes", async () => {
    const clock = new ManualClock();
    const a = node("a", clock, (c) => (taskOf(c).index >= 2 ? { runForMs: 3_600_000 } : undefined));
    const controller = new AbortController();
    const j = job({ tasks: 6, maxPerNode: 2 });
    const deps = client(clock);
    let trackedWhileRunning: string[] = [];
    const first = await run(clock, j, [a], deps, undefined, {
      signal: controller.signal,
      // tasks 0 and 1 finish at once; cancel when 2 and 3 have started their hour-long runs
      onProgress: (p) => {
        if (p.event?.state === "running" && p.event.index === 3) {
          // the batch's warm containers are tracked while they live (--tc lists them: defect 3)
          trackedWhileRunning = deps.tracking.tracked().map((t) => t.id);
          queueMicrotask(() => controller.abort());
        }
      },
    });
    expect(trackedWhileRunning.length).toBe(2);
    expect(deps.tracking.tracked()).toEqual([]);
    expect(first.cancelled).toBe(true);
    expect(first.results.map((t) => t.state)).toEqual([
      "done",
      "done",
      "pending",
      "pending",
      "pending",
      "pending",
    ]);
    expect(first.results[2]?.attempts).toBe(0);
    expect((await a.engine.listByLabel("p2prc.node")).length).toBe(0);
    const b = node("b", clock);
    const second = await run(clock, j, [b], first.deps, first.outDir);
    expect(second).toMatchObject({ resumed: true, cancelled: false });
    expect(second.results.map((t) => [t.state, t.node])).toEqual([
      ["done", "a"],
      ["done", "a"],
      ["done", "b"],
      ["done", "b"],
      ["done", "b"],
      ["done", "b"],
    ]);
  });

  test("retryFailed runs only the failed tasks again; done ones are not redone", async () => {
    const clock = new ManualClock();
    let broken = true;
    const ran: number[] = [];
    const a = node("a", clock, (c) => {
      ran.push(taskOf(c).index);
      return broken && taskOf(c).index % 2 === 1 ? { exitCode: 7 } : undefined;
    });
    const j = job({ tasks: 4, maxPerNode: 1 });
    const first = await run(clock, j, [a]);
    expect(first.results.map((t) => [t.state, t.error ?? ""])).toEqual([
      ["done", ""],
      ["failed", "exit 7; missing outputs: out.txt"],
      ["done", ""],
      ["failed", "exit 7; missing outputs: out.txt"],
    ]);
    // a plain rerun keeps exit-code failures failed
    const plain = await run(clock, j, [a], first.deps, first.outDir);
    expect(plain.results.filter((t) => t.state === "failed").length).toBe(2);
    broken = false;
    ran.length = 0;
    const again = await run(clock, j, [a], first.deps, first.outDir, { retryFailed: true });
    expect(again.results.map((t) => [t.state, t.attempts])).toEqual([
      ["done", 1],
      ["done", 1],
      ["done", 1],
      ["done", 1],
    ]);
    expect(ran.sort()).toEqual([1, 3]);
  });
});

describe("a future's attempt on a node without the runtime route (an older p2prc)", () => {
  test("falls back to a task, and asks that node's route no more", async () => {
    const clock = new ManualClock();
    const old = node("old", clock);
    const { deps, asked } = watched(clock, async (path, _init, send) => {
      // what a node of before the route answers (its notFound)
      if (path.endsWith("/futures/run"))
        return Response.json(
          { error: { code: "E_NOT_FOUND", message: `no route POST ${path}` } },
          { status: 404 },
        );
      return send();
    });
    const w = new NodeWorker({ url: old.url, name: old.name }, 1, job({ tasks: 1, outputs: [] }), 60, deps);
    for (const n of [1, 2]) {
      let reply = "";
      const outcome = await w.run(
        0,
        {
          index: n,
          attempt: 1,
          env: {},
          inputs: [],
          command: ["echo", `fallback ${n}`],
          runtime: true,
          onReply: (r) => {
            reply = r.stdout;
          },
        },
        clock,
      );
      expect(outcome).toMatchObject({ kind: "exited", exitCode: 0 });
      expect(reply).toBe(`fallback ${n}\n`);
    }
    expect(asked.filter((p) => p.endsWith("/futures/run")).length).toBe(1);
    expect(asked.filter((p) => p.endsWith("/tasks")).length).toBe(2);
    await w.cleanup();
  });
});

/** A FakeEngine whose creates after the first, and whose removals, wait until their gate opens. */
class GatedEngine extends FakeEngine {
  private creates = 0;
  readonly createGate = Promise.withResolvers<void>();
  readonly removeGate = Promise.withResolvers<void>();
  override async create(spec: Parameters<FakeEngine["create"]>[0]): Promise<string> {
    if (this.creates++ > 0) await this.createGate.promise;
    return super.create(spec);
  }
  override async remove(id: string): Promise<void> {
    await this.removeGate.promise;
    return super.remove(id);
  }
}

/** The client's requests (method and path) as they leave, and `deps` that sends through `rewrite` first. */
function watched(
  clock: ManualClock,
  rewrite?: (path: string, init: RequestInit, send: () => Promise<Response>) => Promise<Response>,
) {
  const deps = client(clock);
  const asked: string[] = [];
  const inner = deps.transport as NonNullable<ClientDeps["transport"]>;
  deps.transport = {
    ...inner,
    send: async (to, path, init) => {
      asked.push(`${init.method ?? "GET"} ${path}`);
      const send = () => inner.send(to, path, init);
      return rewrite ? rewrite(path, init, send) : send();
    },
  };
  return { deps, asked };
}

describe("outputs in the task's reply", () => {
  test("one request per task: the outputs come with the task's answer, no file fetch", async () => {
    const clock = new ManualClock();
    const a = node("a", clock);
    const { deps, asked } = watched(clock);
    const r = await run(
      clock,
      job({ tasks: 6, maxPerNode: 2, outputs: ["out.txt", "never.txt"] }),
      [a],
      deps,
    );
    for (const t of r.results) {
      expect(t).toMatchObject({ state: "done", error: "missing outputs: never.txt" });
      expect(readFileSync(join(r.outDir, String(t.index), "out.txt"), "utf8")).toBe(`task ${t.index}\n`);
    }
    expect(asked.filter((p) => p.includes("/files"))).toEqual([]);
    expect(asked.filter((p) => p.startsWith("POST") && p.endsWith("/tasks")).length).toBe(6);
  });

  test("an older node refuses the field: the task runs without it and its outputs are fetched; asked once", async () => {
    const clock = new ManualClock();
    const old = node("old", clock);
    const { deps, asked } = watched(clock, async (path, init, send) => {
      // what a node of before the field answers (its task schema is strict)
      if (path.endsWith("/tasks") && String(init.body).includes('"outputs"'))
        return Response.json(
          { error: { code: "E_INVALID", message: 'body: unknown field "outputs"', field: "body.outputs" } },
          { status: 400 },
        );
      return send();
    });
    const r = await run(clock, job({ tasks: 4, maxPerNode: 1 }), [old], deps);
    for (const t of r.results) {
      expect(t).toMatchObject({ state: "done", attempts: 1 });
      expect(readFileSync(join(r.outDir, String(t.index), "out.txt"), "utf8")).toBe(`task ${t.index}\n`);
    }
    expect(asked.filter((p) => p.endsWith("/tasks")).length).toBe(5);
    expect(asked.filter((p) => p.includes("/files?")).length).toBe(4);
  });

  test("an output whose bytes do not match the reply's hash is refused", async () => {
    const clock = new ManualClock();
    const a = node("a", clock);
    const { deps } = watched(clock, async (path, _init, send) => {
      const res = await send();
      if (!path.endsWith("/tasks") || res.status !== 200) return res;
      const body = (await res.json()) as { outputs?: { tar?: string }[] };
      for (const o of body.outputs ?? []) if (o.tar) o.tar = Buffer.from("forged").toString("base64");
      return Response.json(body);
    });
    const r = await run(clock, job({ tasks: 1, retries: 0 }), [a], deps);
    expect(r.results[0]).toMatchObject({ state: "failed" });
    expect(r.results[0]?.error).toContain("do not match the reply's hash");
  });
});

describe("the warm pool's start and end", () => {
  test("tasks start in the first container up while the slots' others are still being made", async () => {
    const clock = new ManualClock();
    const used = new Set<string>();
    const a = node("a", clock, (c) => void used.add(c.id), GatedEngine);
    const engine = a.engine as GatedEngine;
    const done: number[] = [];
    const batch = run(clock, job({ tasks: 6, maxPerNode: 3 }), [a], client(clock), undefined, {
      onProgress: (p) => {
        if (p.event?.state === "done") done.push(p.event.index);
        if (done.length === 6) engine.createGate.resolve();
      },
    });
    engine.removeGate.resolve();
    const r = await batch;
    expect(r.results.every((t) => t.state === "done")).toBe(true);
    // all six ran before the 2nd and 3rd creates returned: in the one container that was up
    expect(used.size).toBe(1);
    expect((await a.engine.listByLabel("p2prc.node")).length).toBe(0);
  });

  test("runBatch returns before the node's engine removes the pool; the node removes it after", async () => {
    const clock = new ManualClock();
    const a = node("a", clock, undefined, GatedEngine);
    const engine = a.engine as GatedEngine;
    engine.createGate.resolve();
    const { deps, asked } = watched(clock);
    const r = await run(clock, job({ tasks: 4, maxPerNode: 2 }), [a], deps);
    expect(r.results.every((t) => t.state === "done")).toBe(true);
    const deletes = asked.filter((p) => p.startsWith("DELETE"));
    expect(deletes.length).toBe(2);
    for (const d of deletes) expect(d).toEndWith("?background=1");
    // the client is done (a CLI would exit here): the containers are still there, untracked by it
    expect((await a.engine.listByLabel("p2prc.node")).length).toBe(2);
    expect(deps.tracking.tracked().length).toBe(0);
    engine.removeGate.resolve();
    for (let i = 0; i < 100 && (await a.engine.listByLabel("p2prc.node")).length > 0; i++) await Bun.sleep(1);
    expect((await a.engine.listByLabel("p2prc.node")).length).toBe(0);
  });
});

/** A FakeEngine that records how many creates were in flight at once. */
class ConcurrencyEngine extends FakeEngine {
  inFlight = 0;
  most = 0;
  override async create(spec: Parameters<FakeEngine["create"]>[0]): Promise<string> {
    this.most = Math.max(this.most, ++this.inFlight);
    try {
      await Bun.sleep(5);
      return await super.create(spec);
    } finally {
      this.inFlight--;
    }
  }
}

describe("the warm pool on a node with several machines (a swarm)", () => {
  for (const machines of [1, 2]) {
    test(`${machines} machine(s) in the offer: ${machines} create(s) at a time, so the pool spreads from its first tasks`, async () => {
      const clock = new ManualClock();
      const a = node("m", clock, undefined, ConcurrencyEngine);
      let settled = false;
      const offer = { cpus: 16, memoryMb: 65536, freeContainers: 16, gpus: 0, machines };
      const batch = runBatch(client(clock), {
        job: job({ tasks: 12, maxPerNode: 4 }),
        jobText: `machines-${machines}`,
        jobDir: root,
        outDir: join(root, `run-${dirs++}`),
        nodes: [{ url: a.url, name: a.name, offer } as NodeTarget],
      }).finally(() => {
        settled = true;
      });
      while (!settled) {
        await Bun.sleep(1);
        clock.advance(250);
      }
      expect((await batch).results.every((t) => t.state === "done")).toBe(true);
      expect((a.engine as ConcurrencyEngine).most).toBe(machines);
    });
  }
});
