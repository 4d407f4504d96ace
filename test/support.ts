// Helpers the multi-process tests share.
import { statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import type Docker from "dockerode";
import { type RunningNode, start } from "../abstractions/index.ts";
import { type Config, type Identity, loadOrCreateIdentity, memoryLogger } from "../config/index.ts";
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
          "find abstractions client server p2p config cli plugins -name '*.ts' ! -name '*.test.ts' -newer p2prc | head -1",
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

/** A free TCP port on 127.0.0.1 (released again, so a node can bind it). */
/** Keeps a child's stderr as it arrives (for the failure message of a test that waits on the child). */
export function collectStderr(proc: Subprocess, into: string[]): void {
  const decoder = new TextDecoder();
  (async () => {
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>)
      into.push(decoder.decode(chunk, { stream: true }));
  })();
}

export async function freePort(): Promise<number> {
  return (await freePorts(1, "127.0.0.1"))[0] as number;
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

/** `fetch` signed by a node key: the library's own helper (config/request-auth.ts). */
export { signedFetch } from "../config/index.ts";

/** The node key of a node home (its admin key). */
export function nodeIdentity(home: string): Identity {
  return loadOrCreateIdentity(join(home, "identity/node.key"), join(home, "identity/node.pub"));
}

/** Runs `command` over the real ssh client as root@127.0.0.1:port with only `key`; killed after 15 s. */
export async function ssh(key: string, port: number, command: string) {
  const opts = [
    "StrictHostKeyChecking=no",
    "UserKnownHostsFile=/dev/null",
    "BatchMode=yes",
    "IdentitiesOnly=yes",
  ];
  const proc = Bun.spawn(
    [
      "ssh",
      "-F",
      "/dev/null",
      "-i",
      key,
      ...[...opts, "ConnectTimeout=5", "LogLevel=ERROR"].flatMap((o) => ["-o", o]),
      "-p",
      String(port),
      "root@127.0.0.1",
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
