// Hosts with their own Docker engine and nothing else: each a network namespace `p2pimg<pid>x<n>-<host>`
// running its own dockerd (DOCKER-ENGINE.md, "One engine per simulated host"), so each has its own
// image store. Nodes reach an engine by its socket (a file) from any namespace. Used by
// test/images.test.ts and bench/transfer.ts; the NAT lab (nat.ts) is the one with a network between hosts.
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import {
  loadImages,
  natLabUnavailable,
  removeDir,
  removedAtExit,
  removeNamespaces,
  staleLabIds,
  startEngine,
  stopEngine,
} from "./nat.ts";

const PREFIX = "p2pimg";
const STATE_ROOT = "/tmp/p2prc-imglab";

export interface EngineLab extends AsyncDisposable {
  id: string;
  /** `unix://…/docker.sock` of a host's engine. */
  dockerHost(host: string): string;
  close(): Promise<void>;
}

/** Why the lab cannot run here (it needs root, `ip netns` and nsenter), or undefined. */
export const engineLabUnavailable = natLabUnavailable;

function namespacesOf(id: string): string[] {
  const r = Bun.spawnSync(["ip", "netns", "list"], { stdout: "pipe", stderr: "ignore" });
  return r.stdout
    .toString()
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(`${id}-`));
}

function removeLab(id: string): void {
  const dir = join(STATE_ROOT, id);
  if (existsSync(dir)) for (const host of readdirSync(dir)) stopEngine(join(dir, host));
  removeNamespaces(namespacesOf(id));
  removeDir(dir);
}

/** Labs earlier runs left behind (their owner process is gone). */
function removeStale(): void {
  for (const id of staleLabIds(PREFIX, STATE_ROOT)) removeLab(id);
}

let count = 0;

/**
 * Starts one engine per host, each in its own namespace, with `images` copied in from the test engine
 * (DOCKER_HOST). `close()` (or `await using`) removes engines, namespaces and files.
 */
export async function startEngineLab(
  hosts: string[],
  images: string[] = ["p2prc-test/busybox"],
): Promise<EngineLab> {
  const reason = engineLabUnavailable();
  if (reason) throw new Error(reason);
  removeStale();
  const id = `${PREFIX}${process.pid}x${count++}`;
  const dir = join(STATE_ROOT, id);
  const close = removedAtExit(() => removeLab(id));
  try {
    await Promise.all(
      hosts.map(async (host) => {
        const ns = `${id}-${host}`;
        mkdirSync(join(dir, host), { recursive: true });
        Bun.spawnSync(["ip", "netns", "add", ns]);
        Bun.spawnSync(["ip", "-n", ns, "link", "set", "lo", "up"]);
        await startEngine(["nsenter", `--net=/var/run/netns/${ns}`], join(dir, host));
        loadImages(images, `unix://${join(dir, host, "docker.sock")}`);
      }),
    );
  } catch (err) {
    await close();
    throw err;
  }
  return {
    id,
    dockerHost: (host) => `unix://${join(dir, host, "docker.sock")}`,
    close,
    [Symbol.asyncDispose]: close,
  };
}
