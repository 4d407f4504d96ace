// Batch throughput: 200 short tasks (`echo hello` in p2prc-test/busybox) over 3 server nodes in this one
// process (loopback, one port each), against the same 200 as `docker run --rm` through the docker CLI
// 4 at a time (`seq 200 | xargs -P4 ... docker run --rm IMAGE echo hello`) on the same engine.
//   p2prc     runBatch end to end from a client home whose IP table knows the 3 nodes (placement,
//             a warm pool of maxPerNode containers per node, files in, exec, stdout written, SQLite
//             state, pool removed at the end); every task checked: done, exit 0, stdout "hello\n"
//   baseline  the xargs line above through `sh -c`; checked: 200 lines "hello"
// Baseline and p2prc alternate (who goes first swaps), twice when the first pair leaves time for a second.
// Then where one task's time goes: its requests replayed one at a time against one node, each timed.
// Goal: p2prc time / baseline time ≤ 0.5.
// Run: node_modules/.bin/bun bench/batch.ts (or `make bench`). Reads DOCKER_HOST. Exits 77 when the
// docker CLI, the engine or the image is missing.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTar } from "nanotar";
import {
  addServer,
  type NodeOptions,
  type RunningNode,
  runBatch,
  start,
  type TaskResult,
  updateIPTable,
  viewIPTable,
} from "../abstractions/index.ts";
import { connect } from "../client/index.ts";
import { fetchTransport, generateIdentity, systemClock } from "../core/index.ts";
import { freePorts } from "../server/index.ts";
import { cleanEnv, interruptible, median, requireEngine } from "./lib.ts";

const IMAGE = "p2prc-test/busybox";
const COMMAND = ["echo", "hello"];
const TASKS = Number(process.env.BENCH_TASKS) || 200; // BENCH_TASKS for a quick check
const NODES = 3;
const PARALLEL = 4; // xargs -P
const GOAL = 0.5;
/** A second pair of runs only when the first pair's time fits again before this (seconds since start). */
const BUDGET_S = 170;
const MAX_PAIRS = 2;
/** Requests of one task replayed one at a time (after one warm-up). */
const STEP_RUNS = 20;
const TABLE_TIMEOUT_MS = 20_000;
let identity: ReturnType<typeof generateIdentity> | undefined;
/** The step breakdown's own signing key (the nodes run with openNetwork). */
const clientIdentity = () => {
  identity ??= generateIdentity();
  return identity;
};
const RUN_TIMEOUT_MS = 120_000;

const DOCKER_HOST = process.env.DOCKER_HOST || "unix:///var/run/docker.sock";
const env = cleanEnv({ DOCKER_HOST });
const began = performance.now();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---- preconditions -------------------------------------------------------------------------------

const { engineVersion, docker } = await requireEngine("batch", DOCKER_HOST, IMAGE, env);

// ---- setup and cleanup ---------------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), "p2prc-batch-"));
let nodes: RunningNode[] = [];
const nodeIds: string[] = [];
let cleaning: Promise<void> | undefined;

/** Stops the nodes, then removes every container labelled with one of their ids, then the temp dir. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all(
      nodes.map((n) => n.stop().catch((err) => console.log(`batch: node stop failed: ${err}`))),
    );
    nodes = [];
    let removed = 0;
    for (const id of nodeIds) {
      const left = await docker
        .listContainers({ all: true, filters: { label: [`p2prc.node=${id}`] } })
        .catch(() => []);
      for (const c of left) {
        try {
          await docker.getContainer(c.Id).remove({ force: true, v: true });
          removed++;
        } catch (err) {
          if ((err as { statusCode?: number }).statusCode !== 404)
            console.log(`batch: could not remove container ${c.Id}: ${err}`);
        }
      }
    }
    if (removed > 0) console.log(`batch: removed ${removed} container(s) the nodes left behind`);
    rmSync(work, { recursive: true, force: true });
  })();
  return cleaning;
}

const interruption = interruptible();
const checkInterrupted = interruption.check;

async function startNodes(): Promise<void> {
  const ports = await freePorts(NODES, "127.0.0.1");
  const seed = `127.0.0.1:${ports[0]}`;
  const startOn = (i: number, port: number) =>
    start({
      configDir: join(work, `node${i}`),
      env: {},
      gpus: async () => [], // no nvidia-smi: the bench is about containers
      reconcileIntervalMs: 60_000,
      overrides: {
        serverHost: "127.0.0.1",
        serverPort: port,
        machineName: `b${i}`,
        bootstrap: i ? [seed] : [],
        gossipIntervalMs: 500,
        defaultImage: IMAGE,
        maxContainers: 20,
        logLevel: "warn",
        dockerHost: DOCKER_HOST, // env is empty, so the node learns the engine from here
        openNetwork: true, // the client and the nodes are all this bench's: accept any signed node
      },
    });
  for (let i = 0; i < NODES; i++) {
    // a port picked above may be taken meanwhile (another connection's source port): take a fresh one
    for (let attempt = 0; ; attempt++) {
      try {
        const node = await startOn(i, ports[i] as number);
        nodes.push(node);
        nodeIds.push(node.nodeId);
        break;
      } catch (err) {
        if (i === 0 || attempt >= 3 || !/already in use/.test(String((err as Error).message))) throw err;
        ports[i] = (await freePorts(1, "127.0.0.1"))[0] as number;
      }
    }
  }
}

/** A client home whose IP table lists all the nodes with their addresses. */
async function clientHome(): Promise<NodeOptions> {
  const options: NodeOptions = { configDir: join(work, "client"), env: {}, overrides: { logLevel: "warn" } };
  for (const n of nodes) await addServer(options, new URL(n.url).host);
  const t0 = performance.now();
  for (;;) {
    checkInterrupted();
    await updateIPTable(options);
    const views = await viewIPTable(options);
    const known = nodeIds.filter((id) => views.some((v) => v.id === id && v.address && v.port));
    if (known.length === NODES) return options;
    if (performance.now() - t0 > TABLE_TIMEOUT_MS) {
      throw new Error(
        `the client's table lists ${known.length} of ${NODES} nodes after ${TABLE_TIMEOUT_MS} ms`,
      );
    }
    await sleep(250);
  }
}

// ---- the two ways to run 200 tasks ---------------------------------------------------------------

interface P2prcRun {
  s: number;
  perNode: Record<string, number>;
  medianTaskMs: number;
  /** Seconds from the call to the first task done (pool containers created on the way). */
  firstS: number;
  /** Seconds from the last task done to runBatch's return (pool removed, results.json written). */
  tailS: number;
  /** This process's CPU (client and the 3 nodes together) per task, ms. */
  cpuMsPerTask: number;
}

async function viaP2prc(client: NodeOptions, jobPath: string, outDir: string): Promise<P2prcRun> {
  let firstDone: number | undefined;
  let lastDone = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await runBatch(client, jobPath, outDir, {
    onProgress: (p) => {
      if (p.event?.state !== "done") return;
      lastDone = performance.now();
      firstDone ??= lastDone;
    },
  });
  const end = performance.now();
  const cpu = process.cpuUsage(cpu0);
  const s = (end - t0) / 1000;
  if (result.resumed) throw new Error(`p2prc: the batch in ${outDir} was resumed, not new`);
  const bad: string[] = [];
  const perNode: Record<string, number> = {};
  for (const r of result.results as TaskResult[]) {
    let stdout: string | undefined;
    try {
      stdout = readFileSync(join(outDir, String(r.index), "stdout"), "utf8");
    } catch {
      stdout = undefined;
    }
    if (r.state !== "done" || r.exitCode !== 0 || stdout !== "hello\n") {
      bad.push(
        `#${r.index}: ${r.state} exit ${r.exitCode} stdout ${JSON.stringify(stdout)} ${r.error ?? ""}`,
      );
    }
    perNode[r.node ?? "(none)"] = (perNode[r.node ?? "(none)"] ?? 0) + 1;
  }
  if (result.results.length !== TASKS || bad.length > 0) {
    throw new Error(
      `p2prc: ${result.results.length} results, ${bad.length} not done with "hello": ${bad.slice(0, 5).join("; ")}`,
    );
  }
  const ms = result.results.map((r) => r.durationMs ?? 0);
  return {
    s,
    perNode,
    medianTaskMs: median(ms),
    firstS: ((firstDone ?? end) - t0) / 1000,
    tailS: (end - lastDone) / 1000,
    cpuMsPerTask: (cpu.user + cpu.system) / 1000 / TASKS,
  };
}

function viaXargs(): number {
  const line = `seq ${TASKS} | xargs -P${PARALLEL} -I{} docker run --rm ${IMAGE} ${COMMAND.join(" ")}`;
  const t0 = performance.now();
  const r = Bun.spawnSync(["sh", "-c", line], {
    env,
    stdout: "pipe",
    stderr: "pipe",
    timeout: RUN_TIMEOUT_MS,
  });
  const s = (performance.now() - t0) / 1000;
  const lines = r.stdout.toString().split("\n").filter(Boolean);
  const hellos = lines.filter((l) => l === "hello").length;
  if (r.exitCode !== 0 || hellos !== TASKS || lines.length !== TASKS) {
    throw new Error(
      `baseline: exit ${r.exitCode}, ${hellos} of ${TASKS} lines "hello" (${lines.length} lines): ${r.stderr.toString().trim().slice(0, 300)}`,
    );
  }
  return s;
}

// ---- one task's requests, step by step ------------------------------------------------------------

const STEPS = ["putFiles", "exec", "write stdout/stderr", "DB update ×2"] as const;
type Step = (typeof STEPS)[number];

/**
 * The requests NodeWorker.run (client/batch/worker.ts) makes for one task on a warm pool container, replayed
 * one at a time against one node and timed each; plus the client-side file writes and two SQLite
 * updates of the same shape (a store opened on a scratch home).
 */
/** A fetch pinned to the node's certificate (the nodes serve TLS), keeping its connection as the client does. */
function pinnedFetch(certPem: string | undefined): typeof fetch {
  if (!certPem) return fetch;
  return new Bun.FetchSession({ tls: { ca: certPem, checkServerIdentity: () => undefined } })
    .fetch as typeof fetch;
}

const nodeClient = (url: string, certPem: string | undefined) =>
  connect(
    { identity: clientIdentity(), clock: systemClock, transport: fetchTransport(pinnedFetch(certPem)) },
    { url },
    60_000,
  );

async function stepBreakdown(
  url: string,
  certPem: string | undefined,
): Promise<{ steps: Record<Step, number[]>; createMs: number }> {
  const { openStore } = await import("../store/index.ts");
  const store = openStore(join(work, "steps.db"));
  const batchId = "bench-steps";
  store.client.createBatch({ id: batchId, key: "k", job: "{}", outDir: work, createdAt: Date.now() }, 1);
  const c = nodeClient(url, certPem);
  const steps = Object.fromEntries(STEPS.map((s) => [s, [] as number[]])) as Record<Step, number[]>;
  const t0 = performance.now();
  const id = (
    await c.createContainer({ image: IMAGE, command: ["tail", "-f", "/dev/null"], ttlSeconds: 600 })
  ).id;
  const createMs = performance.now() - t0;
  try {
    for (let i = 0; i < STEP_RUNS + 1; i++) {
      checkInterrupted();
      const t: Partial<Record<Step, number>> = {};
      const time = async <T>(step: Step, fn: () => Promise<T> | T): Promise<T> => {
        const s0 = performance.now();
        const out = await fn();
        t[step] = performance.now() - s0;
        return out;
      };
      const dir = `p2prc-task/s${i}-1`;
      await time("DB update ×2", () => {
        const row = { index: 0, node: "b0", exitCode: undefined, durationMs: undefined, error: undefined };
        store.client.updateTask(batchId, { ...row, state: "running", attempts: i + 1 });
        store.client.updateTask(batchId, {
          ...row,
          state: "done",
          exitCode: 0,
          attempts: i + 1,
          durationMs: 1,
        });
      });
      await time("putFiles", () =>
        c.putFiles(
          id,
          "/",
          createTar([
            { name: "p2prc-task/", attrs: { mode: "1777", uid: 0, gid: 0 } },
            { name: `${dir}/`, attrs: { mode: "777", uid: 0, gid: 0 } },
          ]),
        ),
      );
      const r = await time("exec", () =>
        c.exec(id, COMMAND, {
          env: { P2PRC_TASK_INDEX: "0", P2PRC_TASK_COUNT: "1" },
          workingDir: `/${dir}`,
          timeoutSeconds: 600,
        }),
      );
      if (r.exitCode !== 0 || r.stdout !== "hello\n")
        throw new Error(`steps: exec gave ${JSON.stringify(r)}`);
      await time("write stdout/stderr", () => {
        const out = join(work, "steps-out", String(i));
        mkdirSync(out, { recursive: true });
        writeFileSync(join(out, "stdout"), r.stdout);
        writeFileSync(join(out, "stderr"), r.stderr);
      });
      if (i === 0) continue; // warm-up
      for (const s of STEPS) steps[s].push(t[s] as number);
    }
  } finally {
    await c.removeContainer(id).catch(() => undefined);
    store.close();
  }
  return { steps, createMs };
}

/** The engine alone for an exec of the same command (dockerode: create, start, collect, inspect). */
async function engineExec(containerUrl: string, certPem: string | undefined): Promise<number[]> {
  const c = nodeClient(containerUrl, certPem);
  const id = (
    await c.createContainer({ image: IMAGE, command: ["tail", "-f", "/dev/null"], ttlSeconds: 600 })
  ).id;
  const times: number[] = [];
  try {
    const container = docker.getContainer(id);
    for (let i = 0; i < STEP_RUNS + 1; i++) {
      checkInterrupted();
      const t0 = performance.now();
      const exec = await container.exec({ Cmd: COMMAND, AttachStdout: true, AttachStderr: true, Tty: false });
      const stream = await exec.start({ hijack: true, stdin: false });
      await new Promise<void>((resolve, reject) => {
        stream.on("data", () => {});
        stream.on("end", resolve);
        stream.on("close", resolve);
        stream.on("error", reject);
      });
      await exec.inspect();
      if (i > 0) times.push(performance.now() - t0);
    }
  } finally {
    await c.removeContainer(id).catch(() => undefined);
  }
  return times;
}

// ---- main ----------------------------------------------------------------------------------------

async function main(): Promise<void> {
  await startNodes();
  checkInterrupted();
  const client = await clientHome();
  const jobDir = join(work, "job");
  mkdirSync(jobDir);
  const jobPath = join(jobDir, "job.json");
  writeFileSync(jobPath, `${JSON.stringify({ image: IMAGE, command: COMMAND, tasks: TASKS })}\n`);
  // one untimed docker run, so neither side pays for a cold CLI / engine path in its first run
  const warm = Bun.spawnSync(["docker", "run", "--rm", IMAGE, "true"], { env, timeout: 30_000 });
  if (warm.exitCode !== 0) throw new Error(`docker run --rm ${IMAGE} true: exit ${warm.exitCode}`);

  const pairs: { baselineS: number; p2prc: P2prcRun }[] = [];
  for (let pair = 0; pair < MAX_PAIRS; pair++) {
    const pairStart = performance.now();
    let baselineS = 0;
    let p2prc: P2prcRun | undefined;
    const order = pair % 2 === 0 ? ["baseline", "p2prc"] : ["p2prc", "baseline"];
    for (const which of order) {
      checkInterrupted();
      if (which === "baseline") baselineS = viaXargs();
      else p2prc = await viaP2prc(client, jobPath, join(work, `out${pair}`));
    }
    pairs.push({ baselineS, p2prc: p2prc as P2prcRun });
    const pairS = (performance.now() - pairStart) / 1000;
    const elapsedS = (performance.now() - began) / 1000;
    if (elapsedS + pairS > BUDGET_S) break;
  }

  checkInterrupted();
  const { steps, createMs } = await stepBreakdown(nodes[0]?.url as string, nodes[0]?.certPem);
  const engine = await engineExec(nodes[0]?.url as string, nodes[0]?.certPem);

  // ---- report ----
  console.log(
    `batch: ${TASKS} × \`${COMMAND.join(" ")}\` in ${IMAGE}, engine ${engineVersion} at ${DOCKER_HOST}`,
  );
  console.log(
    `p2prc: runBatch over ${NODES} in-process nodes (maxPerNode 4 → ${NODES * 4} slots, warm pool); ` +
      `baseline: seq ${TASKS} | xargs -P${PARALLEL} docker run --rm`,
  );
  const nodeNames = Array.from({ length: NODES }, (_, i) => `b${i}`);
  const header = [
    "run",
    "order",
    "p2prc s",
    "baseline s",
    "ratio",
    "p2prc tasks/s",
    "baseline tasks/s",
    "task med ms",
    "1st done s",
    "tail s",
    "cpu ms/task",
    ...nodeNames,
  ];
  const rows = pairs.map((p, i) => [
    String(i + 1),
    i % 2 === 0 ? "baseline first" : "p2prc first",
    p.p2prc.s.toFixed(2),
    p.baselineS.toFixed(2),
    (p.p2prc.s / p.baselineS).toFixed(3),
    (TASKS / p.p2prc.s).toFixed(1),
    (TASKS / p.baselineS).toFixed(1),
    p.p2prc.medianTaskMs.toFixed(0),
    p.p2prc.firstS.toFixed(2),
    p.p2prc.tailS.toFixed(2),
    p.p2prc.cpuMsPerTask.toFixed(1),
    ...nodeNames.map((n) => String(p.p2prc.perNode[n] ?? 0)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const fmt = (r: string[]) =>
    r
      .map((cell, i) => (i < 2 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number)))
      .join("  ");
  console.log(fmt(header));
  for (const r of rows) console.log(fmt(r));
  const p2prcTotal = pairs.reduce((s, p) => s + p.p2prc.s, 0);
  const baseTotal = pairs.reduce((s, p) => s + p.baselineS, 0);
  const ratio = p2prcTotal / baseTotal;
  console.log(
    `ratio p2prc / baseline over ${pairs.length} run(s): ${ratio.toFixed(3)}  (goal ≤ ${GOAL}: ${ratio <= GOAL ? "yes" : "NO"})`,
  );
  console.log(
    "task med ms: runBatch's per-task duration (slot taken → result written); 1st done s: call → first task " +
      "done (pool containers created on the way); tail s: last task done → runBatch returned (pool removed); " +
      "cpu ms/task: this process (client + 3 nodes) per task",
  );

  console.log(
    `one task's steps on b0, one at a time (median of ${STEP_RUNS} after a warm-up; the pool container's create, once per slot: ${createMs.toFixed(0)} ms):`,
  );
  const parts: [string, number][] = [
    ...STEPS.map((s): [string, number] => [s, median(steps[s])]),
    ["  of exec: the engine alone (dockerode exec create/start/inspect)", median(engine)],
  ];
  const w = Math.max(...parts.map(([label]) => label.length), "sum of the steps".length);
  for (const [label, ms] of parts) console.log(`  ${label.padEnd(w)}  ${ms.toFixed(1).padStart(7)} ms`);
  const sum = STEPS.reduce((s, k) => s + median(steps[k]), 0);
  console.log(`  ${"sum of the steps".padEnd(w)}  ${sum.toFixed(1).padStart(7)} ms`);
  console.log(`total ${((performance.now() - began) / 1000).toFixed(0)} s`);
}

try {
  await main();
} catch (err) {
  const interrupted = interruption.signal();
  if (interrupted) {
    console.log(`batch: interrupted by ${interrupted}; cleaning up`);
    process.exitCode = 130;
  } else {
    console.log(`batch: failed: ${(err as Error).stack ?? err}`);
    process.exitCode = 1;
  }
} finally {
  await cleanup();
}
