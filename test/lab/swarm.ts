// The swarm lab (Docs/Lab.md): machines in network namespaces this process creates and removes itself,
// each with its own Docker engine, joined into a real Docker Swarm (DOCKER-ENGINE.md, "a real multi-node
// Docker Swarm").
//
//   pub (bridge br0, 10.252.0.0/24, in its own namespace: the root namespace's FORWARD rules are untouched)
//    ├── m   10.252.0.2   the manager (it runs tasks too)
//    ├── w1  10.252.0.3   a worker
//    ├── …   10.252.0.N+2
//    └── c   10.252.0.254 a client outside the swarm (no engine): `run` reaches published ports from it
//
// Every engine runs with `--no-new-privileges` (what a swarm operator sets: a service cannot ask for it on
// Engine API 1.41) and has the busybox test image loaded (no registry). Each swarm node carries the label
// `p2prc.engine=unix://…/docker.sock`, the address a p2prc node in front of the swarm reaches its engine
// by. Names start with `p2sw<pid>x<n>-`: a killed run's leftovers are removed by the next lab.
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { runCommand } from "../support.ts";
// the NAT lab's engine and clean-up helpers
import * as nat from "./nat.ts";

const PREFIX = "p2sw";
const STATE_ROOT = "/tmp/p2prc-swarmlab";
const NET = "10.252.0";

export interface SwarmLab extends AsyncDisposable {
  id: string;
  /** The machines, manager first: `m`, `w1`, `w2`… */
  machines: string[];
  /** `unix://…/docker.sock` of a machine's engine. */
  dockerHost(machine: string): string;
  /** The manager's engine (a p2prc node's dockerHost with engine: swarm). */
  managerHost: string;
  /** A machine's swarm node id. */
  nodeId(machine: string): string;
  /** A machine's address on the lab's network (where the routing mesh publishes ports). */
  address(machine: string): string;
  /**
   * `argv` made to run in a machine's namespace, or with `"c"` the client's (outside the swarm, on the
   * same network): nsenter, as the engines are started.
   */
  command(where: string, argv: string[]): string[];
  /** `argv` run in a machine's or the client's (`"c"`) namespace. */
  run(
    where: string,
    argv: string[],
    o?: { timeoutMs?: number },
  ): Promise<{ code: number; out: string; err: string }>;
  /**
   * Starts a killed machine's engine again (it rejoins the swarm on its own); `noNewPrivileges: false`
   * starts it without `--no-new-privileges`, as a misconfigured machine would run.
   */
  restart(machine: string, o?: { noNewPrivileges?: boolean }): Promise<void>;
  /** `docker <args>` against a machine's engine (throws with its stderr when it fails). */
  docker(machine: string, args: string[]): string;
  /**
   * The machine dies: its engine, containerd, the shims and every container process are killed (SIGKILL),
   * as a power cut would. The swarm finds it down after a few heartbeats (1 s each here).
   */
  kill(machine: string): void;
  /**
   * The machine stops answering but closes nothing, as a hung kernel or a cut cable: its engine, containerd,
   * the shims and every container process are stopped (SIGSTOP). Its connections stay open and silent; the
   * swarm finds it down after a few heartbeats. `kill` ends it (then `restart` brings it back).
   */
  freeze(machine: string): void;
  /** A directory of the lab's (removed by close). */
  dir: string;
  close(): Promise<void>;
}

/** Why the lab cannot run here (it needs root, `ip netns`, nsenter and iptables), or undefined. */
export const swarmLabUnavailable = nat.natLabUnavailable;

function sh(argv: string[], allowFail = false): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  if (r.exitCode !== 0 && !allowFail)
    throw new Error(`swarm lab: ${argv.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

function namespacesOf(id: string): string[] {
  return sh(["ip", "netns", "list"], true)
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(`${id}-`));
}

/** Pids of the containers an engine runs (their processes live in their own namespaces, not the machine's). */
function containerPids(dockerHost: string): number[] {
  const ids = sh(["docker", "-H", dockerHost, "ps", "-q"], true).split("\n").filter(Boolean);
  if (ids.length === 0) return [];
  return sh(["docker", "-H", dockerHost, "inspect", "-f", "{{.State.Pid}}", ...ids], true)
    .split("\n")
    .map(Number)
    .filter((p) => p > 0);
}

function killAll(pids: number[], signal: NodeJS.Signals = "SIGKILL"): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone meanwhile
    }
  }
}

function removeLab(id: string): void {
  const dir = join(STATE_ROOT, id);
  if (existsSync(dir)) {
    // leave the swarm first, so no engine waits on a manager being stopped
    for (const m of readdirSync(dir))
      if (existsSync(join(dir, m, "docker.sock")))
        sh(
          ["timeout", "10", "docker", "-H", `unix://${join(dir, m, "docker.sock")}`, "swarm", "leave", "-f"],
          true,
        );
    for (const m of readdirSync(dir)) nat.stopEngine(join(dir, m));
  }
  nat.removeNamespaces(namespacesOf(id));
  nat.removeDir(dir);
}

/** Labs earlier runs left behind (their owner process is gone). */
function removeStale(): void {
  for (const id of nat.staleLabIds(PREFIX, STATE_ROOT)) removeLab(id);
}

let count = 0;

/**
 * A swarm of a manager and `workers` workers (default 1), each machine its own namespace and engine, with
 * `images` copied in from the test engine (DOCKER_HOST). `close()` (or `await using`) removes it all,
 * whatever state it is in; so does this process's exit.
 */
export async function startSwarmLab(o: { workers?: number; images?: string[] } = {}): Promise<SwarmLab> {
  const reason = swarmLabUnavailable();
  if (reason) throw new Error(reason);
  removeStale();
  const id = `${PREFIX}${process.pid}x${count++}`;
  const dir = join(STATE_ROOT, id);
  const machines = ["m", ...Array.from({ length: o.workers ?? 1 }, (_, i) => `w${i + 1}`)];
  const ns = (host: string) => `${id}-${host}`;
  const sock = (m: string) => `unix://${join(dir, m, "docker.sock")}`;
  const command = (where: string, argv: string[]) => [
    "nsenter",
    `--net=/var/run/netns/${ns(where)}`,
    ...argv,
  ];
  const addr = (m: string) => (m === "c" ? `${NET}.254` : `${NET}.${machines.indexOf(m) + 2}`);
  const startMachineEngine = (m: string, noNewPrivileges = true) =>
    nat.startEngine(
      ["nsenter", `--net=/var/run/netns/${ns(m)}`],
      join(dir, m),
      noNewPrivileges ? ["--no-new-privileges"] : [],
    );
  const docker = (m: string, args: string[]) => sh(["docker", "-H", sock(m), ...args]);
  const nodeIds = new Map<string, string>();
  /** Every process in a machine's namespace (its engine, containerd, the shims; not its containers). */
  const namespacePids = (m: string) =>
    sh(["ip", "netns", "pids", ns(m)], true)
      .split("\n")
      .filter(Boolean)
      .map(Number);
  /** Machines frozen (`freeze`), with their containers' pids. */
  const frozen = new Map<string, number[]>();
  const kill = (m: string) => {
    // a frozen engine would not answer `docker ps`: its containers' pids were read before it froze
    const pids = frozen.get(m) ?? containerPids(sock(m));
    frozen.delete(m);
    // the engine first, so an exec it serves breaks rather than reporting the container's death
    const enginePid = Number(sh(["cat", join(dir, m, "pid")], true).trim());
    if (enginePid > 0) killAll([enginePid]);
    killAll(pids);
    const machinePids = namespacePids(m);
    killAll(machinePids);
    // dead when this returns: a restart at once would find the old engine's pid file and socket held
    const all = [enginePid, ...pids, ...machinePids].filter((p) => p > 0);
    const deadline = Date.now() + 10_000;
    while (all.some(nat.pidAlive) && Date.now() < deadline) Bun.sleepSync(50);
  };
  // a frozen machine is killed first: its engine would answer none of the clean-up's calls
  const close = nat.removedAtExit(() => {
    for (const m of [...frozen.keys()]) kill(m);
    removeLab(id);
  });
  try {
    sh(["ip", "netns", "add", ns("pub")]);
    sh(["ip", "-n", ns("pub"), "link", "add", "br0", "type", "bridge"]);
    sh(["ip", "-n", ns("pub"), "link", "set", "br0", "up"]);
    for (const m of [...machines, "c"]) {
      if (m !== "c") mkdirSync(join(dir, m), { recursive: true });
      sh(["ip", "netns", "add", ns(m)]);
      sh(["ip", "-n", ns(m), "link", "set", "lo", "up"]);
      sh([
        "ip",
        "-n",
        ns("pub"),
        "link",
        "add",
        `to-${m}`,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns(m),
      ]);
      sh(["ip", "-n", ns("pub"), "link", "set", `to-${m}`, "master", "br0", "up"]);
      sh(["ip", "-n", ns(m), "addr", "add", `${addr(m)}/24`, "dev", "eth0"]);
      sh(["ip", "-n", ns(m), "link", "set", "eth0", "up"]);
    }
    await Promise.all(
      machines.map(async (m) => {
        await startMachineEngine(m);
        nat.loadImages(o.images ?? ["p2prc-test/busybox"], sock(m));
      }),
    );
    // a 1 s heartbeat: a dead machine is found down in seconds, not the default's 15 or so
    docker("m", ["swarm", "init", "--advertise-addr", addr("m"), "--dispatcher-heartbeat", "1s"]);
    const token = docker("m", ["swarm", "join-token", "-q", "worker"]).trim();
    for (const m of machines.slice(1))
      docker(m, ["swarm", "join", "--token", token, "--advertise-addr", addr(m), `${addr("m")}:2377`]);
    for (const m of machines) {
      const nodeId = docker(m, ["info", "-f", "{{.Swarm.NodeID}}"]).trim();
      nodeIds.set(m, nodeId);
      docker("m", ["node", "update", "--label-add", `p2prc.engine=${sock(m)}`, nodeId]);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return {
    id,
    dir,
    machines,
    dockerHost: sock,
    managerHost: sock("m"),
    nodeId: (m) => nodeIds.get(m) ?? "",
    address: addr,
    command,
    async run(where, argv, o = {}) {
      const procs: Subprocess[] = [];
      const timer = setTimeout(() => procs[0]?.kill(9), o.timeoutMs ?? 15_000);
      const env = process.env as Record<string, string>;
      const { code, out, err } = await runCommand(command(where, argv), { cwd: dir, env }, procs);
      clearTimeout(timer);
      return { code, out, err };
    },
    async restart(m, o = {}) {
      await startMachineEngine(m, o.noNewPrivileges ?? true);
    },
    docker,
    kill,
    freeze(m) {
      const pids = containerPids(sock(m));
      frozen.set(m, pids);
      const machinePids = namespacePids(m);
      killAll([...machinePids, ...pids], "SIGSTOP");
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
