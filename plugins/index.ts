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
export type { AnsibleDeps, SshTarget } from "./ansible.ts";
export { ansiblePlaybook, runAnsible } from "./ansible.ts";
export { packPlugin, sha256, unpackPlugin } from "./archive.ts";
export type { PluginFile } from "./files.ts";
export { PLUGIN_LIMITS, pluginFiles } from "./files.ts";
export type { InstalledPlugin } from "./installed.ts";
export {
  findPlugin,
  gitFolderName,
  installFromArchive,
  installFromFolder,
  installFromGit,
  isGitSource,
  listPlugins,
  pluginArchive,
  removePlugin,
} from "./installed.ts";
export { readPlugin } from "./layout.ts";
export { portCandidates, portEnv, renderSite } from "./ports.ts";
export type { ProcessResult, RunProcess, Which } from "./process.ts";
export type { ServedPlugin } from "./routes.ts";
export { pluginRoutes } from "./routes.ts";
export type { ContainerAccess, PluginRunResult, PluginTarget, RunDeps } from "./run.ts";
export { containerDir, optionEnv, runOnEach, runPlugin } from "./run.ts";
export type { BrokenPlugin, PluginEntry, PluginInfo, PluginManifest } from "./types.ts";
export { PLUGIN_FORMAT, PLUGIN_NAME } from "./types.ts";
