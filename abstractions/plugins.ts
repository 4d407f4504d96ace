import { existsSync, readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import type { ContainerRef } from "../client/index.ts";
import { nodeOfUrl, P2prcError } from "../core/index.ts";
import type {
  InstalledPlugin,
  PluginEntry,
  PluginRunResult,
  PluginTarget,
  ServedPlugin,
} from "../plugins/index.ts";
import { withClient } from "./client.ts";
import { client, plugins as loadPlugins } from "./lazy.ts";
import { init, type NodeOptions } from "./node.ts";

/** A plugin a member node offers (`GET /v1/plugins`). */
export interface OfferedPlugin {
  name: string;
  kind: string;
  version?: string | undefined;
  description: string;
}

/** `peer:<node>/<name>[#sha256=<hex>]`: a plugin a member node has installed. */
const PEER_SOURCE = /^peer:(.+)\/([^/#]+?)(?:#sha256=([0-9a-fA-F]{64}))?$/;

/** `[node/]container`, or a group id (`grp…`, as --cgroup makes it). */
function parseTarget(id: string | ContainerRef): ContainerRef | { group: string } {
  if (typeof id !== "string") return id;
  if (id.startsWith("grp")) return { group: id };
  const slash = id.lastIndexOf("/");
  return slash > 0 ? { node: id.slice(0, slash), id: id.slice(slash + 1) } : { id };
}

/** The host and key of a container's ssh command (`ssh [-i key] -p PORT user@host`). */
function sshParts(command: string | undefined): { host?: string; identityFile?: string } {
  if (!command) return {};
  const host = /@(\[[^\]]+\]|[^\s@]+)\s*$/.exec(command)?.[1]?.replace(/^\[|\]$/g, "");
  const key = /\s-i\s+('([^']*)'|(\S+))/.exec(command);
  return { host, identityFile: key ? (key[2] ?? key[3]) : undefined };
}

/**
 * Plugins (P2PRC's `--vp`, `--pp`, `--rp`, `--plugin`): installed in the client's home (`<home>/plugins`),
 * run against one of the caller's containers or every container of a group, through the node's exec and
 * archive routes (the same signed calls and authorisation as `p2prc exec` and `p2prc cp`).
 *
 * @example
 *   await plugins.install(options, "plugins/examples/web-hello");
 *   const [r] = await plugins.run(options, "web-hello", "web1");
 *   console.log(r.ok, r.ports, r.stdout);
 */
export const plugins = {
  /** `--vp`: every installed plugin, and each broken folder with the reason (never failing the list). */
  async list(options: NodeOptions = {}): Promise<PluginEntry[]> {
    const p = await loadPlugins();
    return p.listPlugins(init(options).paths.plugins);
  },

  /**
   * `--pp <source>`: installs from a folder, a tar or tar.gz file, a git URL (with git on PATH), or
   * `peer:<node>/<name>` — a member node's installed copy, checked against the sha256 it serves and, with
   * `#sha256=<hex>` (or `o.sha256`), against the one the user expects.
   */
  async install(options: NodeOptions, source: string, o: { sha256?: string } = {}): Promise<InstalledPlugin> {
    const p = await loadPlugins();
    const root = init(options).paths.plugins;
    const peer = PEER_SOURCE.exec(source);
    if (peer) return installFromPeer(options, peer[1] as string, peer[2] as string, o.sha256 ?? peer[3]);
    if (existsSync(source)) {
      if (statSync(source).isDirectory()) return p.installFromFolder(root, source);
      const name = basename(source).replace(/(\.tar\.gz|\.tgz|\.tar)$/, "");
      return p.installFromArchive(root, new Uint8Array(readFileSync(source)), source, o.sha256, name);
    }
    if (p.isGitSource(source)) return p.installFromGit(root, source);
    throw new P2prcError(
      "E_INVALID",
      `--pp: no folder or file ${source}, and not a git URL or peer:<node>/<name>`,
      {
        field: "source",
        hint: "a plugin's folder, a .tar/.tar.gz of it, https://…/repo.git, or peer:<node>/<name> (a member node's copy)",
      },
    );
  },

  /** `--rp <name>` */
  async remove(options: NodeOptions, name: string): Promise<{ name: string; dir: string }> {
    const p = await loadPlugins();
    return p.removePlugin(init(options).paths.plugins, name);
  },

  /**
   * `--plugin <name> --id <container|group>`: runs the plugin on the container (`id`, or `node/id` for one
   * --tc does not track) or on every container of group `grp…` at once. One result per container, in
   * order (`onResult` gets each as it finishes); a failure on one never stops the others.
   */
  async run(
    options: NodeOptions,
    name: string,
    id: string | ContainerRef,
    o: {
      options?: Record<string, string>;
      onResult?: (r: PluginRunResult) => void;
      /** A p2prc plugin's output while it runs, per container, as it comes. */
      onOutput?: (container: string, stream: "stdout" | "stderr", text: string) => void;
    } = {},
  ): Promise<PluginRunResult[]> {
    const [p, c] = await Promise.all([loadPlugins(), client()]);
    const plugin = p.findPlugin(init(options).paths.plugins, name);
    // what would fail on every container fails once, before any: an unknown option, no Ansible
    p.optionEnv(plugin, o.options);
    if (plugin.kind === "p2prc-ansible") p.ansiblePlaybook(plugin);
    const target = parseTarget(id);
    return withClient(options, async (deps) => {
      let refs: ContainerRef[];
      if ("group" in target) {
        const group = deps.tracking.groups().find((g) => g.id === target.group);
        if (!group) throw new P2prcError("E_NOT_FOUND", `no group ${target.group}`, { field: "id" });
        if (group.members.length === 0) {
          throw new P2prcError("E_INVALID", `group ${target.group} has no containers`, {
            field: "id",
            hint: `add one: p2prc --group ${target.group} --id <container>`,
          });
        }
        refs = group.members.map((m) => ({ id: m }));
      } else {
        refs = [target];
      }
      return p.runOnEach(
        refs,
        async (ref) => {
          const started = deps.clock.now();
          let found: Awaited<ReturnType<typeof c.inspectContainer>>;
          try {
            found = await c.inspectContainer(deps, ref);
          } catch (err) {
            // refused (not the caller's), gone or unreachable: this container's result, not the run's
            return {
              plugin: plugin.name,
              container: ref.id,
              node: ref.node ?? "",
              ok: false,
              stdout: "",
              stderr: "",
              ports: [],
              error: (err as Error).message,
              code: err instanceof P2prcError ? err.code : "E_INTERNAL",
              durationMs: deps.clock.now() - started,
            };
          }
          const { view, node, nodeUrl, tracked } = found;
          const at: ContainerRef = { node: tracked ? undefined : ref.node, id: view.id };
          const ssh = view.ssh && {
            ...sshParts(tracked?.ssh?.command ?? view.ssh.command),
            port: view.ssh.port,
            user: view.ssh.user,
          };
          const t: PluginTarget = {
            id: view.id,
            node,
            ports: view.ports,
            ssh: ssh && { ...ssh, host: ssh.host ?? nodeOfUrl(nodeUrl).node.address.host },
          };
          return p.runPlugin(
            plugin,
            t,
            {
              copyIn: async (local, path) => {
                await c.copyToContainer(deps, at, local, path);
              },
              exec: (command, eo) => c.execInContainer(deps, at, command, eo),
            },
            {
              ports: deps.tracking,
              clock: deps.clock,
              onOutput: o.onOutput && ((t, stream, text) => o.onOutput?.(t.id, stream, text)),
            },
            o.options,
          );
        },
        o.onResult,
      );
    });
  },

  /** The plugins a member node has installed (what `peer:<node>/<name>` can install). */
  async ofNode(options: NodeOptions, node: string): Promise<OfferedPlugin[]> {
    const c = await client();
    return withClient(options, async (deps) => {
      const { client: nc } = await c.identify(deps, node);
      const res = await nc.request("/v1/plugins");
      return ((await res.json()) as { plugins: OfferedPlugin[] }).plugins;
    });
  },
};

/** Installs a member node's copy: its archive, checked against the sha256 it serves (and the one pinned). */
async function installFromPeer(
  options: NodeOptions,
  node: string,
  name: string,
  pinned: string | undefined,
): Promise<InstalledPlugin> {
  const [p, c] = await Promise.all([loadPlugins(), client()]);
  const source = `peer:${node}/${name}`;
  const served = await withClient(options, async (deps) => {
    const { client: nc } = await c.identify(deps, node);
    const res = await nc.request(`/v1/plugins/${encodeURIComponent(name)}`, { timeoutMs: 120_000 });
    return (await res.json()) as ServedPlugin;
  });
  if (served.name !== name) {
    throw new P2prcError(
      "E_INVALID",
      `${source}: the node answered with plugin ${served.name}: not installed`,
    );
  }
  const bytes = new Uint8Array(Buffer.from(served.archive, "base64"));
  if (p.sha256(bytes) !== served.sha256) {
    throw new P2prcError(
      "E_INVALID",
      `${source}: the archive's sha256 is not the one the node sent: not installed`,
    );
  }
  const root = init(options).paths.plugins;
  const installed = p.installFromArchive(root, bytes, source, pinned ?? served.sha256, name);
  // the archive's own manifest names it: it must be the plugin asked for
  if (installed.name !== name) {
    p.removePlugin(root, installed.name);
    throw new P2prcError("E_INVALID", `${source}: the archive holds plugin ${installed.name}: not installed`);
  }
  return installed;
}
