import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { canonicalJson, DEFAULT_PORT, P2prcError } from "../core/index.ts";
import { CONFIG_FIELDS, type Config, type ConfigField, type ConfigSource, fieldSchema } from "./types.ts";

/** The embedded defaults; `machineName` defaults to the host name. */
export function defaultConfig(hostname: string): Config {
  const name = hostname.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 64) || "p2prc-node";
  return {
    machineName: name,
    serverHost: "0.0.0.0",
    serverPort: DEFAULT_PORT,
    publishHost: "",
    advertiseAddress: "",
    bootstrap: [],
    behindNat: "auto",
    relay: false,
    relayPort: 8089,
    relayMaxTunnels: 256,
    relayMaxStreamsPerMember: 256,
    relayIdleTimeoutMs: 120_000,
    relayMaxPublicPorts: 0,
    relayPublicPortMin: 20_000,
    relayPublicPortMax: 20_999,
    relayHttpPort: 0,
    relays: [],
    defaultImage: "debian:bookworm-slim",
    allowedImages: [],
    privateRegistries: [],
    maxContainers: 10,
    maxCpusPerContainer: 2,
    maxMemoryMbPerContainer: 2048,
    defaultCpus: 1,
    defaultMemoryMb: 512,
    pidsLimit: 512,
    defaultTtlSeconds: 3600,
    maxTtlSeconds: 7 * 24 * 3600,
    maxDiskMbPerContainer: 4096,
    containerLogMaxMb: 10,
    containerLogMaxFiles: 3,
    inputCacheMb: 2048,
    gossipIntervalMs: 1000,
    gossipFanout: 3,
    suspectTimeoutMs: 5000,
    maxPeers: 1000,
    maxUnverifiedPeers: 256,
    maxUnverifiedPerPeer: 32,
    probeConcurrency: 8,
    gossipMaxRecords: 100,
    dataDir: "",
    dockerHost: "",
    engine: "docker",
    swarmPorts: "auto",
    engineTimeoutMs: 10_000,
    memberMaxContainers: 10,
    memberMaxCpus: 16,
    memberMaxMemoryMb: 16384,
    memberRequestsPerMinute: 6000,
    imagePushes: true,
    futures: true,
    memberImageQuotaMb: 4096,
    trusted: [],
    openNetwork: false,
    tls: true,
    metricsToken: "",
    requestSkewSeconds: 30,
    logLevel: "info",
  };
}

/** `serverPort` → `P2PRC_SERVER_PORT`. */
export function envName(field: string): string {
  return `P2PRC_${field.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()}`;
}

export interface ResolveInputs {
  hostname: string;
  /** Parsed config.json, or undefined when there is none. */
  file?: unknown;
  /** Path shown in errors about the file. */
  filePath?: string;
  env: Record<string, string | undefined>;
  /** Values from CLI flags (already typed). */
  flags?: Partial<Config>;
}

export interface ResolvedConfig {
  config: Config;
  sources: Record<ConfigField, ConfigSource>;
}

const FIELD_NAMES = Object.keys(CONFIG_FIELDS) as ConfigField[];

/** Turns an env string into the field's type where it plainly is one; otherwise leaves it for zod to reject. */
function coerceEnv(field: ConfigField, raw: string, defaults: Config): unknown {
  const sample = defaults[field];
  const text = raw.trim();
  if (Array.isArray(sample))
    return text === ""
      ? []
      : text
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean);
  if (typeof sample === "number") return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : raw;
  if (typeof sample === "boolean") {
    if (/^(true|1|yes|on)$/i.test(text)) return true;
    if (/^(false|0|no|off)$/i.test(text)) return false;
    return raw;
  }
  return raw;
}

function describeSource(field: ConfigField, source: ConfigSource, filePath?: string): string {
  switch (source) {
    case "env":
      return `env ${envName(field)}`;
    case "file":
      return `file ${filePath ?? "config.json"}`;
    case "flag":
      return "command-line flag";
    default:
      return "default";
  }
}

/**
 * The one pure config loader: defaults < config file < P2PRC_* env < CLI flags.
 * Throws P2prcError(E_CONFIG) naming the field, the value, its source and what is allowed.
 */
export function resolveConfig(inputs: ResolveInputs): ResolvedConfig {
  const defaults = defaultConfig(inputs.hostname);
  const merged: Record<string, unknown> = { ...defaults };
  const sources = Object.fromEntries(FIELD_NAMES.map((f) => [f, "default"])) as Record<
    ConfigField,
    ConfigSource
  >;

  if (inputs.file !== undefined) {
    const file = inputs.file;
    if (file === null || typeof file !== "object" || Array.isArray(file)) {
      throw new P2prcError(
        "E_CONFIG",
        `config file ${inputs.filePath ?? "config.json"} must hold a JSON object`,
      );
    }
    for (const [key, value] of Object.entries(file)) {
      if (!(key in CONFIG_FIELDS)) {
        throw new P2prcError(
          "E_CONFIG",
          `unknown config field "${key}" in file ${inputs.filePath ?? "config.json"}`,
          { field: key, hint: `known fields: ${FIELD_NAMES.join(", ")}` },
        );
      }
      merged[key] = value;
      sources[key as ConfigField] = "file";
    }
  }
  for (const field of FIELD_NAMES) {
    const raw = inputs.env[envName(field)];
    if (raw === undefined) continue;
    merged[field] = coerceEnv(field, raw, defaults);
    sources[field] = "env";
  }
  for (const [key, value] of Object.entries(inputs.flags ?? {})) {
    if (value === undefined) continue;
    merged[key] = value;
    sources[key as ConfigField] = "flag";
  }

  // Defaults are valid by construction: only values that differ from them are checked, so a config
  // that holds defaults costs no validation (and does not load zod).
  for (const f of FIELD_NAMES) {
    if (sources[f] === "default") continue;
    if (canonicalJson(merged[f]) === canonicalJson(defaults[f])) continue;
    const parsed = fieldSchema(f).safeParse(merged[f]);
    if (!parsed.success) {
      const value = JSON.stringify(merged[f]);
      throw new P2prcError(
        "E_CONFIG",
        `invalid config field ${f} = ${value} (from ${describeSource(f, sources[f], inputs.filePath)}): expected ${CONFIG_FIELDS[f].allowed}`,
        { field: f },
      );
    }
  }
  return { config: merged as Config, sources };
}

/** Reads and parses config.json; undefined when absent. Bad JSON is a one-line E_CONFIG error. */
export function readConfigFile(path: string): unknown {
  if (!existsSync(path)) return undefined;
  const text = readFileSync(path, "utf8");
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new P2prcError("E_CONFIG", `config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Writes config.json atomically (temp file + rename), 0600 since it may name private paths. */
export function writeConfigFile(path: string, values: Record<string, unknown>): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(values, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/**
 * `--dc`: the file's own values kept, every missing field filled with its default. Env and flags are
 * not written. Validates the result first so a bad file is reported, not overwritten.
 */
export function completeConfigFile(path: string, hostname: string): { config: Config; added: string[] } {
  const existing = readConfigFile(path);
  const { config } = resolveConfig({ hostname, file: existing ?? {}, filePath: path, env: {} });
  const fileValues = (existing ?? {}) as Record<string, unknown>;
  const added = FIELD_NAMES.filter((f) => !(f in fileValues));
  const out: Record<string, unknown> = {};
  for (const f of FIELD_NAMES) out[f] = f in fileValues ? fileValues[f] : config[f];
  if (added.length > 0 || existing === undefined) writeConfigFile(path, out);
  return { config, added };
}
