import type { PortMapping } from "../../store/index.ts";

/** Label prefix on every container p2prc creates; the reconciler finds its own by it. */
export const LABEL_PREFIX = "p2prc.";
/** Label that marks a container as p2prc's; its value is the managing node's id. */
export const MANAGED_LABEL = "p2prc.node";

/** What to create. p2prc's own type: the engine adapter translates it. */
export interface ContainerSpec {
  name: string;
  image: string;
  command?: string[] | undefined;
  env?: Record<string, string> | undefined;
  labels: Record<string, string>;
  cpus: number;
  memoryMb: number;
  pidsLimit: number;
  /** Container TCP ports to publish on random host ports. */
  publish: number[];
  /** Container ports bound to a chosen host port (P2PRC's auto ports: the same number on both sides). */
  publishFixed?: PortMapping[] | undefined;
  /** Host address the published ports bind to. */
  publishHost?: string | undefined;
  gpu: boolean;
  /** Capabilities added back after dropping ALL (e.g. what sshd needs). */
  capAdd?: string[] | undefined;
  workingDir?: string | undefined;
  /** Engine network the container joins alone (see ensureNetwork); undefined = the engine's default bridge. */
  network?: string | undefined;
  /** Log rotation of the json-file log driver: size of one file in MiB and files kept. */
  log?: { maxMb: number; maxFiles: number } | undefined;
  /**
   * Writable-layer quota in MiB, applied where the storage driver supports one (overlay2 on xfs with
   * pquota, btrfs, zfs...); elsewhere the container is created without it (see diskQuota()).
   */
  diskMb?: number | undefined;
}

/** A network p2prc made (labelled p2prc.*). */
export interface NetworkInfo {
  id: string;
  name: string;
  labels: Record<string, string>;
  /** Containers attached to it now. */
  containers: number;
}

export type ContainerState = "created" | "running" | "paused" | "restarting" | "removing" | "exited" | "dead";

/** What the engine says about a container. */
export interface ContainerInfo {
  id: string;
  name: string;
  image: string;
  state: ContainerState;
  running: boolean;
  exitCode?: number | undefined;
  labels: Record<string, string>;
  ports: PortMapping[];
  /** ms since epoch */
  createdAt: number;
}

export interface EngineInfo {
  version: string;
  apiVersion: string;
  os: string;
  arch: string;
  containers: number;
  images: number;
  /** Whether the engine has a GPU runtime (nvidia) configured. */
  gpuRuntime: boolean;
}

export interface ImageInfo {
  id: string;
  tags: string[];
  sizeBytes: number;
  createdAt: number;
}

export interface ExecOptions {
  env?: Record<string, string> | undefined;
  workingDir?: string | undefined;
  /** Kill the wait (not the process) after this many ms; the result then has exitCode -1 and timedOut. */
  timeoutMs?: number | undefined;
  /** Most bytes kept of each of stdout and stderr; more is dropped and `truncated` set. */
  maxOutputBytes?: number | undefined;
}

/** An interactive exec (`p2prc exec -i/-t`): what the command is started with. */
export interface ExecSessionOptions {
  env?: Record<string, string> | undefined;
  workingDir?: string | undefined;
  /** A terminal: output comes raw (stdout and stderr are one), and the size can change. */
  tty: boolean;
  /** The terminal's first size. */
  cols?: number | undefined;
  rows?: number | undefined;
}

/** A running interactive exec. */
export interface ExecSession {
  /**
   * What the command prints, as it prints it: raw bytes with a TTY; without one, the engine's frames
   * (core/frames.ts: stream 1 stdout, 2 stderr). Ends when the command exits.
   */
  output: ReadableStream<Uint8Array>;
  /** Bytes for the command's stdin; resolves when the engine took them (backpressure). */
  write(data: Uint8Array): Promise<void>;
  /** Closes the command's stdin (end of input: `cat` ends). */
  endInput(): void;
  /** The terminal's new size (TTY only). */
  resize(cols: number, rows: number): Promise<void>;
  /** The exit code once the command ended; undefined while it runs. */
  exitCode(): Promise<number | undefined>;
  /** Drops the engine connection (with a TTY the command gets a hang-up). Idempotent. */
  close(): void;
}

export interface LogsOptions {
  follow: boolean;
  /** Only the last this many lines. */
  tail?: number | undefined;
  /** Only lines since this time, in seconds since the epoch. */
  since?: number | undefined;
  /** End the stream after this many bytes. */
  maxBytes?: number | undefined;
  signal?: AbortSignal | undefined;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut?: boolean;
  truncated?: boolean;
}

/**
 * The narrow container engine p2prc needs. One implementation talks to Docker (or Podman) through
 * dockerode; nothing else in p2prc touches the engine. Remove is idempotent.
 */
export interface ContainerEngine {
  ping(): Promise<EngineInfo>;
  create(spec: ContainerSpec): Promise<string>;
  start(id: string): Promise<void>;
  /** Stops (SIGTERM, then SIGKILL after `timeoutSeconds`) without removing; one already stopped is success. */
  stop(id: string, timeoutSeconds: number): Promise<void>;
  /** undefined when the container does not exist. */
  inspect(id: string): Promise<ContainerInfo | undefined>;
  exec(id: string, command: string[], options?: ExecOptions): Promise<ExecResult>;
  /** Starts `command` with its stdin, output and (with `tty`) a terminal attached: `p2prc exec -it`. */
  openExec(id: string, command: string[], options: ExecSessionOptions): Promise<ExecSession>;
  /**
   * stdout and stderr interleaved as text bytes, read from the engine as the stream is read (bounded
   * memory whatever the log's size); with follow the stream stays open until the container stops or the
   * signal aborts. Without follow an engine that answers garbage or nothing fails here, not mid-stream.
   */
  logs(id: string, options: LogsOptions): Promise<ReadableStream<Uint8Array>>;
  /** Extracts a tar archive into `path` inside the container. */
  putArchive(id: string, path: string, tar: Uint8Array | ReadableStream<Uint8Array>): Promise<void>;
  /** A tar archive of `path` inside the container. */
  getArchive(id: string, path: string): Promise<ReadableStream<Uint8Array>>;
  /** Force-removes; a container already gone is success. */
  remove(id: string): Promise<void>;
  /** Containers carrying the label `key` (optionally `key=value`). */
  listByLabel(label: string): Promise<ContainerInfo[]>;
  listImages(): Promise<ImageInfo[]>;
  /** undefined when the engine does not have the image. */
  inspectImage(ref: string): Promise<ImageDetails | undefined>;
  /** Pulls from the image's registry; E_NOT_FOUND when no registry has it. */
  pull(ref: string): Promise<void>;
  /**
   * The image as the engine exports it (`docker save`: a tar of its config, layers and tags), read from
   * the engine as the stream is read. E_NOT_FOUND when the engine lacks it.
   */
  saveImage(ref: string): Promise<ReadableStream<Uint8Array>>;
  /**
   * Loads an archive `saveImage` made (`docker load`), streamed to the engine as it is read (a file, as
   * `Bun.file(path)`, is sent by the kernel): what it
   * loaded, each a `name:tag` or, for an untagged image, its id. E_INVALID when the engine refuses the
   * archive (not a tar, truncated, a layer that does not match its digest).
   */
  loadImage(archive: ReadableStream<Uint8Array> | Blob): Promise<string[]>;
  /** Removes a tag (the image with it once no tag is left); one already gone is success; one in use E_CONFLICT. */
  removeImage(ref: string): Promise<void>;
  /** Creates a bridge network of that name with these labels unless it exists (several callers may race). */
  ensureNetwork(name: string, labels: Record<string, string>): Promise<void>;
  /** Removes a network; one already gone is success; one still in use is left (false). */
  removeNetwork(name: string): Promise<boolean>;
  /** Networks carrying the label `key` (optionally `key=value`). */
  listNetworks(label: string): Promise<NetworkInfo[]>;
  /** Bytes each container with the label has written to its own file system (the engine's SizeRw). */
  diskUsage(label: string): Promise<Map<string, number>>;
  /** Whether creates carry a writable-layer quota: undefined until a create with diskMb has told. */
  diskQuota(): boolean | undefined;
  /** Why the engine refused the quota ("" while it has not). */
  diskQuotaRefusal(): string;
  /**
   * The machines behind an engine that places containers on a cluster (config `engine: swarm`); absent on a
   * single engine. Cached briefly by the engine: offers and specs ask for it often.
   */
  cluster?(): Promise<ClusterInfo>;
}

/** One machine of a cluster engine. */
export interface ClusterMachine {
  id: string;
  hostname: string;
  /** Ready and active: placement may use it. */
  ready: boolean;
  manager: boolean;
  cpus: number;
  memoryMb: number;
  gpus: number;
  /** The machine's own engine address (its `p2prc.engine` label), when it has one. */
  engine?: string | undefined;
  /**
   * Whether its containers run with no-new-privileges, as seen in one of them (swarm: its dockerd's
   * `--no-new-privileges`); undefined until seen. A machine seen without it is not ready.
   */
  noNewPrivileges?: boolean | undefined;
}

/** What a cluster engine has behind it: totals over its ready machines, and each machine. */
export interface ClusterInfo {
  kind: "swarm";
  /** Ready machines (what the totals sum over). */
  machines: number;
  cpus: number;
  memoryMb: number;
  /** GPUs the cluster exposes as generic resources (kinds with "GPU" in their name). */
  gpus: number;
  nodes: ClusterMachine[];
}

export interface ImageDetails {
  id: string;
  tags: string[];
  /** Whether the image has its own CMD or ENTRYPOINT (imported images have neither). */
  hasDefaultCommand: boolean;
}
