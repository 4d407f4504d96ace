// Futures' overhead (Docs/Futures.md), side by side in one run on 3 server nodes in this process (loopback,
// one port each), from a client home whose IP table knows them:
//   futures   200 trivial futures (`(i) => i * 2`) over the 3 nodes with cluster.map: a fresh cluster, so
//             its warm containers are made on the way (as a batch makes its pool); every value checked
//   batch     the same 200 calls as a `p2prc batch` of shell tasks in p2prc-test/busybox
//             (`echo $((P2PRC_TASK_INDEX * 2))`), maxPerNode and cpus alike; every stdout checked
// The two alternate (futures first, then batch; twice when the first pair leaves time). Then the
// per-future overhead on one warm node: submit → value of `() => 1`, one at a time, p50 and p99, printed
// beside Dask's (~1 ms) and Ray's (< 1 ms) in-cluster figures; and, for scale, the engine's own exec
// (its API, as a node drives it) of `true` in busybox and of `p2prc -e 1` in the runtime image.
// A future runs in its warm container's long-lived runtime (no exec each); the load average is printed
// with each figure, as the machine may be shared. Goals: futures / batch ≤ 1.2; per-future p50 ≤ 50 ms.
// Run: node_modules/.bin/bun bench/futures.ts (or `make bench`). Reads DOCKER_HOST; BENCH_TASKS for a
// quick check. Exits 77 when the docker CLI, the engine or the image is missing.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import {
  addServer,
  cluster,
  type NodeOptions,
  type RunningNode,
  runBatch,
  start,
  updateIPTable,
  viewIPTable,
} from "../abstractions/index.ts";
import { RUNTIME_BIN, RUNTIME_KEEP_ALIVE } from "../core/index.ts";
import { freePorts } from "../server/index.ts";
import { cleanEnv, interruptible, median, percentile, requireEngine } from "./lib.ts";

const IMAGE = "p2prc-test/busybox";
const TASKS = Number(process.env.BENCH_TASKS) || 200;
const NODES = 3;
const PER_NODE = 4;
const CPUS = 1;
const MEMORY_MB = 256;
const GOAL_RATIO = 1.2;
const GOAL_P50_MS = 50;
const SINGLE_RUNS = Number(process.env.BENCH_SINGLE) || 60;
const BUDGET_S = 300;
const DOCKER_HOST = process.env.DOCKER_HOST || "unix:///var/run/docker.sock";
const env = cleanEnv({ DOCKER_HOST });
const began = performance.now();
const { engineVersion, docker } = await requireEngine("futures", DOCKER_HOST, IMAGE, env);
const interruption = interruptible();

const work = mkdtempSync(join(tmpdir(), "p2prc-futures-bench-"));
let nodes: RunningNode[] = [];
const nodeIds: string[] = [];

async function cleanup(): Promise<void> {
  await Promise.all(nodes.map((n) => n.stop().catch(() => undefined)));
  nodes = [];
  // every container the nodes made (whoever asked for it), in one listing
  const ours = new Set(nodeIds);
  const all = await docker.listContainers({ all: true, filters: { label: ["p2prc.node"] } }).catch(() => []);
  for (const x of all.filter((x) => ours.has(x.Labels["p2prc.node"] ?? "")))
    await docker
      .getContainer(x.Id)
      .remove({ force: true })
      .catch(() => {});
  // and the owners' networks they made
  const nets = await docker.listNetworks({ filters: { label: ["p2prc.node"] } }).catch(() => []);
  for (const n of nets.filter((n) => ours.has(n.Labels?.["p2prc.node"] ?? "")))
    await docker
      .getNetwork(n.Id)
      .remove()
      .catch(() => {});
  rmSync(work, { recursive: true, force: true });
}

async function startNodes(): Promise<void> {
  const ports = await freePorts(NODES, "127.0.0.1");
  for (let i = 0; i < NODES; i++) {
    const node = await start({
      configDir: join(work, `node${i}`),
      env: {},
      gpus: async () => [],
      reconcileIntervalMs: 60_000,
      overrides: {
        serverHost: "127.0.0.1",
        serverPort: ports[i] as number,
        machineName: `f${i}`,
        bootstrap: i ? [`127.0.0.1:${ports[0]}`] : [],
        gossipIntervalMs: 500,
        defaultImage: IMAGE,
        maxContainers: 20,
        logLevel: "warn",
        dockerHost: DOCKER_HOST,
        openNetwork: true,
      },
    });
    nodes.push(node);
    nodeIds.push(node.nodeId);
  }
}

async function clientHome(): Promise<NodeOptions> {
  const options: NodeOptions = { configDir: join(work, "client"), env: {}, overrides: { logLevel: "warn" } };
  for (const n of nodes) await addServer(options, new URL(n.url).host);
  const t0 = performance.now();
  for (;;) {
    interruption.check();
    await updateIPTable(options);
    const views = await viewIPTable(options);
    if (nodeIds.every((id) => views.some((v) => v.id === id && v.address && v.port))) return options;
    if (performance.now() - t0 > 20_000) throw new Error("the client's table does not list the 3 nodes");
    await Bun.sleep(250);
  }
}

const expected = Array.from({ length: TASKS }, (_, i) => i * 2);

/** 200 futures on a fresh cluster (its warm containers made on the way, removed at the end). */
async function viaFutures(home: NodeOptions): Promise<number> {
  const t0 = performance.now();
  const c = await cluster({ home, cpus: CPUS, memoryMb: MEMORY_MB, maxPerNode: PER_NODE, replay: false });
  try {
    const out = await c.map(
      expected.map((_, i) => i),
      (i: number) => i * 2,
    );
    if (JSON.stringify(out) !== JSON.stringify(expected)) throw new Error("futures: wrong values");
  } finally {
    await c.close();
  }
  return (performance.now() - t0) / 1000;
}

let batchRun = 0;
/** The same 200 calls as shell tasks of a batch. */
async function viaBatch(home: NodeOptions): Promise<number> {
  const job = {
    image: IMAGE,
    command: ["sh", "-c", "echo $((P2PRC_TASK_INDEX * 2))"],
    tasks: TASKS,
    cpus: CPUS,
    memoryMb: MEMORY_MB,
    maxPerNode: PER_NODE,
  };
  const jobPath = join(work, `job${++batchRun}.json`);
  writeFileSync(jobPath, JSON.stringify(job));
  const outDir = join(work, `out${batchRun}`);
  const t0 = performance.now();
  const r = await runBatch(home, jobPath, outDir);
  const s = (performance.now() - t0) / 1000;
  for (const t of r.results) {
    const got = readFileSync(join(outDir, String(t.index), "stdout"), "utf8");
    if (t.state !== "done" || got !== `${t.index * 2}\n`) throw new Error(`batch: task ${t.index}: ${got}`);
  }
  return s;
}

/** submit → value of one trivial future at a time on one warm node. */
async function single(home: NodeOptions): Promise<number[]> {
  const c = await cluster({
    home,
    cpus: CPUS,
    memoryMb: MEMORY_MB,
    nodes: [nodeIds[0] as string],
    replay: false,
  });
  try {
    for (let i = 0; i < 3; i++) await c.future(() => 1).value(); // the warm container and its first run
    const ms: number[] = [];
    for (let i = 0; i < SINGLE_RUNS; i++) {
      interruption.check();
      const t0 = performance.now();
      await c.future(() => 1).value();
      ms.push(performance.now() - t0);
    }
    return ms;
  } finally {
    await c.close();
  }
}

/**
 * The engine's own floor, through its API as the node drives it: `exec` of `cmd` in a warm container of
 * `image` (1 cpu, 256 MB), one at a time, each waited for to its end.
 */
async function engineExec(image: string, keepAlive: string[], cmd: string[]): Promise<number[]> {
  const ctr = await docker.createContainer({
    name: `p2prc-bench-futures-exec-${Math.random().toString(16).slice(2, 8)}`,
    Image: image,
    Cmd: keepAlive,
    Labels: { "p2prc.bench": "futures" },
    HostConfig: { NanoCpus: CPUS * 1e9, Memory: MEMORY_MB * 1024 * 1024 },
  });
  try {
    await ctr.start();
    const ms: number[] = [];
    for (let i = 0; i < 23; i++) {
      const t0 = performance.now();
      const ex = await ctr.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
      const stream = await ex.start({});
      stream.resume();
      await new Promise((r) => stream.on("end", r));
      if (i >= 3) ms.push(performance.now() - t0); // after a warm-up
    }
    return ms;
  } finally {
    await ctr.remove({ force: true }).catch(() => {});
  }
}

const fmt = (x: number) => x.toFixed(2);
/** The machine's load average (1, 5, 15 min): the figures mean little without it on a shared machine. */
const load = () =>
  `load ${loadavg()
    .map((x) => x.toFixed(1))
    .join(" ")}`;
try {
  await startNodes();
  const home = await clientHome();
  // the runtime image is built once per node, on its first future: not part of the figures
  const t0 = performance.now();
  const warm = await cluster({ home, cpus: CPUS, memoryMb: MEMORY_MB, replay: false });
  await warm.map([0, 1, 2, 3, 4, 5], (x: number) => x);
  await warm.close();
  console.log(
    `futures: engine ${engineVersion}; runtime images ready on the nodes in ${fmt((performance.now() - t0) / 1000)} s`,
  );
  const pairs: { futures: number; batch: number }[] = [];
  for (let round = 0; round < 2; round++) {
    const r0 = performance.now();
    const futures = await viaFutures(home);
    const batch = await viaBatch(home);
    pairs.push({ futures, batch });
    console.log(
      `round ${round + 1}: ${TASKS} futures ${fmt(futures)} s, ${TASKS} batch tasks ${fmt(batch)} s (${fmt(futures / batch)}×; ${load()})`,
    );
    const used = (performance.now() - began) / 1000;
    if (used + (performance.now() - r0) / 1000 > BUDGET_S) break;
  }
  const f = median(pairs.map((p) => p.futures));
  const b = median(pairs.map((p) => p.batch));
  const one = await single(home);
  const [runtime] = (await docker.listImages({ filters: { reference: ["p2prc-runtime"] } })).flatMap(
    (i) => i.RepoTags ?? [],
  );
  const execTrue = await engineExec(IMAGE, ["sleep", "600"], ["true"]);
  const execBun = runtime ? await engineExec(runtime, RUNTIME_KEEP_ALIVE, [RUNTIME_BIN, "-e", "1"]) : [];
  console.log("");
  console.log(`${TASKS} calls over ${NODES} nodes (maxPerNode ${PER_NODE}, ${CPUS} cpu, ${MEMORY_MB} MB):`);
  console.log(`  futures  ${fmt(f)} s  (${fmt(TASKS / f)}/s)`);
  console.log(`  batch    ${fmt(b)} s  (${fmt(TASKS / b)}/s)`);
  console.log(
    `  futures / batch = ${fmt(f / b)}  (goal ≤ ${GOAL_RATIO}: ${f / b <= GOAL_RATIO ? "met" : "missed"})`,
  );
  const p50 = percentile(one, 50);
  console.log(`per-future overhead on a warm node (submit → value, ${one.length} runs; ${load()}):`);
  console.log(
    `  p2prc    p50 ${fmt(p50)} ms, p99 ${fmt(percentile(one, 99))} ms  (goal p50 ≤ ${GOAL_P50_MS}: ${p50 <= GOAL_P50_MS ? "met" : "missed"})`,
  );
  console.log(
    `  the engine's exec of true in warm busybox: p50 ${fmt(median(execTrue))} ms (one exec's floor)`,
  );
  if (execBun.length)
    console.log(
      `  the engine's exec of p2prc -e 1 in a warm runtime container: p50 ${fmt(median(execBun))} ms`,
    );
  console.log("  Dask ~1 ms, Ray < 1 ms per task (in-cluster, published figures)");
} finally {
  await cleanup();
}
