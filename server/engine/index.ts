/** The container engine behind a narrow interface; Docker (or Podman) through dockerode, or a Docker Swarm. */

export type { DockerEngineOptions } from "./docker.ts";
export { createDockerEngine } from "./docker.ts";
export type { SwarmEngineOptions } from "./swarm.ts";
export { createSwarmEngine } from "./swarm.ts";
export type {
  ClusterInfo,
  ClusterMachine,
  ContainerEngine,
  ContainerInfo,
  ContainerSpec,
  ContainerState,
  EngineInfo,
  ExecOptions,
  ExecResult,
  ExecSession,
  ExecSessionOptions,
  ImageDetails,
  ImageInfo,
  LogsOptions,
  NetworkInfo,
} from "./types.ts";
export { LABEL_PREFIX, MANAGED_LABEL } from "./types.ts";
