/**
 * config: the node's config — every field with its schema and default (`CONFIG_FIELDS`), the loader that
 * merges defaults, config.json, P2PRC_* variables and flags, and where a node keeps its files (the home).
 * Imports only core.
 */
export type { ResolvedConfig, ResolveInputs } from "./load.ts";
export {
  completeConfigFile,
  defaultConfig,
  envName,
  readConfigFile,
  resolveConfig,
  writeConfigFile,
} from "./load.ts";
export type { HomeInputs, NodePaths } from "./paths.ts";
export { nodePaths, resolveHome } from "./paths.ts";
export type { Config, ConfigField, ConfigSource } from "./types.ts";
export { CONFIG_FIELDS, configSchema, fieldSchema } from "./types.ts";
