/** The container engine behind a narrow interface; Docker (or Podman) through dockerode. */

export type { DockerEngineOptions } from "./docker.ts";
export { createDockerEngine } from "./docker.ts";
export type {
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
