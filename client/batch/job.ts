import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { z } from "zod";
import { P2prcError } from "../../config/index.ts";

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "an environment variable name");
const scalar = z.union([z.string().max(65536), z.number(), z.boolean()]);

/** A batch job file (JSON or YAML). */
export const JobSchema = z.strictObject({
  image: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._\-/:@]*$/, "an image reference")
    .max(255),
  command: z.array(z.string().max(65536)).min(1).max(256),
  /** A count, or one parameter object per task (its keys become env variables). */
  tasks: z.union([z.int().min(1).max(100000), z.array(z.record(envName, scalar)).min(1).max(100000)]),
  env: z.record(envName, z.string().max(65536)).optional(),
  /** Local files (relative to the job file) copied into each task's working directory. */
  inputs: z.array(z.string().min(1).max(4096)).max(256).optional(),
  /** Paths in the container (relative to the task's working directory, or absolute) collected back. */
  outputs: z.array(z.string().min(1).max(4096)).max(256).optional(),
  cpus: z.number().min(0.01).max(1024).optional(),
  memoryMb: z.int().min(6).max(4194304).optional(),
  gpu: z.boolean().optional(),
  /** Per task; nodes run one exec for at most an hour. */
  timeoutSeconds: z.int().min(1).max(3600).default(600),
  /** How often a task is rescheduled after its node died, became unreachable or timed out. */
  retries: z.int().min(0).max(100).default(2),
  /** Also retry tasks that failed by their own exit code. */
  retryOnFailure: z.boolean().default(false),
  /** A new container for every task instead of a small warm pool per node. */
  freshContainer: z.boolean().default(false),
  /** Most tasks at once on one node (never more than the node's free capacity). */
  maxPerNode: z.int().min(1).max(256).default(4),
});
export type Job = z.infer<typeof JobSchema>;

/** Reads and validates a job file; errors name the field. */
export function loadJob(path: string): { job: Job; text: string } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new P2prcError("E_INVALID", `cannot read job file ${path}: ${(err as Error).message}`, {
      field: "job",
    });
  }
  let raw: unknown;
  try {
    raw = [".yaml", ".yml"].includes(extname(path).toLowerCase()) ? Bun.YAML.parse(text) : JSON.parse(text);
  } catch (err) {
    throw new P2prcError("E_INVALID", `job file ${path} does not parse: ${(err as Error).message}`, {
      field: "job",
    });
  }
  const parsed = JobSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const unknown = issue?.code === "unrecognized_keys" ? issue.keys[0] : undefined;
    const where = [...(issue?.path ?? []), ...(unknown ? [unknown] : [])].join(".") || "(top)";
    const message = unknown ? `unknown field "${unknown}"` : issue?.message;
    throw new P2prcError("E_INVALID", `job file ${path}: ${where}: ${message}`, { field: where });
  }
  return { job: parsed.data, text };
}

/** Parameters of every task: `tasks: 3` gives three empty objects. */
export function taskParams(job: Job): Record<string, string>[] {
  const list = typeof job.tasks === "number" ? Array.from({ length: job.tasks }, () => ({})) : job.tasks;
  return list.map((p) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, String(v)])));
}
