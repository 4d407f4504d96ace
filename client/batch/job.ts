import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { P2prcError, type z, zod } from "../../core/index.ts";

// Built when the client module loads.
function buildJobSchema() {
  const z = zod();
  const envName = z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "an environment variable name"));
  const scalar = z.union([z.string().check(z.maxLength(65536)), z.number(), z.boolean()]);
  const paths = z.optional(
    z.array(z.string().check(z.minLength(1), z.maxLength(4096))).check(z.maxLength(256)),
  );

  return z.strictObject({
    image: z.string().check(z.regex(/^[a-z0-9][a-z0-9._\-/:@]*$/, "an image reference"), z.maxLength(255)),
    command: z.array(z.string().check(z.maxLength(65536))).check(z.minLength(1), z.maxLength(256)),
    /** A count, or one parameter object per task (its keys become env variables). */
    tasks: z.union([
      z.int().check(z.minimum(1), z.maximum(100000)),
      z.array(z.record(envName, scalar)).check(z.minLength(1), z.maxLength(100000)),
    ]),
    env: z.optional(z.record(envName, z.string().check(z.maxLength(65536)))),
    /** Local files (relative to the job file) copied into each task's working directory. */
    inputs: paths,
    /** Paths in the container (relative to the task's working directory, or absolute) collected back. */
    outputs: paths,
    cpus: z.optional(z.number().check(z.minimum(0.01), z.maximum(1024))),
    memoryMb: z.optional(z.int().check(z.minimum(6), z.maximum(4194304))),
    gpu: z.optional(z.boolean()),
    /** Per task; nodes run one exec for at most an hour. */
    timeoutSeconds: z._default(z.int().check(z.minimum(1), z.maximum(3600)), 600),
    /** How often a task is rescheduled after its node died, became unreachable or timed out. */
    retries: z._default(z.int().check(z.minimum(0), z.maximum(100)), 2),
    /** Also retry tasks that failed by their own exit code. */
    retryOnFailure: z._default(z.boolean(), false),
    /** A new container for every task instead of a small warm pool per node. */
    freshContainer: z._default(z.boolean(), false),
    /** Most tasks at once on one node (never more than the node's free capacity). */
    maxPerNode: z._default(z.int().check(z.minimum(1), z.maximum(256)), 4),
  });
}

/** A batch job file (JSON or YAML). */
export const JobSchema = buildJobSchema();
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
