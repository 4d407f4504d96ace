/** server: runs other nodes' tasks in isolated containers behind an HTTP API. */
export { createDockerEngine, LABEL_PREFIX, MANAGED_LABEL } from "./engine/index.ts";
export type {
  ContainerEngine,
  ContainerInfo,
  ContainerSpec,
  ContainerState,
  DockerEngineOptions,
  EngineInfo,
  ExecOptions,
  ExecResult,
  ImageInfo,
} from "./engine/index.ts";
