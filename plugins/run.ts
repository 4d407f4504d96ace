import { type Clock, type ErrorCode, P2prcError } from "../core/index.ts";
import type { ClientStore, PortMapping } from "../store/index.ts";
import { type AnsibleDeps, runAnsible, type SshTarget } from "./ansible.ts";
import { portCandidates, portEnv } from "./ports.ts";
import type { PluginInfo } from "./types.ts";

/** A container a plugin runs against. */
export interface PluginTarget {
  /** The container's id. */
  id: string;
  /** Its node as a user types it (`host:port`), for the report. */
  node: string;
  /** Its published ports (container side → node side). */
  ports: PortMapping[];
  /** How to ssh into it (a P2PRC-layout plugin needs it). */
  ssh?: SshTarget | undefined;
}

/** What a plugin does inside a container: the node's archive and exec routes, as its owner. */
export interface ContainerAccess {
  /** Copies a local folder into the container as `path` (its parent exists). */
  copyIn(localDir: string, path: string): Promise<void>;
  exec(
    command: string[],
    o: { env: Record<string, string>; workingDir: string; timeoutSeconds: number },
  ): Promise<{ exitCode: number; stdout: string; stderr: string; timedOut?: boolean; truncated?: boolean }>;
}

/** What a run needs besides the plugin and the container. */
export interface RunDeps extends AnsibleDeps {
  /** The client's tracking: which published ports plugins were handed already. */
  ports: Pick<ClientStore, "claimPorts" | "releasePorts">;
  clock: Clock;
}

/** One container's result. `ok` is the exit code 0; a failure on one container never stops the others. */
export interface PluginRunResult {
  plugin: string;
  container: string;
  node: string;
  ok: boolean;
  /** The entry script's (or ansible-playbook's) exit code; absent when it never ran. */
  exitCode?: number | undefined;
  stdout: string;
  stderr: string;
  timedOut?: boolean | undefined;
  /** The ports handed to the plugin (kept marked used after a success, given back after a failure). */
  ports: PortMapping[];
  /** Why it did not run (refused, unreachable, no free port…), and the error's code. */
  error?: string | undefined;
  code?: ErrorCode | undefined;
  durationMs: number;
}

/** Where a plugin's folder is copied inside the container. */
export function containerDir(plugin: PluginInfo): string {
  return `/tmp/p2prc-plugin-${plugin.name}`;
}

/**
 * The plugin's options as environment variables: each declared option's default, replaced by what the
 * user gave (`name=value`); an option the plugin does not declare is refused, so a typo never passes.
 */
export function optionEnv(plugin: PluginInfo, given: Record<string, string> = {}): Record<string, string> {
  const declared = plugin.manifest?.options ?? {};
  const env: Record<string, string> = {};
  for (const [name, o] of Object.entries(declared)) if (o.default !== undefined) env[name] = o.default;
  for (const [name, value] of Object.entries(given)) {
    if (!(name in declared)) {
      const known = Object.keys(declared);
      throw new P2prcError("E_INVALID", `plugin ${plugin.name} has no option ${name}`, {
        field: "option",
        hint: known.length ? `its options: ${known.join(", ")}` : "it takes no options",
      });
    }
    env[name] = value;
  }
  return env;
}

/** Hands the plugin its ports on the container, or E_LIMIT when too few are free. */
function claim(plugin: PluginInfo, target: PluginTarget, deps: RunDeps): PortMapping[] {
  if (plugin.ports === 0) return [];
  const candidates = portCandidates(target.ports, target.ssh?.port);
  const got = deps.ports.claimPorts(target.id, candidates, plugin.ports, plugin.name, deps.clock.now());
  if (!got) {
    throw new P2prcError(
      "E_LIMIT",
      `container ${target.id.slice(0, 12)} has too few free published ports: plugin ${plugin.name} needs ${plugin.ports}`,
      { hint: `create the container with more ports (p2prc --touch <node> --ports ${plugin.ports}) ` },
    );
  }
  return got.map((internal) => target.ports.find((p) => p.internal === internal) as PortMapping);
}

/**
 * Runs an installed plugin against one container and reports how it went; never throws for the
 * container's sake (refused, unreachable, failed: all are the result's `error` or exit code).
 * A p2prc plugin is copied in and run by /bin/sh inside the container; a P2PRC-layout plugin runs with
 * ansible-playbook on this machine, over ssh to the container.
 */
export async function runPlugin(
  plugin: PluginInfo,
  target: PluginTarget,
  access: ContainerAccess,
  deps: RunDeps,
  options: Record<string, string> = {},
): Promise<PluginRunResult> {
  const started = deps.clock.now();
  const base = { plugin: plugin.name, container: target.id, node: target.node, stdout: "", stderr: "" };
  let ports: PortMapping[] = [];
  try {
    ports = claim(plugin, target, deps);
    const out =
      plugin.kind === "p2prc"
        ? await runInside(plugin, target, access, ports, options)
        : await runWithAnsible(plugin, target, ports, deps);
    const ok = out.exitCode === 0 && !out.timedOut;
    if (!ok)
      deps.ports.releasePorts(
        target.id,
        ports.map((p) => p.internal),
      );
    return { ...base, ...out, ok, ports, durationMs: deps.clock.now() - started };
  } catch (err) {
    deps.ports.releasePorts(
      target.id,
      ports.map((p) => p.internal),
    );
    const e = err instanceof P2prcError ? err : undefined;
    return {
      ...base,
      ok: false,
      ports,
      error: (err as Error).message,
      code: e?.code ?? "E_INTERNAL",
      durationMs: deps.clock.now() - started,
    };
  }
}

async function runInside(
  plugin: PluginInfo,
  target: PluginTarget,
  access: ContainerAccess,
  ports: PortMapping[],
  options: Record<string, string>,
) {
  const m = plugin.manifest;
  if (!m) throw new P2prcError("E_INTERNAL", `plugin ${plugin.name}: no manifest`);
  const dir = containerDir(plugin);
  await access.copyIn(plugin.dir, dir);
  const r = await access.exec(["/bin/sh", `${dir}/${m.entry}`], {
    env: {
      ...optionEnv(plugin, options),
      ...portEnv(ports),
      P2PRC_PLUGIN: plugin.name,
      P2PRC_PLUGIN_VERSION: m.version,
      P2PRC_PLUGIN_DIR: dir,
      P2PRC_CONTAINER_ID: target.id,
    },
    workingDir: dir,
    timeoutSeconds: m.timeoutSeconds,
  });
  return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut };
}

async function runWithAnsible(plugin: PluginInfo, target: PluginTarget, ports: PortMapping[], deps: RunDeps) {
  if (!target.ssh) {
    throw new P2prcError(
      "E_INVALID",
      `container ${target.id.slice(0, 12)} has no ssh: P2PRC plugin ${plugin.name} runs with Ansible over ssh`,
      { hint: "create the container with an ssh key (p2prc --touch <node> --ssh-key <file.pub>)" },
    );
  }
  const r = await runAnsible(
    plugin,
    target.ssh,
    ports.map((p) => p.internal),
    deps,
  );
  return { exitCode: r.code, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut };
}

/**
 * Runs `fn` for every target at once (a group), reporting each result as it comes (`onResult`); one
 * failing never stops the others. Results in the targets' order.
 */
export async function runOnEach<T>(
  targets: T[],
  fn: (t: T) => Promise<PluginRunResult>,
  onResult?: (r: PluginRunResult) => void,
): Promise<PluginRunResult[]> {
  return Promise.all(
    targets.map(async (t) => {
      const r = await fn(t);
      onResult?.(r);
      return r;
    }),
  );
}
