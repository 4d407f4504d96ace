import { P2prcError, type z, zod } from "../core/index.ts";

/** The manifest format this version of p2prc reads (`plugin.json`'s `format`). */
export const PLUGIN_FORMAT = "p2prc-plugin/1";

/** A plugin's name: its folder's name too. No `/`, no leading dot, so never a path of its own. */
export const PLUGIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A path inside a plugin's folder: relative, `/`-separated, no `.`/`..` segment, no NUL. */
export function isPluginPath(path: string): boolean {
  if (path === "" || path.length > 1024 || path.startsWith("/") || path.includes("\0")) return false;
  return path.split("/").every((seg) => seg !== "" && seg !== "." && seg !== "..");
}

function build() {
  const z = zod();
  const envName = z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "an environment variable name"));
  /** plugin.json. Unknown fields are refused, so a typo never passes silently. */
  const PluginManifestSchema = z.strictObject({
    format: z.enum([PLUGIN_FORMAT]),
    name: z
      .string()
      .check(z.regex(PLUGIN_NAME, "1-64 letters, digits, '.', '_' or '-', not starting with one of '._-'")),
    version: z
      .string()
      .check(z.regex(/^\d{1,9}\.\d{1,9}\.\d{1,9}([-+][0-9A-Za-z.-]{1,64})?$/, "a version such as 1.0.0")),
    description: z._default(z.string().check(z.maxLength(1024)), ""),
    /** How many of the container's published ports the plugin is handed. */
    ports: z._default(z.int().check(z.minimum(0), z.maximum(16)), 0),
    /** Options, passed to the entry script as environment variables (the user may set each). */
    options: z._default(
      z
        .record(
          envName,
          z.strictObject({
            default: z.optional(z.string().check(z.maxLength(4096))),
            description: z.optional(z.string().check(z.maxLength(512))),
          }),
        )
        .check(z.refine((o) => Object.keys(o).length <= 32, "at most 32 options")),
      {},
    ),
    /** The run is stopped after this many seconds. */
    timeoutSeconds: z._default(z.int().check(z.minimum(1), z.maximum(3600)), 300),
    /** The script run (by /bin/sh) inside the container, relative to the plugin's folder. */
    entry: z._default(
      z.string().check(z.refine(isPluginPath, "a relative path inside the plugin")),
      "run.sh",
    ),
  });
  return { PluginManifestSchema };
}

let schemas: ReturnType<typeof build> | undefined;
/** The schemas, built on first use. */
export function pluginSchemas() {
  schemas ??= build();
  return schemas;
}

/** plugin.json, as read (defaults filled in). */
export type PluginManifest = z.infer<ReturnType<typeof build>["PluginManifestSchema"]>;

/** One zod issue as `file: field: message`. */
export function schemaError(file: string, error: z.core.$ZodError): P2prcError {
  const issue = error.issues[0];
  const unknown = issue?.code === "unrecognized_keys" ? issue.keys[0] : undefined;
  const where = [...(issue?.path ?? []), ...(unknown ? [unknown] : [])].join(".") || "(top)";
  const message = unknown ? `unknown field "${unknown}"` : issue?.message;
  return new P2prcError("E_INVALID", `${file}: ${where}: ${message}`, { field: where });
}

/** An installed plugin p2prc can run. */
export interface PluginInfo {
  name: string;
  /** `p2prc`: plugin.json and an entry script, run inside the container; `p2prc-ansible`: P2PRC's layout. */
  kind: "p2prc" | "p2prc-ansible";
  version: string | undefined;
  description: string;
  ports: number;
  /** The folder it is installed in. */
  dir: string;
  /** plugin.json (kind `p2prc`). */
  manifest?: PluginManifest | undefined;
}

/** A folder under the plugins directory that is not a plugin p2prc can run, and why. */
export interface BrokenPlugin {
  name: string;
  dir: string;
  error: string;
}

/** One line of `--vp`: a plugin, or a broken folder (reported on its own, never failing the list). */
export type PluginEntry = ({ ok: true } & PluginInfo) | ({ ok: false } & BrokenPlugin);
