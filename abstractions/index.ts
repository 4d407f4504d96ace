/**
 * abstractions: the composition root and the API to embed p2prc. It builds the real config, identity,
 * store, engine, clock and logger, and hands each module what it needs.
 *
 * @example
 *   import { init } from "p2prc/abstractions";
 *   const node = init({ configDir: "/tmp/node-a" });
 *   console.log(node.identity.nodeId);
 */
export { doctor } from "./doctor.ts";
export type { DoctorReport } from "./doctor.ts";
export { init, loadConfig, setConfigValue, setDefaultConfig, viewConfig } from "./node.ts";
export type { DefaultConfigResult, LoadedConfig, NodeContext, NodeOptions } from "./node.ts";
