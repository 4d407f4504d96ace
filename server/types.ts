import { z } from "zod";
import type { PortMapping, SshInfo } from "../config/index.ts";

const port = z.int().min(1).max(65535);

/** POST /v1/containers body. Unknown fields are rejected so typos do not pass silently. */
export const CreateContainerSchema = z.strictObject({
  image: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._\-/:@]*$/, "an image reference such as debian:bookworm-slim")
    .max(255)
    .optional(),
  command: z.array(z.string().max(65536)).min(1).max(256).optional(),
  env: z
    .record(
      z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "an environment variable name"),
      z.string().max(65536),
    )
    .refine((e) => Object.keys(e).length <= 128, "at most 128 variables")
    .optional(),
  /** Number of host ports to publish; each is mapped to the same port number inside the container. */
  ports: z.int().min(0).max(64).optional(),
  /** Container ports to publish on free host ports. */
  publish: z.array(port).max(64).optional(),
  cpus: z.number().min(0.01).max(1024).optional(),
  memoryMb: z.int().min(6).max(4194304).optional(),
  gpu: z.boolean().optional(),
  ttlSeconds: z.int().min(1).max(31536000).optional(),
  sshPublicKey: z
    .string()
    .max(16384)
    .regex(
      /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]+( [^\n\r]*)?\n?$/,
      "one OpenSSH public key line",
    )
    .optional(),
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, "1-63 letters, digits, '_', '.' or '-'")
    .optional(),
});
export type CreateContainerRequest = z.infer<typeof CreateContainerSchema>;

/** POST /v1/containers/:id/exec body. */
export const ExecSchema = z.strictObject({
  command: z.array(z.string().max(65536)).min(1).max(256),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/), z.string().max(65536)).optional(),
  workingDir: z.string().startsWith("/").max(4096).optional(),
  timeoutSeconds: z.int().min(1).max(3600).optional(),
});
export type ExecRequest = z.infer<typeof ExecSchema>;

/** A path inside a container: absolute, no NUL, no `..` segment. */
export const ContainerPathSchema = z
  .string()
  .min(1)
  .max(4096)
  .startsWith("/", "an absolute path")
  .refine((p) => !p.includes("\0"), "no NUL byte")
  .refine((p) => !p.split("/").includes(".."), "no '..' segment");

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
}
