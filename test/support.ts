// Helpers the multi-process tests share.
import { readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Subprocess } from "bun";
import type Docker from "dockerode";
import { type RunningNode, start } from "../abstractions/index.ts";
import type { Config } from "../config/index.ts";
import { type Identity, loadOrCreateIdentity, memoryLogger, signRequest } from "../core/index.ts";
import { freePorts } from "../server/index.ts";

const ROOT = resolve(import.meta.dir, "..");
let command: string[] | undefined;

/** How tests run p2prc: the compiled binary when it is newer than every source file, else `bun cli/main.ts`. */
export function p2prcCommand(): string[] {
  command ??= (() => {
    const bin = join(ROOT, "p2prc");
    try {
      const built = statSync(bin).mtimeMs;
      const newer = Bun.spawnSync(
        [
          "bash",
          "-c",
          "find abstractions client server p2p config core store cli plugins -name '*.ts' ! -name '*.test.ts' -newer p2prc | head -1",
        ],
        { cwd: ROOT },
      )
        .stdout.toString()
        .trim();
      if (built > 0 && newer === "") return [bin];
    } catch {
      // no binary
    }
    return [process.execPath, join(ROOT, "cli/main.ts")];
  })();
  return command;
}

/** Runs a command to its end (tracked in `procs`, for the test's clean-up); stdout, stderr and its lines. */
export async function runCommand(
  argv: string[],
  options: { cwd: string; env: Record<string, string> },
  procs: Subprocess[],
): Promise<{ code: number; out: string; err: string; errLines: string[] }> {
  const proc = Bun.spawn(argv, { ...options, stdout: "pipe", stderr: "pipe" });
  procs.push(proc);
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, out, err, errLines: err.split("\n").filter(Boolean) };
}

/**
 * Starts a command (tracked in `procs`) whose stderr the test watches while it runs (`err.text` grows as
 * it arrives); `done` gives the exit code, all of stdout and stderr.
 */
export function spawnWatched(
  argv: string[],
  options: { cwd: string; env: Record<string, string> },
  procs: Subprocess[],
) {
  const proc = Bun.spawn(argv, { ...options, stdout: "pipe", stderr: "pipe" });
  procs.push(proc);
  const err = { text: "" };
  const decoder = new TextDecoder();
  const errDone = (async () => {
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>)
      err.text += decoder.decode(chunk, { stream: true });
  })();
  const out = new Response(proc.stdout).text();
  const done = (async () => {
    const [o] = await Promise.all([out, proc.exited, errDone]);
    return { code: proc.exitCode ?? -1, out: o, err: err.text };
  })();
  return { proc, err, done };
}

/** Waits until `p2prc --us --json` (run by `cli`) lists every id in `ids` with an address and a latency. */
export async function waitUntilKnown(
  cli: (args: string[]) => Promise<{ out: string }>,
  ids: string[],
  timeoutMs = 10_000,
): Promise<void> {
  await waitFor(
    "the client knows the nodes with addresses",
    async () => {
      const peers = JSON.parse((await cli(["--us", "--json"])).out) as {
        id: string;
        port: number | null;
        latencyMs: number | null;
      }[];
      const known = new Set(peers.filter((x) => x.port !== null && x.latencyMs !== null).map((x) => x.id));
      return ids.every((id) => known.has(id)) ? true : undefined;
    },
    timeoutMs,
    200,
  );
}

/** Keeps a child's stderr as it arrives (for the failure message of a test that waits on the child). */
export function collectStderr(proc: Subprocess, into: string[]): void {
  const decoder = new TextDecoder();
  (async () => {
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>)
      into.push(decoder.decode(chunk, { stream: true }));
  })();
}

/** A free TCP port on 127.0.0.1 (released again, so a node can bind it). */
export async function freePort(): Promise<number> {
  return (await freePorts(1, "127.0.0.1"))[0] as number;
}

/** What `spawnNode` started. */
export interface SpawnedNode {
  proc: Subprocess;
  port: number;
  /** `http://127.0.0.1:<port>` (the scheme is the test's business when it turns TLS on). */
  url: string;
  /** The node id /v1/health answered with ("" when the test's own `ready` replaced that check). */
  nodeId: string;
  /** What the node has written on stderr so far. */
  stderr: string[];
}

/**
 * Starts `p2prc --as-server` as its own process on 127.0.0.1 with the test env (plain HTTP, the busybox
 * test image, 64 MB containers, log level warn, this process's DOCKER_HOST) and resolves once it serves;
 * fails with the node's stderr if it exits first. `env` adds to that env or overrides it (a key set to
 * `undefined` is left out); the process goes into `procs` for the test's clean-up.
 */
export async function spawnNode(options: {
  /** The node's home ($P2PRC). */
  home: string;
  procs: Subprocess[];
  /** Default: a free port. */
  port?: number;
  env?: Record<string, string | undefined>;
  /** Names the node in failure messages (default "node"). */
  name?: string;
  /** How to run p2prc (default: p2prcCommand()). */
  command?: string[];
  /** Ready once this returns a value (default: /v1/health answers 200). */
  ready?: () => Promise<unknown>;
  timeoutMs?: number;
  pollMs?: number;
}): Promise<SpawnedNode> {
  const { home, procs, name = "node" } = options;
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: process.env.HOME ?? dirname(home),
    DOCKER_HOST: process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock",
    P2PRC: home,
    P2PRC_SERVER_PORT: String(port),
    P2PRC_SERVER_HOST: "127.0.0.1",
    P2PRC_TLS: "false",
    P2PRC_DEFAULT_IMAGE: "p2prc-test/busybox",
    P2PRC_DEFAULT_MEMORY_MB: "64",
    P2PRC_LOG_LEVEL: "warn",
    ...options.env,
  }))
    if (v !== undefined) env[k] = v;
  const stderr: string[] = [];
  const proc = Bun.spawn([...(options.command ?? p2prcCommand()), "--as-server"], {
    cwd: ROOT,
    env,
    stdout: "ignore",
    stderr: "pipe",
  });
  procs.push(proc);
  collectStderr(proc, stderr);
  const ready =
    options.ready ??
    (async () => {
      const res = await fetch(`${url}/v1/health`);
      return res.ok ? ((await res.json()) as { nodeId: string }).nodeId : undefined;
    });
  const answer = await waitFor(
    `${name} up`,
    async () => {
      if (proc.exitCode !== null) throw new Error(`${name} exited ${proc.exitCode}: ${stderr.join("")}`);
      return await ready();
    },
    options.timeoutMs ?? 20_000,
    options.pollMs,
  );
  return { proc, port, url, nodeId: options.ready ? "" : String(answer), stderr };
}

/**
 * The env of a node in a small open test network on 127.0.0.1 (for spawnNode's `env`): named, gossiping
 * every 300 ms, every signed node a member, quarter-CPU containers, on this process's engine.
 */
export function openNetworkEnv(home: string, name: string, bootstrap: string): Record<string, string> {
  return {
    HOME: dirname(home),
    DOCKER_HOST: process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock",
    P2PRC_MACHINE_NAME: name,
    P2PRC_BOOTSTRAP: bootstrap,
    P2PRC_GOSSIP_INTERVAL_MS: "300",
    P2PRC_DEFAULT_CPUS: "0.25",
    P2PRC_OPEN_NETWORK: "true",
  };
}

/** A process's resident memory in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) * 1024;
}

/** A small deterministic PRNG (mulberry32): the same run for the same seed, so a fuzzer's failure replays. */
export function seededRandom(seed: number): { rand: () => number; pick: <T>(xs: readonly T[]) => T } {
  let state = seed;
  const rand = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { rand, pick: <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T };
}

/** Polls `fn` until it returns a value (errors count as "not yet"); fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs: number,
  stepMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs} ms${lastErr ? `: ${lastErr}` : ""}`);
    await Bun.sleep(stepMs);
  }
}

/**
 * fetch with the request signed by `identity` (what the peer client does, without its pinning and error mapping; for tests). The body must be a string or bytes, so what is signed is what is sent.
 */
export function signedFetch(
  identity: Identity,
  url: string,
  init: {
    method?: string;
    headers?: Record<string, string>;
    body?: string | Uint8Array;
    signal?: AbortSignal;
    /** Bun's TLS options: `pinnedTls(cert)` for a node serving TLS. */
    tls?: { ca: string; checkServerIdentity: () => undefined };
  } = {},
): Promise<Response> {
  const method = init.method ?? "GET";
  const headers = { ...init.headers, ...signRequest(identity, method, url, init.body ?? "") };
  return fetch(url, { ...init, method, headers });
}

/** The node key of a node home (its admin key). */
export function nodeIdentity(home: string): Identity {
  return loadOrCreateIdentity(join(home, "identity/node.key"), join(home, "identity/node.pub"));
}

/**
 * Runs `command` over the real ssh client as root@127.0.0.1:port (or `host`) with only `key`; killed after
 * 15 s. `prefix`: what runs ssh (a lab's nsenter into a namespace).
 */
export async function ssh(
  key: string,
  port: number,
  command: string,
  o: { host?: string; prefix?: string[] } = {},
) {
  const opts = [
    "StrictHostKeyChecking=no",
    "UserKnownHostsFile=/dev/null",
    "BatchMode=yes",
    "IdentitiesOnly=yes",
  ];
  const proc = Bun.spawn(
    [
      ...(o.prefix ?? []),
      "ssh",
      "-F",
      "/dev/null",
      "-i",
      key,
      ...[...opts, "ConnectTimeout=5", "LogLevel=ERROR"].flatMap((option) => ["-o", option]),
      "-p",
      String(port),
      `root@${o.host ?? "127.0.0.1"}`,
      command,
    ],
    { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
  );
  const timer = setTimeout(() => proc.kill(9), 15_000);
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { stdout, stderr, exitCode };
}

/**
 * A quiet in-process node on a free loopback port with the busybox test image and the test engine
 * (no GPU probe, reconciler nearly idle), plus its own (operator) key.
 */
export async function startTestNode(
  home: string,
  overrides: Partial<Config> = {},
): Promise<{ node: RunningNode; self: Identity }> {
  const node = await start({
    configDir: home,
    env: {},
    logger: memoryLogger(),
    gpus: async () => [],
    reconcileIntervalMs: 60_000,
    overrides: {
      serverHost: "127.0.0.1",
      serverPort: await freePort(),
      defaultImage: "p2prc-test/busybox",
      dockerHost: process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock",
      logLevel: "silent",
      tls: false, // plain HTTP here; test/cluster.test.ts and test/client.test.ts run over TLS
      ...overrides,
    },
  });
  return { node, self: nodeIdentity(home) };
}

/**
 * Removes the engine networks of these nodes (one per owner of their containers, Docs/Security.md):
 * the engine has only a few dozen address pools, so tests give back what their nodes made.
 */
export async function removeNodeNetworks(docker: Docker, nodeIds: Iterable<string>): Promise<void> {
  for (const id of nodeIds) {
    for (const n of await docker.listNetworks({ filters: { label: [`p2prc.node=${id}`] } })) {
      await docker
        .getNetwork(n.Id)
        .remove()
        .catch(() => undefined);
    }
  }
}

/**
 * A multi-process test's clean-up: kills its processes, then removes its nodes' containers (whoever made
 * them) and networks from the engine.
 */
export async function removeTestNodes(
  docker: Docker,
  procs: Subprocess[],
  nodeIds: Iterable<string | undefined>,
): Promise<void> {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill(9);
  await Promise.all(procs.map((p) => p.exited));
  const ids = [...nodeIds].filter((id): id is string => Boolean(id));
  for (const id of ids) {
    const list = await docker.listContainers({ all: true, filters: { label: [`p2prc.node=${id}`] } });
    for (const c of list)
      await docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => {});
  }
  await removeNodeNetworks(docker, ids);
}
