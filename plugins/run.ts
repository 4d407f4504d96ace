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
  /** The plugin's output while it runs, as it comes (a p2prc plugin; Ansible's comes at the end). */
  onOutput?: ((target: PluginTarget, stream: "stdout" | "stderr", text: string) => void) | undefined;
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
        ? await runInside(plugin, target, access, ports, options, deps)
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

/** How often a running plugin's new output is fetched (ms). */
const POLL_MS = 500;

/**
 * Starts the entry script in the background inside the container (its output to files in `<dir>.run`),
 * then fetches what it wrote every POLL_MS through the exec route, handing new output to `onOutput` as it
 * comes, until it has exited or its timeout has passed (then it is killed). The node's exec route answers
 * once, at the end of a command: this is how a long install's output streams back while it runs.
 */
async function runInside(
  plugin: PluginInfo,
  target: PluginTarget,
  access: ContainerAccess,
  ports: PortMapping[],
  options: Record<string, string>,
  deps: RunDeps,
) {
  const m = plugin.manifest;
  if (!m) throw new P2prcError("E_INTERNAL", `plugin ${plugin.name}: no manifest`);
  const dir = containerDir(plugin);
  const run = `${dir}.run`;
  await access.copyIn(plugin.dir, dir);
  const env = {
    ...optionEnv(plugin, options),
    ...portEnv(ports),
    P2PRC_PLUGIN: plugin.name,
    P2PRC_PLUGIN_VERSION: m.version,
    P2PRC_PLUGIN_DIR: dir,
    P2PRC_CONTAINER_ID: target.id,
  };
  const sh = (script: string, extra: Record<string, string> = {}, timeoutSeconds = 30) =>
    access.exec(["/bin/sh", "-c", script, "sh", run, `${dir}/${m.entry}`], {
      env: { ...env, ...extra },
      workingDir: dir,
      timeoutSeconds,
    });
  // $1: the run folder, $2: the entry. The entry's exit code lands in rc when it ends.
  const started = await sh(
    'rm -rf "$1" && mkdir -p "$1" && ( /bin/sh "$2" >"$1/out" 2>"$1/err" </dev/null & echo $! >"$1/pid"; ' +
      'wait $!; echo $? >"$1/rc" ) </dev/null >/dev/null 2>&1 &',
  );
  if (started.exitCode !== 0) {
    throw new P2prcError("E_ENGINE", `plugin ${plugin.name}: could not start: ${started.stderr.trim()}`);
  }
  const deadline = deps.clock.now() + m.timeoutSeconds * 1000;
  const seen = { out: 0, err: 0 };
  let timedOut = false;
  for (;;) {
    // done is read before the output, so the last poll has all of it
    const poll = await sh(
      'd=0; [ -f "$1/rc" ] && d=1; tail -c +$((OUT + 1)) "$1/out"; tail -c +$((ERR + 1)) "$1/err" >&2; exit $d',
      { OUT: String(seen.out), ERR: String(seen.err) },
    );
    for (const [stream, text] of [
      ["stdout", poll.stdout],
      ["stderr", poll.stderr],
    ] as const) {
      if (text === "") continue;
      seen[stream === "stdout" ? "out" : "err"] += Buffer.byteLength(text);
      deps.onOutput?.(target, stream, text);
    }
    if (poll.exitCode !== 0) break;
    if (deps.clock.now() >= deadline) {
      timedOut = true;
      await sh('kill -9 "$(cat "$1/pid")" 2>/dev/null; echo 137 >"$1/rc"');
      break;
    }
    await deps.clock.sleep(POLL_MS);
  }
  // the whole output and the exit code, as the files hold them, in one call
  const all = await sh(
    'cat "$1/out"; cat "$1/err" >&2; exit "$(cat "$1/rc" 2>/dev/null || echo 255)"',
    {},
    60,
  );
  return { exitCode: all.exitCode, stdout: all.stdout, stderr: all.stderr, timedOut };
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
