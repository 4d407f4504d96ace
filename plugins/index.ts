/**
 * plugins: extensions run against containers (P2PRC's `--vp/--pp/--rp/--plugin`). The format (plugin.json
 * and an entry script; P2PRC's Ansible layout too), its validation, install from a folder, a tar, git or a
 * member node, the listing, and running one against a container through the node's exec and archive
 * routes (given as `ContainerAccess` by the composition root). Nothing of a plugin runs on a node's host.
 *
 * @example
 *   const p = installFromFolder(paths.plugins, "plugins/examples/web-hello");
 *   const r = await runPlugin(p, target, access, { ports: store.client, clock });
 */
export { ansiblePlaybook } from "./ansible.ts";
export { packPlugin, sha256 } from "./archive.ts";
export type { InstalledPlugin } from "./installed.ts";
export {
  findPlugin,
  installFromArchive,
  installFromFolder,
  installFromGit,
  isGitSource,
  listPlugins,
  removePlugin,
} from "./installed.ts";
export type { ServedPlugin } from "./routes.ts";
export { pluginRoutes } from "./routes.ts";
export type { ContainerAccess, PluginRunResult, PluginTarget, RunDeps } from "./run.ts";
export { optionEnv, runOnEach, runPlugin } from "./run.ts";
export type { BrokenPlugin, PluginEntry, PluginInfo, PluginManifest } from "./types.ts";
export { PLUGIN_FORMAT } from "./types.ts";
