/**
 * abstractions: the composition root and the API to embed p2prc. It builds the real config, identity,
 * store, engine, clock and logger, and hands each module what it needs.
 *
 * @example
 *   import { start } from "./abstractions/index.ts";
 *   const node = await start({ configDir: "/tmp/node-a" });
 *   console.log(node.url, node.nodeId);
 *   await node.stop();
 */

export type {
  BatchProgress,
  BatchResult,
  BatchStatus,
  ContainerStatus,
  CreateContainerBody,
  ExecReply,
  Future,
  FutureCancelledError,
  FutureCluster,
  FutureError,
  FutureOptions,
  FutureState,
  GroupView,
  ListedContainer,
  LogLine,
  RemoteErrorInfo,
  RemovedContainer,
  ScriptResult,
  StartContainerOptions,
  StartedContainer,
  TaskResult,
} from "../client/index.ts";
export { VERSION } from "../core/index.ts";
export type { GossipRefusal, PeerView } from "../p2p/index.ts";
export type {
  InstalledPlugin,
  PluginEntry,
  PluginInfo,
  PluginManifest,
  PluginRunResult,
} from "../plugins/index.ts";
export type { MandelbrotDemoOptions, RunBatchOptions } from "./client.ts";
export {
  batchStatus,
  demoMandelbrot,
  getSpecs,
  groups,
  removeContainer,
  runBatch,
  startContainer,
  trackedContainers,
  viewImages,
} from "./client.ts";
export type { ClusterView } from "./cluster.ts";
export {
  clusterAdd,
  clusterRemove,
  hostCluster,
  joinCluster,
  leaveCluster,
  listClusters,
} from "./cluster.ts";
export type { ContainerRef, InteractiveExec } from "./containers.ts";
export { containers } from "./containers.ts";
export type { DoctorReport } from "./doctor.ts";
export { doctor } from "./doctor.ts";
export type { FutureClusterOptions, RunScriptOptions } from "./futures.ts";
export { cluster, runScript } from "./futures.ts";
export { nvidiaSmiProbe, parseNvidiaSmi } from "./gpu.ts";
export type { PushedImage, PushedImageView, PushImageCallOptions, PushProgress } from "./images.ts";
export { listImages, pushImage, removeImage } from "./images.ts";
export type { MapPortOptions, Mapping, MappingView } from "./mappings.ts";
export { listMappings, mapPort, unmapPort } from "./mappings.ts";
export type { UpdateIPTableOptions } from "./network.ts";
export { addCustomInformation, addRootNode, addServer, updateIPTable, viewIPTable } from "./network.ts";
export type { DefaultConfigResult, LoadedConfig, NodeContext, NodeOptions } from "./node.ts";
export { init, loadConfig, setConfigValue, setDefaultConfig, viewConfig } from "./node.ts";
export { plugins } from "./plugins.ts";
export type { NodeRoute, StdioLike } from "./proxy.ts";
export { forwardPort, proxyStdio, routeTo } from "./proxy.ts";
export type { RunningNode, StartOptions } from "./start.ts";
export { start } from "./start.ts";
export { uiLink } from "./ui.ts";
