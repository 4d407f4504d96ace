// Helpers the benchmarks share: a clean environment, skipping (exit 77), the engine check, statistics.
import { readFileSync } from "node:fs";
import type Dockerode from "dockerode";

/** The caller's env without P2PRC settings, so the user's own config cannot change the numbers. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && k !== "P2PRC" && !k.startsWith("P2PRC_")) env[k] = v;
  }
  return { ...env, ...extra };
}

/** Ends a bench that cannot run here with bench/run.sh's "skipped" code. */
export function skipper(name: string): (why: string) => never {
  return (why) => {
    console.log(`${name}: ${why}; skipped`);
    process.exit(77);
  };
}

export function connectOptions(host: string): Dockerode.DockerOptions {
  if (host.startsWith("unix://")) return { socketPath: host.slice("unix://".length) };
  if (host.startsWith("/")) return { socketPath: host };
  const url = new URL(host.replace(/^tcp:/, "http:"));
  return { host: url.hostname, port: Number(url.port || 2375), protocol: "http" };
}

/**
 * The engine the docker CLI and dockerode reach at `dockerHost`, with `image` on it; skips the bench
 * (exit 77) otherwise. Returns the engine's version and a dockerode client.
 */
export async function requireEngine(
  name: string,
  dockerHost: string,
  image: string,
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<{ engineVersion: string; docker: Dockerode }> {
  const skip = skipper(name);
  const cli = Bun.spawnSync(["docker", "version", "--format", "{{.Server.Version}}"], {
    env,
    stdout: "pipe",
    stderr: "pipe",
    timeout: timeoutMs,
  });
  if (cli.exitCode !== 0) {
    skip(
      `the docker CLI cannot reach ${dockerHost} (${cli.stderr.toString().trim().split("\n")[0] || "no docker CLI"})`,
    );
  }
  const { default: Docker } = await import("dockerode");
  const docker = new Docker(connectOptions(dockerHost));
  try {
    await docker.getImage(image).inspect();
  } catch {
    skip(`image ${image} is not on the engine at ${dockerHost}`);
  }
  return { engineVersion: cli.stdout.toString().trim(), docker };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)] as number;
}

/**
 * SIGINT / SIGTERM stop a bench after the operation in progress (a second signal exits at once).
 * `check()` throws once a signal came; `signal()` names it.
 */
export function interruptible() {
  let interrupted: string | undefined;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (interrupted) process.exit(130);
      interrupted = sig;
    });
  }
  return {
    check(): void {
      if (interrupted) throw new Error(`interrupted by ${interrupted}`);
    },
    signal: (): string | undefined => interrupted,
  };
}

/** The flags the Makefile builds ./p2prc with (its BUILD_FLAGS line): one list, read by the tests and benches. */
export function buildFlags(root: string): string[] {
  const makefile = readFileSync(`${root}/Makefile`, "utf8");
  const line = /^BUILD_FLAGS := (.*)$/m.exec(makefile)?.[1];
  if (!line) throw new Error("Makefile has no BUILD_FLAGS line");
  return line.split(/\s+/).filter(Boolean);
}

/**
 * Runs `fn` under JavaScriptCore's sampling profiler (every 100 µs) and writes to `out` the functions by
 * samples, self (at the top of the stack) and inclusive (anywhere in it): bench/gossip's
 * P2PRC_GOSSIP_JSPROF, bench/signed's P2PRC_SIGNED_JSPROF.
 */
export async function profiled(fn: () => Promise<unknown>, out: string): Promise<void> {
  const { profile } = await import("bun:jsc");
  const p = await profile(fn, 100);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const st = p.stackTraces as unknown as {
    traces: { frames: { name: string; sourceURL?: string }[] }[];
  };
  for (const t of st.traces) {
    const names = t.frames.map(
      (f) => `${f.name || "(anon)"} ${(f.sourceURL ?? "").split("/").slice(-2).join("/")}`,
    );
    if (names[0]) self.set(names[0], (self.get(names[0]) ?? 0) + 1);
    for (const name of new Set(names)) incl.set(name, (incl.get(name) ?? 0) + 1);
  }
  const top = (m: Map<string, number>) =>
    [...m]
      .sort((x, y) => y[1] - x[1])
      .slice(0, 60)
      .map(([k, v]) => `${String(v).padStart(6)} ${k}`)
      .join("\n");
  await Bun.write(out, `samples ${st.traces.length}\nSELF\n${top(self)}\nINCLUSIVE\n${top(incl)}\n`);
}
