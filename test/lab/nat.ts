// The NAT lab (Docs/Lab.md): hosts in network namespaces this process creates and removes itself.
//
//   pub (bridge br0, 10.250.0.0/24)
//    ├── relay   10.250.0.2        public hosts: a route to 10.250.1.0/24 via the router, so a direct
//    ├── relay2  10.250.0.4        dial into home reaches the router and is dropped there
//    ├── client  10.250.0.3
//    └── router  10.250.0.1 (wan) ── 10.250.1.1 (lan) ── home 10.250.1.2 (default via the router)
//
// The router MASQUERADEs home's traffic out of wan and drops every new connection from wan to lan (only
// replies pass): home can dial out, nobody can dial in. Home runs its own Docker engine (started in its
// namespace with `nsenter --net`, images copied from the test engine by `docker save | docker load`), so
// the ports its containers publish exist in home only. Every name starts with `p2nl<pid>x<n>-`: a run that
// was killed leaves namespaces behind whose owner pid is gone, and the next lab removes them first.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { p2prcCommand, runCommand, type SpawnedNode, spawnNode } from "../support.ts";

/** The lab's hosts (each a network namespace). */
export type LabHost = "relay" | "relay2" | "client" | "router" | "home";

/** Addresses of the hosts (inside the lab's namespaces only). */
export const LAB_ADDR = {
  relay: "10.250.0.2",
  relay2: "10.250.0.4",
  client: "10.250.0.3",
  router: "10.250.0.1",
  routerLan: "10.250.1.1",
  home: "10.250.1.2",
} as const;

const PREFIX = "p2nl";
const STATE_ROOT = "/tmp/p2prc-natlab";
/** Images saved from the test engine, by image id (kept across runs). */
const IMAGE_CACHE = "/tmp/p2prc-natlab-images";
const PUBLIC_HOSTS = ["relay", "relay2", "client", "router"] as const;

export interface NatLabOptions {
  /** Images copied from the test engine (DOCKER_HOST) into home's engine. Default: the busybox test image. */
  images?: string[];
  /** Start home's engine (default true); a test of the network alone can do without it. */
  engine?: boolean;
}

/** What one command in a lab host printed. */
export interface LabResult {
  code: number;
  out: string;
  err: string;
}

/** A running lab. `close()` (or `await using`) removes everything it made, whatever state it is in. */
export interface NatLab extends AsyncDisposable {
  /** `p2nl<pid>x<n>`: the prefix of its namespaces and its state directory's name. */
  id: string;
  /** The network namespace of a host. */
  ns(host: LabHost): string;
  /** `argv`, run in `host`'s network namespace (nsenter, not `ip netns exec`: see DOCKER-ENGINE.md). */
  command(host: LabHost, argv: string[]): string[];
  /** Runs `argv` in `host` to its end (killed after `timeoutMs`, default 15 s; `env` replaces this one's). */
  run(
    host: LabHost,
    argv: string[],
    o?: { timeoutMs?: number; env?: Record<string, string> },
  ): Promise<LabResult>;
  /** An HTTP request made from `host` (curl; `-k`: readiness checks do not pin). Status 0: no answer. */
  fetch(
    host: LabHost,
    url: string,
    init?: { method?: string; headers?: Record<string, string>; body?: string; timeoutS?: number },
  ): Promise<{ status: number; body: string }>;
  /** Home's engine (`unix://…`), for DOCKER_HOST. */
  homeDockerHost: string;
  /** The lab's directory (node homes can go below it; removed by close). */
  dir: string;
  close(): Promise<void>;
}

/** Why the lab cannot run here (undefined: it can): it needs root, `ip netns`, nsenter and iptables. */
export function natLabUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "the NAT lab needs root (network namespaces)";
  for (const [argv, what] of [
    [["ip", "netns", "list"], "`ip netns`"],
    [["nsenter", "--version"], "nsenter"],
    [["iptables", "--version"], "iptables"],
  ] as const) {
    try {
      if (Bun.spawnSync([...argv], { stdout: "ignore", stderr: "ignore" }).exitCode !== 0)
        return `the NAT lab needs ${what}, which does not work here`;
    } catch {
      return `the NAT lab needs ${what}, which is not installed`;
    }
  }
  return undefined;
}

function sh(argv: string[], allowFail = false): LabResult {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const res = { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
  if (res.code !== 0 && !allowFail) throw new Error(`nat lab: ${argv.join(" ")}: ${res.err.trim()}`);
  return res;
}

/** A process that has not exited (a zombie, such as the engine this process started and has not reaped yet, has). */
export function pidAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** Every namespace of the lab `id` (from `ip netns list`; those of a half-made lab too). */
function namespacesOf(id: string): string[] {
  return sh(["ip", "netns", "list"], true)
    .out.split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(`${id}-`));
}

/**
 * Removes the lab `id`: home's containers (through its engine, while it still runs), the engine, every
 * process left in its namespaces (the nodes a test started there), the namespaces and its directory.
 * Synchronous, so it also runs from an exit handler.
 */
function removeLab(id: string): void {
  const dir = join(STATE_ROOT, id);
  stopEngine(join(dir, "home"));
  removeNamespaces(namespacesOf(id));
  removeDir(dir);
}

/**
 * Stops the engine startEngine started in `dir` (synchronous, for exit handlers): its containers first,
 * while it still runs, then the engine, by the pid in its pid file.
 */
export function stopEngine(engine: string): void {
  const dockerHost = `unix://${engine}/docker.sock`;
  if (existsSync(join(engine, "docker.sock"))) {
    const ids = sh(["docker", "-H", dockerHost, "ps", "-aq"], true).out.split("\n").filter(Boolean);
    if (ids.length) sh(["timeout", "20", "docker", "-H", dockerHost, "rm", "-f", ...ids], true);
  }
  const pidText = existsSync(join(engine, "pid")) ? readFileSync(join(engine, "pid"), "utf8").trim() : "";
  const enginePid = Number(pidText);
  if (enginePid > 0 && pidAlive(enginePid)) {
    process.kill(enginePid, "SIGTERM");
    const deadline = Date.now() + 10_000;
    while (pidAlive(enginePid) && Date.now() < deadline) Bun.sleepSync(50);
    if (pidAlive(enginePid)) process.kill(enginePid, "SIGKILL");
  }
}

/** Kills every process left in these namespaces (all started for a lab), then deletes them. */
export function removeNamespaces(namespaces: string[]): void {
  for (const ns of namespaces) {
    // every process in a lab namespace was started for the lab (nodes, the engine's containerd)
    for (const pid of sh(["ip", "netns", "pids", ns], true).out.split("\n").filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
    sh(["ip", "netns", "del", ns], true);
  }
}

/** Removes a lab's directory, unmounting first what an engine killed mid-way left mounted below it. */
export function removeDir(dir: string): void {
  // mounts an engine killed mid-way left below the directory, deepest first
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) sh(["umount", "-l", m], true);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Ids of the labs named `<prefix><pid>x<n>` (a namespace `<id>-…` or a directory under `stateRoot`) whose
 * owner process is gone: what a killed run left behind.
 */
export function staleLabIds(prefix: string, stateRoot: string): string[] {
  const ids = new Set<string>();
  for (const line of sh(["ip", "netns", "list"], true).out.split("\n")) {
    const m = new RegExp(`^(${prefix}\\d+x\\d+)-`).exec(line);
    if (m) ids.add(m[1] as string);
  }
  if (existsSync(stateRoot))
    for (const name of readdirSync(stateRoot)) if (name.startsWith(prefix)) ids.add(name);
  return [...ids].filter((id) => {
    const owner = Number(new RegExp(`^${prefix}(\\d+)x`).exec(id)?.[1] ?? 0);
    return owner !== process.pid && !pidAlive(owner);
  });
}

/** Removes what earlier runs left (labs whose owner process is gone); returns their ids. */
export function removeStaleLabs(): string[] {
  const stale = staleLabIds(PREFIX, STATE_ROOT);
  for (const id of stale) removeLab(id);
  return stale;
}

let labCount = 0;

/**
 * Runs `remove` when this process exits, unless the function returned (idempotent) ran it first: a lab
 * is removed whether its test closes it or dies.
 */
export function removedAtExit(remove: () => void): () => Promise<void> {
  process.once("exit", remove);
  let closed = false;
  return async () => {
    if (closed) return;
    closed = true;
    process.off("exit", remove);
    remove();
  };
}

/** Builds the network and (by default) home's engine; fails, having removed what it made, on any error. */
export async function startNatLab(options: NatLabOptions = {}): Promise<NatLab> {
  const reason = natLabUnavailable();
  if (reason) throw new Error(reason);
  removeStaleLabs();
  const id = `${PREFIX}${process.pid}x${labCount++}`;
  const dir = join(STATE_ROOT, id);
  mkdirSync(join(dir, "home"), { recursive: true });
  const ns = (host: LabHost | "pub") => `${id}-${host}`;
  const close = removedAtExit(() => removeLab(id));
  try {
    buildNetwork(ns);
    const homeDockerHost = `unix://${join(dir, "home", "docker.sock")}`;
    const command = (host: LabHost, argv: string[]) => [
      "nsenter",
      `--net=/var/run/netns/${ns(host)}`,
      ...argv,
    ];
    if (options.engine !== false) {
      await startEngine(command("home", []), join(dir, "home"));
      loadImages(options.images ?? ["p2prc-test/busybox"], homeDockerHost);
    }
    const run: NatLab["run"] = async (host, argv, o = {}) => {
      const procs: Subprocess[] = [];
      const timer = setTimeout(() => procs[0]?.kill(9), o.timeoutMs ?? 15_000);
      const env = o.env ?? (process.env as Record<string, string>);
      const { code, out, err } = await runCommand(command(host, argv), { cwd: dir, env }, procs);
      clearTimeout(timer);
      return { code, out, err };
    };
    return {
      id,
      dir,
      homeDockerHost,
      ns,
      command,
      run,
      async fetch(host, url, init = {}) {
        const argv = ["curl", "-sk", "-m", String(init.timeoutS ?? 5), "-X", init.method ?? "GET"];
        for (const [k, v] of Object.entries(init.headers ?? {})) argv.push("-H", `${k}: ${v}`);
        if (init.body !== undefined) argv.push("--data-binary", init.body);
        argv.push("-w", "\n%{http_code}", url);
        const r = await run(host, argv, { timeoutMs: ((init.timeoutS ?? 5) + 5) * 1000 });
        const cut = r.out.lastIndexOf("\n");
        return { status: Number(r.out.slice(cut + 1)) || 0, body: r.out.slice(0, Math.max(cut, 0)) };
      },
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

function buildNetwork(ns: (host: LabHost | "pub") => string): void {
  const ip = (where: string, ...args: string[]) => sh(["ip", "-n", where, ...args]);
  const inNs = (host: LabHost, ...argv: string[]) =>
    sh(["nsenter", `--net=/var/run/netns/${ns(host)}`, ...argv]);
  for (const host of ["pub", ...PUBLIC_HOSTS, "home"] as const) {
    sh(["ip", "netns", "add", ns(host)]);
    ip(ns(host), "link", "set", "lo", "up");
  }
  // The public network: a bridge inside the lab's own `pub` namespace (its iptables are empty), so
  // nothing of the root namespace (the test engine's FORWARD rules) is touched.
  ip(ns("pub"), "link", "add", "br0", "type", "bridge");
  ip(ns("pub"), "link", "set", "br0", "up");
  for (const host of PUBLIC_HOSTS) {
    ip(ns("pub"), "link", "add", host, "type", "veth", "peer", "name", "wan", "netns", ns(host));
    ip(ns("pub"), "link", "set", host, "master", "br0", "up");
    ip(ns(host), "addr", "add", `${LAB_ADDR[host]}/24`, "dev", "wan");
    ip(ns(host), "link", "set", "wan", "up");
    if (host !== "router") ip(ns(host), "route", "add", "10.250.1.0/24", "via", LAB_ADDR.router);
  }
  ip(ns("router"), "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", ns("home"));
  ip(ns("router"), "addr", "add", `${LAB_ADDR.routerLan}/24`, "dev", "lan");
  ip(ns("router"), "link", "set", "lan", "up");
  ip(ns("home"), "addr", "add", `${LAB_ADDR.home}/24`, "dev", "eth0");
  ip(ns("home"), "link", "set", "eth0", "up");
  ip(ns("home"), "route", "add", "default", "via", LAB_ADDR.routerLan);
  inNs("router", "sysctl", "-qw", "net.ipv4.ip_forward=1");
  inNs(
    "router",
    "iptables",
    "-t",
    "nat",
    "-A",
    "POSTROUTING",
    "-s",
    "10.250.1.0/24",
    "-o",
    "wan",
    "-j",
    "MASQUERADE",
  );
  inNs(
    "router",
    "iptables",
    "-A",
    "FORWARD",
    "-i",
    "wan",
    "-o",
    "lan",
    "-m",
    "conntrack",
    "--ctstate",
    "ESTABLISHED,RELATED",
    "-j",
    "ACCEPT",
  );
  inNs("router", "iptables", "-A", "FORWARD", "-i", "wan", "-o", "lan", "-j", "DROP");
}

/**
 * dockerd in home's namespace, with its own data, exec root and socket under `dir`; ready in a few s.
 * `extra`: more dockerd flags (the swarm lab's `--no-new-privileges`).
 */
export async function startEngine(nsenter: string[], dir: string, extra: string[] = []): Promise<void> {
  const sock = join(dir, "docker.sock");
  const proc = Bun.spawn(
    [
      ...nsenter,
      "setsid",
      "dockerd",
      "--data-root",
      join(dir, "data"),
      "--exec-root",
      join(dir, "exec"),
      "-H",
      `unix://${sock}`,
      "--pidfile",
      join(dir, "pid"),
      ...extra,
    ],
    { stdout: Bun.file(join(dir, "log")), stderr: Bun.file(join(dir, "log")), stdin: "ignore" },
  );
  proc.unref();
  const deadline = Date.now() + 30_000;
  while (sh(["docker", "-H", `unix://${sock}`, "info", "--format", "{{.ID}}"], true).code !== 0) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      const log = existsSync(join(dir, "log")) ? readFileSync(join(dir, "log"), "utf8").slice(-2000) : "";
      throw new Error(`nat lab: home's engine did not start: ${log}`);
    }
    await Bun.sleep(100);
  }
}

/**
 * Copies images from the test engine (DOCKER_HOST) into home's engine (no registry in the lab). Each is
 * saved once per image id into a cache beside the labs (`docker save` of the sshd image is ~10 s here),
 * then loaded from there.
 */
export function loadImages(images: string[], to: string): void {
  const from = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
  mkdirSync(IMAGE_CACHE, { recursive: true });
  for (const image of images) {
    const id = sh(["docker", "-H", from, "image", "inspect", "-f", "{{.Id}}", image]).out.trim();
    const tar = join(IMAGE_CACHE, `${id.replace(/^sha256:/, "")}.tar`);
    if (!existsSync(tar)) {
      const part = `${tar}.${process.pid}`;
      sh(["docker", "-H", from, "save", "-o", part, image]);
      renameSync(part, tar);
    }
    sh(["docker", "-H", to, "load", "-q", "-i", tar]);
  }
}

/**
 * `p2prc --as-server` on `host` at its lab address, port 8088 (or `port`), with its own home. It talks to home's
 * engine when on home, else to the test engine (a unix socket works from any namespace). Ready once
 * /v1/health answers from inside `host`. TLS is on unless `env` says otherwise.
 */
export async function spawnLabNode(
  lab: NatLab,
  host: LabHost,
  options: {
    home: string;
    procs: Subprocess[];
    env?: Record<string, string | undefined>;
    name?: string;
    port?: number;
  },
): Promise<SpawnedNode> {
  const port = options.port ?? 8088;
  const addr = LAB_ADDR[host === "router" ? "router" : host];
  const env = {
    P2PRC_SERVER_HOST: addr,
    P2PRC_TLS: "true",
    DOCKER_HOST: host === "home" ? lab.homeDockerHost : process.env.DOCKER_HOST,
    ...options.env,
  };
  const scheme = env.P2PRC_TLS === "false" ? "http" : "https";
  let nodeId = "";
  const node = await spawnNode({
    home: options.home,
    procs: options.procs,
    port,
    name: options.name ?? host,
    env,
    command: lab.command(host, p2prcCommand()),
    ready: async () => {
      const r = await lab.fetch(host, `${scheme}://${env.P2PRC_SERVER_HOST}:${port}/v1/health`, {
        timeoutS: 2,
      });
      if (r.status !== 200) return undefined;
      nodeId = (JSON.parse(r.body) as { nodeId: string }).nodeId;
      return nodeId;
    },
    pollMs: 200,
    timeoutMs: 30_000,
  });
  return { ...node, nodeId, url: `${scheme}://${env.P2PRC_SERVER_HOST}:${port}` };
}

/** `p2prc <args>` run on `host` with the P2PRC home `home` (as that machine's user would run it). */
export function runP2prc(
  lab: NatLab,
  host: LabHost,
  home: string,
  args: string[],
  o: { timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<LabResult> {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, P2PRC: home, ...o.env };
  return lab.run(host, [...p2prcCommand(), ...args], { timeoutMs: o.timeoutMs ?? 30_000, env });
}
