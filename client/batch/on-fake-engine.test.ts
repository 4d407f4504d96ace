// The batch core and shell end to end, against in-process server apps over FakeEngine (no Docker): the
// decisions of scheduler.ts seen through real node answers. Faults are injected per task (Nomad mock
// driver style) and time is one ManualClock shared by the client, the servers and the engines.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fetchTransport, generateIdentity, ManualClock, P2prcError } from "../../core/index.ts";
import { FakeEngine, type FakeExecCall, type FakeExecFaults } from "../../server/engine/fake.ts";
import { testServerApp } from "../../server/fixtures.ts";
import { openStore } from "../../store/index.ts";
import type { ClientDeps } from "../containers.ts";
import { type Job, JobSchema } from "./job.ts";
import { runBatch } from "./runner.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-batch-fake-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;

/** The task index and attempt of an exec the runner makes (env and working directory say them). */
const taskOf = (c: FakeExecCall) => ({
  index: Number(c.env.P2PRC_TASK_INDEX),
  attempt: Number(c.workingDir.split("-").pop()),
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
) {
  const engine = new FakeEngine({ clock, execFaults });
  const { app } = testServerApp({
    engine,
    records: openStore(":memory:").containers,
    clock,
    nodeId: name.padEnd(64, "0"),
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
) {
  let settled = false;
  const batch = runBatch(deps, {
    job: j,
    jobText: JSON.stringify(j),
    jobDir: root,
    outDir,
    nodes: nodes.map((n) => ({ url: n.url, name: n.name })),
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
    expect(first.results.map((t) => t.error)).toContain("no node left to run it");
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
});
