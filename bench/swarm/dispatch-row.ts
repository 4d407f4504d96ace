// The swarm row of bench/dispatch.ts (issue 17), on a real two-machine swarm (test/lab/swarm.ts):
//   S1. create → running: POST /v1/containers on an in-process node with engine: swarm (answers 201 once the
//       service's task runs) vs `docker service create -d` on the same manager, polled (listTasks, every
//       50 ms) until its task runs; same image, command and limits; interleaved; every service removed.
//       Goal: median S1 p2prc ≤ 1.1 × median S1 docker.
//   S2. batch throughput: 96 tasks that wait (`sleep 2`: the machines share this box's cores, so tasks that
//       compute could not show it) with 4 task slots per machine (maxPerNode = 4 × the machines the node's
//       /v1/specs reports), on the swarm with its worker drained (1 machine) and then active (2 machines).
//       Throughput is steady state: tasks per second between the slots-th task done and the slots-th from
//       the end (the warm pool's start, staggered as its containers come up, and the last round's tail are
//       apart). Goal: 2-machine / 1-machine ≥ 1.8.
// Needs root and network namespaces (the lab); says why and returns when it cannot run.
// Alone: node_modules/.bin/bun bench/swarm/dispatch-row.ts
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import {
  addServer,
  type NodeOptions,
  type RunningNode,
  runBatch,
  start,
  updateIPTable,
  viewIPTable,
} from "../../abstractions/index.ts";
import { loadOrCreateIdentity } from "../../core/index.ts";
import { freePorts } from "../../server/index.ts";
import { startSwarmLab, swarmLabUnavailable } from "../../test/lab/swarm.ts";
import { signedFetch } from "../../test/support.ts";
import { median, percentile } from "../lib.ts";

const IMAGE = "p2prc-test/busybox";
const RUNS = Number(process.env.BENCH_SWARM_RUNS) || 8;
const WARMUPS = 2;
const TASKS = Number(process.env.BENCH_SWARM_TASKS) || 96;
const SLOTS_PER_MACHINE = 4;
const DISPATCH_GOAL = 1.1;
const SCALE_GOAL = 1.8;

async function waitRunning(d: Docker, serviceId: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const tasks = (await d.listTasks({ filters: { service: [serviceId] } })) as {
      Status: { State: string };
    }[];
    if (tasks.some((t) => t.Status.State === "running")) return;
    if (Date.now() > deadline) throw new Error(`service ${serviceId} did not run within 60 s`);
    await Bun.sleep(50);
  }
}

/** Runs the swarm row and prints it; `log` prints a line (dispatch.ts's console.log). */
export async function swarmRow(log: (line: string) => void = console.log): Promise<void> {
  const why = swarmLabUnavailable();
  if (why) {
    log(`swarm row: skipped (${why})`);
    return;
  }
  const work = mkdtempSync(join(tmpdir(), "p2prc-dispatch-swarm-"));
  const lab = await startSwarmLab({ workers: 1 });
  const d = new Docker({ socketPath: lab.managerHost.replace(/^unix:\/\//, "") });
  let node: RunningNode | undefined;
  try {
    const configDir = join(work, "node");
    const [port] = await freePorts(1, "127.0.0.1");
    node = await start({
      configDir,
      env: { DOCKER_HOST: lab.managerHost },
      gpus: async () => [],
      overrides: {
        engine: "swarm",
        serverHost: "127.0.0.1",
        serverPort: port,
        tls: false,
        defaultImage: IMAGE,
        maxContainers: 60,
        memberMaxContainers: 60,
        openNetwork: true,
        logLevel: "warn",
      },
    });
    const key = loadOrCreateIdentity(
      join(configDir, "identity/node.key"),
      join(configDir, "identity/node.pub"),
    );
    const url = node.url;
    const api = (path: string, method = "GET", body?: unknown) =>
      signedFetch(key, `${url}${path}`, {
        method,
        ...(body === undefined
          ? {}
          : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
      });

    // ---- S1: create → running ----------------------------------------------------------------------
    // BENCH_SWARM_ONLY=S1 or S2 runs one part
    const cpus = 0.25;
    const memoryMb = 64;
    const viaP2prc = async () => {
      const t0 = performance.now();
      const res = await api("/v1/containers", "POST", { command: ["sleep", "300"], cpus, memoryMb });
      const { id } = (await res.json()) as { id: string };
      if (res.status !== 201) throw new Error(`POST /v1/containers: ${res.status}`);
      const ms = performance.now() - t0;
      await api(`/v1/containers/${id}`, "DELETE");
      return ms;
    };
    let n = 0;
    // like for like: p2prc puts each owner's containers on the owner's own (overlay) network
    const net = `bench-net-${process.pid}`;
    lab.docker("m", ["network", "create", "-d", "overlay", "--attachable", net]);
    const viaDocker = async (network: boolean) => {
      const name = `bench-svc-${process.pid}-${n++}`;
      const t0 = performance.now();
      const made = Bun.spawnSync([
        "docker",
        "-H",
        lab.managerHost,
        "service",
        "create",
        "-d",
        "-q",
        "--name",
        name,
        "--restart-condition",
        "none",
        "--limit-cpu",
        String(cpus),
        "--limit-memory",
        `${memoryMb}m`,
        "--limit-pids",
        "512",
        "--cap-drop",
        "ALL",
        "--init",
        ...(network ? ["--network", net] : []),
        IMAGE,
        "sleep",
        "300",
      ]);
      if (made.exitCode !== 0) throw new Error(`docker service create: ${made.stderr.toString()}`);
      await waitRunning(d, made.stdout.toString().trim());
      const ms = performance.now() - t0;
      Bun.spawnSync(["docker", "-H", lab.managerHost, "service", "rm", name]);
      return ms;
    };
    const cases = {
      p2prc: viaP2prc,
      docker: () => viaDocker(false),
      dockerNet: () => viaDocker(true),
    } as const;
    const keys = Object.keys(cases) as (keyof typeof cases)[];
    const times: Record<keyof typeof cases, number[]> = { p2prc: [], docker: [], dockerNet: [] };
    const only = process.env.BENCH_SWARM_ONLY;
    for (let i = 0; i < (only === "S2" ? 0 : WARMUPS + RUNS); i++) {
      // rotate who goes first
      for (const k of [...keys.slice(i % keys.length), ...keys.slice(0, i % keys.length)]) {
        const ms = await cases[k]();
        if (i >= WARMUPS) times[k].push(ms);
      }
    }
    if (only !== "S2") {
      const p = median(times.p2prc);
      const dk = median(times.docker);
      const dn = median(times.dockerNet);
      log(
        `swarm row (engine: swarm, 2 machines, Docker ${lab.docker("m", ["version", "-f", "{{.Server.Version}}"]).trim()}):`,
      );
      log(
        `  S1 create → running, ${RUNS} runs each after ${WARMUPS} warm-ups: p2prc median ${p.toFixed(0)} ms (p90 ${percentile(times.p2prc, 90).toFixed(0)}), ` +
          `docker service create median ${dk.toFixed(0)} ms (p90 ${percentile(times.docker, 90).toFixed(0)})`,
      );
      log(
        `  S1 docker service create --network (an overlay network made once, as p2prc's per-owner one) median ${dn.toFixed(0)} ms (p90 ${percentile(times.dockerNet, 90).toFixed(0)})`,
      );
      const verdict = (r: number) => (r <= DISPATCH_GOAL ? "yes" : "NO");
      log(
        `  S1 p2prc / docker service create ${(p / dk).toFixed(2)}× (goal ≤ ${DISPATCH_GOAL}×: ${verdict(p / dk)}); ` +
          `like for like, both on an overlay network: ${(p / dn).toFixed(2)}× (${verdict(p / dn)})`,
      );
    }

    // ---- S2: batch throughput, 1 machine vs 2 --------------------------------------------------------
    const client: NodeOptions = {
      configDir: join(work, "client"),
      env: {},
      overrides: { logLevel: "warn", tls: false },
    };
    await addServer(client, new URL(url).host);
    const deadline = Date.now() + 20_000;
    while (!(await viewIPTable(client)).some((v) => v.id === node?.nodeId && v.port)) {
      if (Date.now() > deadline) throw new Error("the client does not know the node");
      await updateIPTable(client);
      await Bun.sleep(200);
    }
    const jobDir = join(work, "jobs");
    mkdirSync(jobDir, { recursive: true });
    const worker = lab.nodeId("w1");
    const throughput = async (machines: 1 | 2) => {
      lab.docker("m", ["node", "update", "--availability", machines === 1 ? "drain" : "active", worker]);
      // the node's own report of the machines it has (its cluster view is cached a moment)
      for (;;) {
        const specs = (await (await api("/v1/specs")).json()) as { cluster?: { machines: number } };
        if (specs.cluster?.machines === machines) break;
        await Bun.sleep(200);
      }
      const job = join(jobDir, `job-${machines}.json`);
      writeFileSync(
        job,
        JSON.stringify({
          image: IMAGE,
          command: ["sh", "-c", "sleep 2; echo $P2PRC_SWARM_NODE"],
          tasks: TASKS,
          cpus: 0.25,
          memoryMb: 32,
          maxPerNode: SLOTS_PER_MACHINE * machines,
        }),
      );
      const doneAt: number[] = [];
      const t0 = performance.now();
      const result = await runBatch(client, job, join(work, `out-${machines}`), {
        onProgress: (e) => {
          if (e.event?.state === "done") doneAt.push(performance.now());
        },
      });
      const total = performance.now() - t0;
      const done = result.results.filter((r) => r.state === "done").length;
      if (done !== TASKS) {
        const why = result.results.find((r) => r.state !== "done")?.error;
        throw new Error(`batch on ${machines} machine(s): ${done} of ${TASKS} done (${why})`);
      }
      // the window between the first full round and the last one
      const slots = SLOTS_PER_MACHINE * machines;
      const from = doneAt[slots - 1] ?? 0;
      const to = doneAt[doneAt.length - slots] ?? 0;
      const steady = (doneAt.length - 2 * slots + 1) / ((to - from) / 1000);
      // where the tasks ran (each prints its machine): the swarm's spread of the warm containers
      const perMachine = new Map<string, number>();
      for (let i = 0; i < TASKS; i++) {
        const at = readFileSync(join(work, `out-${machines}`, String(i), "stdout"), "utf8").trim();
        perMachine.set(at, (perMachine.get(at) ?? 0) + 1);
      }
      const spread = [...perMachine.values()].sort((a, b) => b - a).join("/");
      return { steady, totalS: total / 1000, spread };
    };
    if (only === "S1") return;
    const one = await throughput(1);
    const two = await throughput(2);
    const ratio = two.steady / one.steady;
    log(
      `  S2 batch of ${TASKS} × sleep 2, ${SLOTS_PER_MACHINE} slots a machine, steady state: 1 machine ${one.steady.toFixed(2)} tasks/s (whole batch ${one.totalS.toFixed(1)} s), ` +
        `2 machines ${two.steady.toFixed(2)} tasks/s (whole batch ${two.totalS.toFixed(1)} s, tasks per machine ${two.spread})`,
    );
    log(
      `  S2 2 machines / 1 machine ${ratio.toFixed(2)}× (goal ≥ ${SCALE_GOAL}×: ${ratio >= SCALE_GOAL ? "yes" : "NO"})`,
    );
  } finally {
    await node?.stop().catch(() => undefined);
    await lab.close();
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const load = () =>
    (
      Bun.spawnSync(["uptime"])
        .stdout.toString()
        .match(/load average: (.*)/)?.[1] ?? "?"
    ).trim();
  console.log(`load average before: ${load()}`);
  await swarmRow();
  console.log(`load average after: ${load()}`);
}
