/** client: sends work to other nodes — containers, tracked containers, groups, batch jobs and futures. */

export type { Job } from "./batch/job.ts";
export { JobSchema, loadJob, taskParams } from "./batch/job.ts";
export type { BatchOptions, BatchResult } from "./batch/runner.ts";
export { runBatch } from "./batch/runner.ts";
export type { BatchProgress, BatchSummary, TaskResult } from "./batch/scheduler.ts";
export { slotsFor } from "./batch/scheduler.ts";
export type { BatchStatus } from "./batch/status.ts";
export { batchStatus } from "./batch/status.ts";
export type { InputTraffic } from "./batch/worker.ts";
export type { ContainerRef, ContainerStatus, InteractiveExec, ListedContainer } from "./container-ops.ts";
export {
  containerLogs,
  copyFromContainer,
  copyToContainer,
  execInContainer,
  execInteractive,
  inspectContainer,
  listContainers,
  renewLease,
  resumeContainer,
  stopContainer,
} from "./container-ops.ts";
export type {
  ClientDeps,
  GroupView,
  RemovedContainer,
  StartContainerOptions,
  StartedContainer,
  TrackedState,
} from "./containers.ts";
export {
  addToGroup,
  createGroup,
  getSpecs,
  identify,
  listGroups,
  removeContainer,
  removeFromGroup,
  removeGroup,
  showGroup,
  sshWithIdentity,
  startContainer,
  trackedContainers,
  viewImages,
} from "./containers.ts";
export type { MandelbrotOptions } from "./demo/mandelbrot.ts";
export { assembleTiles, mandelbrotJob, mandelbrotLocal, tileRows, toPng } from "./demo/mandelbrot.ts";
export type {
  ClusterOptions,
  FutureClusterDeps,
  FutureOptions,
  FutureState,
  ScriptResult,
} from "./futures/cluster.ts";
export { Future, FutureCluster } from "./futures/cluster.ts";
export { FutureCancelledError, FutureError } from "./futures/errors.ts";
export type { LogLine, RemoteErrorInfo, SignedReply } from "./futures/program.ts";
export { readReply } from "./futures/program.ts";
export type { PushedImage, PushImageOptions, PushProgress } from "./images.ts";
export { listPushedImages, pushImage, removePushedImage } from "./images.ts";
export type { CreateContainerBody, CreatedContainer, ExecReply, PeerDeps } from "./node-client.ts";
export { connect, NodeClient } from "./node-client.ts";
export type { DeadNode, NodeNeeds, NodeTarget } from "./resolve.ts";
export { rankNodes, resolveNode } from "./resolve.ts";
