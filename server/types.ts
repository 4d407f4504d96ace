import { type z, zod } from "../core/index.ts";
import type { PortMapping, SshInfo } from "../store/index.ts";
import type { ClusterInfo, ClusterMachine } from "./engine/index.ts";
import { parseImageRef } from "./images.ts";

// The request schemas, built when the server module loads (the routes use them at once).
function build() {
  const z = zod();
  // The engine refuses (500) a NUL byte in an argument or an environment value: a 400 here instead.
  const noNul = z.refine((v: unknown) => !String(v).includes("\0"), "no NUL byte");
  const port = z.int().check(z.minimum(1), z.maximum(65535));

  /** POST /v1/containers body. Unknown fields are rejected so typos do not pass silently. */
  const CreateContainerSchema = z.strictObject({
    image: z.optional(
      z.string().check(
        z.maxLength(512),
        z.refine(
          (ref) => typeof parseImageRef(ref) !== "string",
          "an image reference such as debian:bookworm-slim or registry.example.com/team/app:1 (Docker's grammar)",
        ),
      ),
    ),
    command: z.optional(
      z.array(z.string().check(z.maxLength(65536), noNul)).check(z.minLength(1), z.maxLength(256)),
    ),
    env: z.optional(
      z
        .record(
          z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "an environment variable name")),
          z.string().check(z.maxLength(65536), noNul),
        )
        .check(z.refine((e) => Object.keys(e).length <= 128, "at most 128 variables")),
    ),
    /** Number of host ports to publish; each is mapped to the same port number inside the container. */
    ports: z.optional(z.int().check(z.minimum(0), z.maximum(64))),
    /** Container ports to publish on free host ports. */
    publish: z.optional(z.array(port).check(z.maxLength(64))),
    cpus: z.optional(z.number().check(z.minimum(0.01), z.maximum(1024))),
    memoryMb: z.optional(z.int().check(z.minimum(6), z.maximum(4194304))),
    gpu: z.optional(z.boolean()),
    ttlSeconds: z.optional(z.int().check(z.minimum(1), z.maximum(31536000))),
    sshPublicKey: z.optional(
      z
        .string()
        .check(
          z.maxLength(16384),
          z.regex(
            /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]+( [^\n\r]*)?\n?$/,
            "one OpenSSH public key line",
          ),
        ),
    ),
    name: z.optional(
      z.string().check(z.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, "1-63 letters, digits, '_', '.' or '-'")),
    ),
  });

  /** POST /v1/containers/:id/exec body. */
  const ExecSchema = z.strictObject({
    command: z.array(z.string().check(z.maxLength(65536), noNul)).check(z.minLength(1), z.maxLength(256)),
    env: z.optional(
      z.record(
        z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/)),
        z.string().check(z.maxLength(65536), noNul),
      ),
    ),
    workingDir: z.optional(z.string().check(z.startsWith("/"), z.maxLength(4096))),
    timeoutSeconds: z.optional(z.int().check(z.minimum(1), z.maximum(3600))),
  });

  /** POST /v1/containers/:id/exec/sessions body: an interactive exec (`p2prc exec -i/-t`). */
  const ExecSessionSchema = z.strictObject({
    command: ExecSchema.shape.command,
    env: ExecSchema.shape.env,
    workingDir: ExecSchema.shape.workingDir,
    tty: z.optional(z.boolean()),
    cols: z.optional(z.int().check(z.minimum(1), z.maximum(10_000))),
    rows: z.optional(z.int().check(z.minimum(1), z.maximum(10_000))),
  });

  /** POST /v1/exec/:session/resize body. */
  const ResizeSchema = z.strictObject({
    cols: z.int().check(z.minimum(1), z.maximum(10_000)),
    rows: z.int().check(z.minimum(1), z.maximum(10_000)),
  });
  const digest = z.string().check(z.regex(/^[0-9a-f]{64}$/, "a SHA-256 in lower-case hex"));

  /** POST /v1/containers/:id/tasks body: one batch task, in a fresh working directory with its inputs. */
  const TaskSchema = z.strictObject({
    command: ExecSchema.shape.command,
    env: ExecSchema.shape.env,
    timeoutSeconds: ExecSchema.shape.timeoutSeconds,
    /** Files from the node's input cache (uploaded by the caller), linked into the directory by name. */
    inputs: z.optional(
      z
        .array(
          z.strictObject({
            name: z.string().check(
              z.minLength(1),
              z.maxLength(100),
              z.refine(
                (n) => !/[/\0]/.test(n) && n !== "." && n !== ".." && Buffer.byteLength(n) <= 100,
                "a file name of at most 100 bytes (no '/', not . or ..)",
              ),
            ),
            digest,
          }),
        )
        .check(z.maxLength(256)),
    ),
    /**
     * Files or directories to send back in the reply (relative to the task's directory, or absolute), as
     * tars up to a total cap; a node without this field refuses it (its schema is strict).
     */
    outputs: z.optional(
      z
        .array(
          z.string().check(
            z.minLength(1),
            z.maxLength(4096),
            z.refine((p) => !p.includes("\0"), "no NUL byte"),
            z.refine((p) => !p.split("/").includes(".."), "no '..' segment"),
          ),
        )
        .check(z.maxLength(64)),
    ),
  });

  /** POST /v1/inputs/check body: which of these the caller has not uploaded to this node. */
  const InputsCheckSchema = z.strictObject({ digests: z.array(digest).check(z.maxLength(256)) });

  /** POST /v1/containers/:id/lease body: the lease now ends this many seconds from now. */
  const LeaseSchema = z.strictObject({ ttlSeconds: z.int().check(z.minimum(1), z.maximum(31536000)) });

  /** POST /v1/containers/:id/stop body (optional): seconds between SIGTERM and SIGKILL. */
  const StopSchema = z.strictObject({
    timeoutSeconds: z.optional(z.int().check(z.minimum(0), z.maximum(20))),
  });

  /** A path inside a container: absolute, no NUL, no `..` segment. */
  const ContainerPathSchema = z.string().check(
    z.minLength(1),
    z.maxLength(4096),
    z.startsWith("/", "an absolute path"),
    z.refine((p) => !p.includes("\0"), "no NUL byte"),
    z.refine((p) => !p.split("/").includes(".."), "no '..' segment"),
    // the engine resolves a path one segment at a time and fails (500, "too many links") past 255
    z.refine((p) => p.split("/").length <= MAX_PATH_SEGMENTS + 1, `at most ${MAX_PATH_SEGMENTS} segments`),
  );

  /** Query of GET /v1/containers/:id/logs, as strings (the route turns them into numbers). */
  const LogsQuerySchema = {
    tail: z.string().check(z.regex(/^(all|\d{1,7})$/, '"all" or a number of lines from 0 to 9999999')),
    /** Seconds since the epoch, or an RFC 3339 time. */
    since: z
      .string()
      .check(
        z.refine(
          (s) => /^\d{1,12}$/.test(s) || (/^\d{4}-\d\d-\d\dT/.test(s) && Number.isFinite(Date.parse(s))),
          "seconds since the epoch or an RFC 3339 time",
        ),
      ),
    maxBytes: z
      .string()
      .check(
        z.refine(
          (s) => /^\d{1,10}$/.test(s) && Number(s) >= 1 && Number(s) <= LOGS_MAX_BYTES,
          `a number of bytes from 1 to ${LOGS_MAX_BYTES}`,
        ),
      ),
  };
  return {
    CreateContainerSchema,
    ExecSchema,
    ExecSessionSchema,
    ResizeSchema,
    TaskSchema,
    InputsCheckSchema,
    DigestSchema: digest,
    LeaseSchema,
    StopSchema,
    ContainerPathSchema,
    LogsQuerySchema,
  };
}

/** The most segments a container path may have (`/a/b` has two). */
export const MAX_PATH_SEGMENTS = 128;

/** Bytes a logs answer without follow holds at most unless `maxBytes` says otherwise. */
export const LOGS_DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
/** The most `maxBytes` may ask for. */
export const LOGS_MAX_BYTES = 1024 * 1024 * 1024;

export const {
  CreateContainerSchema,
  ExecSchema,
  ExecSessionSchema,
  ResizeSchema,
  TaskSchema,
  InputsCheckSchema,
  DigestSchema,
  LeaseSchema,
  StopSchema,
  ContainerPathSchema,
  LogsQuerySchema,
} = build();
export type CreateContainerRequest = z.infer<typeof CreateContainerSchema>;
export type ExecRequest = z.infer<typeof ExecSchema>;
export type ExecSessionRequest = z.infer<typeof ExecSessionSchema>;
export type TaskRequest = z.infer<typeof TaskSchema>;
export type LeaseRequest = z.infer<typeof LeaseSchema>;
export type StopRequest = z.infer<typeof StopSchema>;

/** A container as the API returns it. */
export interface ContainerView {
  id: string;
  name: string;
  image: string;
  owner: string;
  state: string;
  running: boolean;
  exitCode?: number | undefined;
  createdAt: string;
  expiresAt: string;
  cpus: number;
  memoryMb: number;
  gpu: boolean;
  ports: PortMapping[];
  ssh?: SshInfo | undefined;
}

/** A GPU as `nvidia-smi` reports it. */
export interface GpuInfo {
  index: number;
  name: string;
  memoryTotalMb: number;
  memoryUsedMb: number;
  utilizationPercent: number;
  driverVersion: string;
}

/** Finds the host's GPUs; injected by the composition root (it runs nvidia-smi). */
export type GpuProbe = () => Promise<GpuInfo[]>;

/** GET /v1/specs */
export interface Specs {
  nodeId: string;
  name: string;
  hostname: string;
  platform: string;
  arch: string;
  cpu: { model: string; cores: number };
  memory: { totalMb: number; freeMb: number };
  disk: { totalGb: number; freeGb: number };
  gpus: GpuInfo[];
  load: number[];
  engine: { reachable: boolean; version?: string };
  tasks: { running: number; total: number; max: number };
  free: {
    containers: number;
    cpus: number;
    memoryMb: number;
    maxCpusPerContainer: number;
    maxMemoryMbPerContainer: number;
    gpu: boolean;
  };
  /**
   * With config `engine: swarm`: the swarm behind this node. `free` is then over its ready machines (their
   * sum), not this host; `cpu` and `memory` stay this host's.
   */
  cluster?: Omit<ClusterInfo, "nodes"> & { nodes: Omit<ClusterMachine, "id" | "engine">[] };
}
