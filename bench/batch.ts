// Batch throughput: 200 short tasks (`echo hello` in p2prc-test/busybox) over 3 server nodes in this one
// process (loopback, one port each), side by side with the docker CLI on the same engine:
//   p2prc          runBatch end to end from a client home whose IP table knows the 3 nodes (placement,
//                  a warm pool of maxPerNode containers per node, one task call per task, stdout written,
//                  SQLite state, pool removed at the end); every task checked: done, exit 0, stdout "hello\n"
//   p2prc+outputs  the same with an output collected per task (`echo hello > out.txt`, outputs: [out.txt]),
//                  each out.txt checked
//   docker run     `seq 200 | xargs -P4 ... docker run --rm IMAGE echo hello`; checked: 200 lines "hello"
//   docker exec    the same 200 as `docker exec` 4 at a time into 4 warm containers (made beforehand,
//                  untimed); checked: 200 lines "hello"
// The four alternate (the order rotates), twice when the first round leaves time for a second. p2prc's
// time is split into pool start (call → first task done), tasks (first done → last) and pool end (last
// done → runBatch returned: the nodes remove the pool after answering; the bench waits, untimed, until
// they have, so the next way does not pay for it). BENCH_SWEEP=1,2,3,4 runs only p2prc (with and
// without outputs) at each maxPerNode; BENCH_MAX_PER_NODE sets it for the side-by-side runs.
// Then where one task's time goes: its requests replayed one at a time against one node, each timed;
// and a batch with a shared input: the bytes its inputs took with the nodes' cache and without it.
// Goals: p2prc+outputs / docker run ≤ 0.3; p2prc throughput / docker exec throughput ≥ 1.0.
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
/** Slots per node (the job's maxPerNode). */
const MAX_PER_NODE = Number(process.env.BENCH_MAX_PER_NODE) || 4;
/**
 * BENCH_SWEEP=1,2,3,4: only p2prc, once per maxPerNode listed (the engine's best concurrency), then exit;
 * each sweep run is followed by the same job with outputs.
 */
const SWEEP = (process.env.BENCH_SWEEP ?? "")
  .split(",")
  .filter(Boolean)
  .map((n) => Number(n));
/** p2prc+outputs time / docker run time. */
const GOAL_RUN = 0.3;
/** p2prc throughput / docker exec throughput. */
const GOAL_EXEC = 1.0;
/** A second round only when the first round's time fits again before this (seconds since start). */
const BUDGET_S = 240;
/** BENCH_ROUNDS=0 skips the side-by-side runs (the step breakdown and the shared input only). */
const MAX_PAIRS = process.env.BENCH_ROUNDS === undefined ? 2 : Number(process.env.BENCH_ROUNDS);
/** The shared-input batch: this many tasks reading one input of this size. */
const SHARED_TASKS = 60;
const SHARED_BYTES = 8 * 1024 * 1024;
/** Requests of one task replayed one at a time (after one warm-up). */
const STEP_RUNS = 20;
const TABLE_TIMEOUT_MS = 20_000;
let identity: ReturnType<typeof generateIdentity> | undefined;
/** The step breakdown's own signing key (the nodes run with openNetwork). */
const clientIdentity = () => {
  identity ??= generateIdentity();
  return identity;
};
const RUN_TIMEOUT_MS = 300_000;

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
    for (const name of warmNames) {
      await docker
        .getContainer(name)
        .remove({ force: true })
        .catch(() => undefined);
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

// ---- the ways to run 200 tasks -------------------------------------------------------------------

interface P2prcRun {
  s: number;
  perNode: Record<string, number>;
  medianTaskMs: number;
  /** Seconds from the call to the first task done (pool containers created on the way). */
  firstS: number;
  /** Seconds from the last task done to runBatch's return (pool removed, results.json written). */
  tailS: number;
  /** Seconds from the first task done to the last (the steady state: the pool made, tasks running). */
  spanS: number;
  /** Seconds after runBatch returned until the nodes had removed the pool (untimed, waited for). */
  removedS: number;
  /** This process's CPU (client and the 3 nodes together) per task, ms. */
  cpuMsPerTask: number;
  inputs: { sent: number; perTask: number; saved: number };
  /** Tasks the nodes ran through a task agent and as a plain exec in this run, and agents opened. */
  via: { agent: number; exec: number; opened: number };
}

/** The nodes' task counters summed (GET /v1/tasks/stats on each). */
async function taskCounts(): Promise<{ agent: number; exec: number; opened: number }> {
  const all = await Promise.all(nodes.map((n) => nodeClient(n.url, n.certPem).taskStats()));
  return {
    agent: all.reduce((s, t) => s + t.viaAgent, 0),
    exec: all.reduce((s, t) => s + t.viaExec, 0),
    opened: all.reduce((s, t) => s + t.agentsOpened, 0),
  };
}

/** Runs the job at `jobPath`; every task must be done with `expected` as its stdout (or its out.txt). */
async function viaP2prc(
  client: NodeOptions,
  jobPath: string,
  outDir: string,
  check: { file: string; expected: string } = { file: "stdout", expected: "hello\n" },
  tasks = TASKS,
): Promise<P2prcRun> {
  let firstDone: number | undefined;
  let lastDone = 0;
  const counts0 = await taskCounts();
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
  const counts1 = await taskCounts();
  // the nodes remove the pool after answering: waited for here, untimed, so the next way measured
  // does not pay for this one's removals
  const removing0 = performance.now();
  for (;;) {
    const left = await Promise.all(
      nodeIds.map((id) =>
        docker.listContainers({ all: true, filters: { label: [`p2prc.node=${id}`] } }).catch(() => []),
      ),
    );
    if (left.every((l) => l.length === 0) || performance.now() - removing0 > 60_000) break;
    await sleep(100);
  }
  const removedS = (performance.now() - removing0) / 1000;
  const s = (end - t0) / 1000;
  if (result.resumed) throw new Error(`p2prc: the batch in ${outDir} was resumed, not new`);
  const bad: string[] = [];
  const perNode: Record<string, number> = {};
  for (const r of result.results as TaskResult[]) {
    let got: string | undefined;
    try {
      got = readFileSync(join(outDir, String(r.index), check.file), "utf8");
    } catch {
      got = undefined;
    }
    if (r.state !== "done" || r.exitCode !== 0 || got !== check.expected) {
      bad.push(
        `#${r.index}: ${r.state} exit ${r.exitCode} ${check.file} ${JSON.stringify(got)} ${r.error ?? ""}`,
      );
    }
    perNode[r.node ?? "(none)"] = (perNode[r.node ?? "(none)"] ?? 0) + 1;
  }
  if (result.results.length !== tasks || bad.length > 0) {
    throw new Error(
      `p2prc: ${result.results.length} results, ${bad.length} not done with ${JSON.stringify(check.expected)}: ${bad.slice(0, 5).join("; ")}`,
    );
  }
  const ms = result.results.map((r) => r.durationMs ?? 0);
  return {
    s,
    perNode,
    medianTaskMs: median(ms),
    firstS: ((firstDone ?? end) - t0) / 1000,
    tailS: (end - lastDone) / 1000,
    spanS: (lastDone - (firstDone ?? lastDone)) / 1000,
    removedS,
    cpuMsPerTask: (cpu.user + cpu.system) / 1000 / tasks,
    inputs: result.inputs,
    via: {
      agent: counts1.agent - counts0.agent,
      exec: counts1.exec - counts0.exec,
      opened: counts1.opened - counts0.opened,
    },
  };
}

/** A docker CLI line through `sh -c`, timed; it must print TASKS lines "hello". */
function viaCli(label: string, line: string): number {
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
      `${label}: exit ${r.exitCode}, ${hellos} of ${TASKS} lines "hello" (${lines.length} lines): ${r.stderr.toString().trim().slice(0, 300)}`,
    );
  }
  return s;
}

const dockerRun = () =>
  viaCli(
    "docker run",
    `seq ${TASKS} | xargs -P${PARALLEL} -I{} docker run --rm ${IMAGE} ${COMMAND.join(" ")}`,
  );

/** Names of the warm containers `docker exec` goes into, one per xargs slot. */
const warmNames: string[] = [];

/** Starts PARALLEL warm containers (untimed), labelled so cleanup() removes them. */
function startWarm(): void {
  for (let i = 0; i < PARALLEL; i++) {
    const name = `p2prc-bench-exec-${process.pid}-${i}`;
    const r = Bun.spawnSync(
      [
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--label",
        `p2prc.bench=${process.pid}`,
        IMAGE,
        "tail",
        "-f",
        "/dev/null",
      ],
      { env, stdout: "pipe", stderr: "pipe", timeout: 60_000 },
    );
    if (r.exitCode !== 0) throw new Error(`docker run -d ${name}: ${r.stderr.toString().trim()}`);
    warmNames.push(name);
  }
}

/** 200 `docker exec`, 4 at a time, task i into warm container i mod 4. */
function dockerExec(): number {
  const list = join(work, "exec-targets");
  writeFileSync(list, `${Array.from({ length: TASKS }, (_, i) => warmNames[i % PARALLEL]).join("\n")}\n`);
  return viaCli("docker exec", `xargs -P${PARALLEL} -I{} docker exec {} ${COMMAND.join(" ")} < ${list}`);
}

// ---- one task's requests, step by step ------------------------------------------------------------

const STEPS = [
  "task (one call: its agent runs it in a prepared directory)",
  "write stdout/stderr",
  "DB update ×2",
] as const;
type Step = (typeof STEPS)[number];

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

/**
 * The requests NodeWorker.run (client/batch/worker.ts) makes for one task on a warm pool container, replayed
 * one at a time against one node and timed each; plus the client-side file writes and two SQLite
 * updates of the same shape (a store opened on a scratch home).
 */
interface Breakdown {
  steps: Record<Step, number[]>;
  createMs: number;
  /** The path a task took before (a tar upload making its directory, then an exec), interleaved. */
  before: number[];
  /** This process's CPU (client and node) for the task call and for the path before, ms each. */
  cpuTask: number[];
  cpuBefore: number[];
}

async function stepBreakdown(url: string, certPem: string | undefined): Promise<Breakdown> {
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
  const before: number[] = [];
  const cpuTask: number[] = [];
  const cpuBefore: number[] = [];
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
      const cpu0 = process.cpuUsage();
      const r = await time("task (one call: its agent runs it in a prepared directory)", () =>
        c.runTask(id, {
          command: COMMAND,
          env: { P2PRC_TASK_INDEX: "0", P2PRC_TASK_COUNT: "1" },
          timeoutSeconds: 600,
        }),
      );
      const cpuTask0 = process.cpuUsage(cpu0);
      // the same task as it ran before: a tar upload making the directory, then an exec in it
      const dir = `p2prc-task/before-${i}`;
      const cpu1 = process.cpuUsage();
      const b0 = performance.now();
      await c.putFiles(
        id,
        "/",
        createTar([
          { name: "p2prc-task/", attrs: { mode: "1777", uid: 0, gid: 0 } },
          { name: `${dir}/`, attrs: { mode: "777", uid: 0, gid: 0 } },
        ]),
      );
      const old = await c.exec(id, COMMAND, {
        env: { P2PRC_TASK_INDEX: "0" },
        workingDir: `/${dir}`,
        timeoutSeconds: 600,
      });
      const beforeMs = performance.now() - b0;
      const cpuOld = process.cpuUsage(cpu1);
      if (old.stdout !== "hello\n") throw new Error(`steps: the path before gave ${JSON.stringify(old)}`);
      if (r.exitCode !== 0 || r.stdout !== "hello\n")
        throw new Error(`steps: task gave ${JSON.stringify(r)}`);
      await time("write stdout/stderr", () => {
        const out = join(work, "steps-out", String(i));
        mkdirSync(out, { recursive: true });
        writeFileSync(join(out, "stdout"), r.stdout);
        writeFileSync(join(out, "stderr"), r.stderr);
      });
      if (i === 0) continue; // warm-up (and the first run of directories)
      for (const s of STEPS) steps[s].push(t[s] as number);
      before.push(beforeMs);
      cpuTask.push((cpuTask0.user + cpuTask0.system) / 1000);
      cpuBefore.push((cpuOld.user + cpuOld.system) / 1000);
    }
  } finally {
    await c.removeContainer(id).catch(() => undefined);
    store.close();
  }
  return { steps, createMs, before, cpuTask, cpuBefore };
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

/** p2prc's steady-state throughput (first task done → last) over docker exec's (all its tasks). */
const steadyRatio = (r: { exec: number; p2prc: P2prcRun }) =>
  (TASKS - 1) / Math.max(r.p2prc.spanS, 1e-9) / (TASKS / r.exec);

/** BENCH_SWEEP: p2prc alone, then with outputs, at each maxPerNode listed; one row each. */
async function sweep(
  client: NodeOptions,
  jobDir: string,
  jobOf: (n: number) => object,
  outputsOf: (n: number) => object,
): Promise<void> {
  const rows: string[] = [];
  for (const n of SWEEP) {
    checkInterrupted();
    const plain = join(jobDir, `sweep-${n}.json`);
    const withOutputs = join(jobDir, `sweep-outputs-${n}.json`);
    writeFileSync(plain, `${JSON.stringify(jobOf(n))}\n`);
    writeFileSync(withOutputs, `${JSON.stringify(outputsOf(n))}\n`);
    const p = await viaP2prc(client, plain, join(work, `sweep${n}`));
    const o = await viaP2prc(client, withOutputs, join(work, `sweep-outputs${n}`), {
      file: "out.txt",
      expected: "hello\n",
    });
    const row =
      `maxPerNode ${n} (${n * NODES} slots): p2prc ${p.s.toFixed(2)} s (start ${p.firstS.toFixed(2)} / tasks ${p.spanS.toFixed(2)} / end ${p.tailS.toFixed(2)}, ` +
      `steady ${((TASKS - 1) / Math.max(p.spanS, 1e-9)).toFixed(2)} tasks/s, task med ${p.medianTaskMs.toFixed(0)} ms, cpu ${p.cpuMsPerTask.toFixed(1)} ms/task, ` +
      `removals done ${p.removedS.toFixed(2)} s after, agent/exec ${p.via.agent}/${p.via.exec}); ` +
      `+outputs ${o.s.toFixed(2)} s (steady ${((TASKS - 1) / Math.max(o.spanS, 1e-9)).toFixed(2)} tasks/s, agent/exec ${o.via.agent}/${o.via.exec})`;
    console.log(row);
    rows.push(row);
  }
  console.log(`sweep: ${TASKS} × \`${COMMAND.join(" ")}\` over ${NODES} in-process nodes on one engine`);
  for (const r of rows) console.log(r);
}

// ---- main ----------------------------------------------------------------------------------------

const WAYS = ["docker run", "docker exec", "p2prc", "p2prc+outputs"] as const;
type Way = (typeof WAYS)[number];
interface Round {
  order: Way[];
  run: number;
  exec: number;
  p2prc: P2prcRun;
  outputs: P2prcRun;
}

async function main(): Promise<void> {
  await startNodes();
  checkInterrupted();
  const client = await clientHome();
  const jobDir = join(work, "job");
  mkdirSync(jobDir);
  const jobPath = join(jobDir, "job.json");
  const jobOf = (maxPerNode: number) => ({ image: IMAGE, command: COMMAND, tasks: TASKS, maxPerNode });
  const outputsOf = (maxPerNode: number) => ({
    ...jobOf(maxPerNode),
    command: ["sh", "-c", "echo hello > out.txt"],
    outputs: ["out.txt"],
  });
  writeFileSync(jobPath, `${JSON.stringify(jobOf(MAX_PER_NODE))}\n`);
  const outputsPath = join(jobDir, "outputs.json");
  writeFileSync(outputsPath, `${JSON.stringify(outputsOf(MAX_PER_NODE))}\n`);
  if (SWEEP.length > 0) return sweep(client, jobDir, jobOf, outputsOf);
  // one untimed docker run, so neither side pays for a cold CLI / engine path in its first run
  const warm = Bun.spawnSync(["docker", "run", "--rm", IMAGE, "true"], { env, timeout: 30_000 });
  if (warm.exitCode !== 0) throw new Error(`docker run --rm ${IMAGE} true: exit ${warm.exitCode}`);
  startWarm();

  const rounds: Round[] = [];
  for (let round = 0; round < MAX_PAIRS; round++) {
    const roundStart = performance.now();
    const order = WAYS.map((_, i) => WAYS[(i + round * 2) % WAYS.length] as Way);
    const r: Partial<Round> = { order };
    for (const way of order) {
      checkInterrupted();
      if (way === "docker run") r.run = dockerRun();
      else if (way === "docker exec") r.exec = dockerExec();
      else if (way === "p2prc") r.p2prc = await viaP2prc(client, jobPath, join(work, `out${round}`));
      else
        r.outputs = await viaP2prc(client, outputsPath, join(work, `outputs${round}`), {
          file: "out.txt",
          expected: "hello\n",
        });
      const s = {
        "docker run": r.run,
        "docker exec": r.exec,
        p2prc: r.p2prc?.s,
        "p2prc+outputs": r.outputs?.s,
      }[way];
      console.log(`round ${round + 1}: ${way} ${s?.toFixed(2)} s`);
    }
    rounds.push(r as Round);
    const roundS = (performance.now() - roundStart) / 1000;
    const elapsedS = (performance.now() - began) / 1000;
    if (elapsedS + roundS > BUDGET_S) break;
  }

  checkInterrupted();
  const { steps, createMs, before, cpuTask, cpuBefore } = await stepBreakdown(
    nodes[0]?.url as string,
    nodes[0]?.certPem,
  );
  const engine = await engineExec(nodes[0]?.url as string, nodes[0]?.certPem);

  // a batch whose tasks share one input: what it took on the network with the nodes' cache
  checkInterrupted();
  const sharedDir = join(work, "shared");
  mkdirSync(sharedDir);
  writeFileSync(join(sharedDir, "input.bin"), new Uint8Array(SHARED_BYTES).fill(7));
  const sharedPath = join(sharedDir, "job.json");
  writeFileSync(
    sharedPath,
    `${JSON.stringify({ image: IMAGE, command: ["wc", "-c", "input.bin"], tasks: SHARED_TASKS, inputs: ["input.bin"] })}\n`,
  );
  const shared = await viaP2prc(
    client,
    sharedPath,
    join(work, "shared-out"),
    { file: "stdout", expected: `${SHARED_BYTES} input.bin\n` },
    SHARED_TASKS,
  );

  // ---- report ----
  console.log(
    `batch: ${TASKS} × \`${COMMAND.join(" ")}\` in ${IMAGE}, engine ${engineVersion} at ${DOCKER_HOST}`,
  );
  console.log(
    `p2prc: runBatch over ${NODES} in-process nodes (maxPerNode ${MAX_PER_NODE} → ${NODES * MAX_PER_NODE} slots, warm pool); ` +
      `docker run: seq ${TASKS} | xargs -P${PARALLEL} docker run --rm; docker exec: xargs -P${PARALLEL} docker exec into ${PARALLEL} warm containers`,
  );
  const nodeNames = Array.from({ length: NODES }, (_, i) => `b${i}`);
  const header = [
    "run",
    "docker run s",
    "docker exec s",
    "p2prc s",
    "+outputs s",
    "outputs/run",
    "p2prc/exec tput",
    "task med ms",
    "1st done s",
    "steady s",
    "tail s",
    "steady/exec tput",
    "cpu ms/task",
    "agent/exec",
    "+out agent/exec",
    ...nodeNames,
  ];
  const rows = rounds.map((p, i) => [
    String(i + 1),
    p.run.toFixed(2),
    p.exec.toFixed(2),
    p.p2prc.s.toFixed(2),
    p.outputs.s.toFixed(2),
    (p.outputs.s / p.run).toFixed(3),
    (p.exec / p.p2prc.s).toFixed(3),
    p.p2prc.medianTaskMs.toFixed(0),
    p.p2prc.firstS.toFixed(2),
    p.p2prc.spanS.toFixed(2),
    p.p2prc.tailS.toFixed(2),
    steadyRatio(p).toFixed(3),
    p.p2prc.cpuMsPerTask.toFixed(1),
    `${p.p2prc.via.agent}/${p.p2prc.via.exec}`,
    `${p.outputs.via.agent}/${p.outputs.via.exec}`,
    ...nodeNames.map((n) => String(p.p2prc.perNode[n] ?? 0)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const fmt = (r: string[]) => r.map((cell, i) => cell.padStart(widths[i] as number)).join("  ");
  console.log(fmt(header));
  for (const r of rows) console.log(fmt(r));
  console.log(`order of each run: ${rounds.map((r, i) => `${i + 1}: ${r.order.join(" → ")}`).join("; ")}`);
  const sum = (f: (r: Round) => number) => rounds.reduce((s, r) => s + f(r), 0);
  if (rounds.length === 0) console.log("(no side-by-side run: BENCH_ROUNDS=0)");
  else {
    const runRatio = sum((r) => r.outputs.s) / sum((r) => r.run);
    const execRatio = sum((r) => r.exec) / sum((r) => r.p2prc.s);
    const plainRatio = sum((r) => r.p2prc.s) / sum((r) => r.run);
    console.log(
      `p2prc+outputs / docker run over ${rounds.length} run(s): ${runRatio.toFixed(3)}  (goal ≤ ${GOAL_RUN}: ${runRatio <= GOAL_RUN ? "yes" : "NO"}); p2prc / docker run: ${plainRatio.toFixed(3)}`,
    );
    console.log(
      `p2prc throughput / docker exec throughput: ${execRatio.toFixed(3)}  (goal ≥ ${GOAL_EXEC}: ${execRatio >= GOAL_EXEC ? "yes" : "NO"})`,
    );
  }
  console.log(
    "task med ms: runBatch's per-task duration (slot taken → result written); p2prc s = 1st done s + steady s + " +
      "tail s: 1st done: call → first task done (pool start: its first container made, the others made while " +
      "tasks run); steady: first task done → last; tail: last task done → runBatch returned (pool end: the " +
      "nodes remove it after answering); steady/exec tput: p2prc's tasks per second in the steady state over " +
      "docker exec's; cpu ms/task: this process (client + 3 nodes) per task; agent/exec: tasks the nodes ran " +
      "through a task agent (no engine call) / as a plain exec (one engine exec each)",
  );
  for (const [i, p] of rounds.entries()) {
    const o = p.outputs;
    console.log(
      `run ${i + 1} split, p2prc: pool start ${p.p2prc.firstS.toFixed(2)} s / tasks ${p.p2prc.spanS.toFixed(2)} s / pool end ${p.p2prc.tailS.toFixed(2)} s ` +
        `(the nodes' removals done ${p.p2prc.removedS.toFixed(2)} s after, untimed); ` +
        `p2prc+outputs: ${o.firstS.toFixed(2)} / ${o.spanS.toFixed(2)} / ${o.tailS.toFixed(2)} s (steady ${((TASKS - 1) / Math.max(o.spanS, 1e-9)).toFixed(2)} tasks/s)`,
    );
  }

  console.log(
    `one task's steps on b0, one at a time (median of ${STEP_RUNS} after a warm-up; the pool container's create, once per slot: ${createMs.toFixed(0)} ms):`,
  );
  const parts: [string, number][] = [
    ...STEPS.map((s): [string, number] => [s, median(steps[s])]),
    ["  a plain exec of it, the engine alone (dockerode exec create/start/inspect)", median(engine)],
  ];
  const w = Math.max(...parts.map(([label]) => label.length), "sum of the steps".length);
  for (const [label, ms] of parts) console.log(`  ${label.padEnd(w)}  ${ms.toFixed(1).padStart(7)} ms`);
  const stepSum = STEPS.reduce((s, k) => s + median(steps[k]), 0);
  console.log(`  ${"sum of the steps".padEnd(w)}  ${stepSum.toFixed(1).padStart(7)} ms`);
  console.log(
    `the task call against the path before (tar upload + exec), interleaved: ${median(steps[STEPS[0]]).toFixed(1)} vs ${median(before).toFixed(1)} ms; ` +
      `this process's CPU (client + node) ${median(cpuTask).toFixed(1)} vs ${median(cpuBefore).toFixed(1)} ms`,
  );

  const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
  console.log(
    `shared input: ${SHARED_TASKS} tasks × one ${mib(SHARED_BYTES)} input over ${NODES} nodes in ${shared.s.toFixed(2)} s: ` +
      `input bytes sent with the nodes' cache ${mib(shared.inputs.sent)} (${Object.keys(shared.perNode).length} node(s) ran tasks), ` +
      `without it (every task carrying its inputs) ${mib(shared.inputs.perTask)}; saved ${mib(shared.inputs.saved)}`,
  );
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
