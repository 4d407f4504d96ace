import { existsSync } from "node:fs";
import { homedir, hostname } from "node:os";
import {
  type Config,
  type ConfigField,
  type ConfigSource,
  completeConfigFile,
  type NodePaths,
  nodePaths,
  readConfigFile,
  resolveConfig,
  resolveHome,
  writeConfigFile,
} from "../config/index.ts";
import {
  type Clock,
  createLogger,
  type Identity,
  type Logger,
  loadOrCreateIdentity,
  loadOrCreateTlsCertificate,
  readNodeId,
  systemClock,
  type TlsMaterial,
} from "../core/index.ts";
import { openStore, type Store } from "../store/index.ts";

/** How to find and configure a node; every field is optional and defaults to the process's own. */
export interface NodeOptions {
  /** Home directory (`--config-dir`); otherwise $P2PRC, $XDG_CONFIG_HOME/p2prc, ~/.config/p2prc. */
  configDir?: string | undefined;
  /** Environment to read P2PRC_* overrides from (default: process.env). */
  env?: Record<string, string | undefined>;
  /** Highest-precedence config values (CLI flags). */
  overrides?: Partial<Config>;
  logger?: Logger;
  clock?: Clock;
  /**
   * How to run this p2prc (the binary, or bun and its entry script), for the commands it prints that
   * run itself: the ssh `ProxyCommand` of a container on a relayed node. Default: this process's own.
   */
  command?: string[] | undefined;
}

/** The loaded config of a node home, without touching the disk beyond reading. */
export interface LoadedConfig {
  paths: NodePaths;
  config: Config;
  sources: Record<ConfigField, ConfigSource>;
  /** The Docker/Podman socket this node uses. */
  dockerHost: string;
}

/** Reads config (defaults < file < env < overrides) of the node home; writes nothing. */
export function loadConfig(options: NodeOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const home = resolveHome({ configDir: options.configDir, env, userHome: homedir() });
  const configFile = nodePaths(home).configFile;
  const file = readConfigFile(configFile);
  const { config, sources } = resolveConfig({
    hostname: hostname(),
    file,
    filePath: configFile,
    env,
    flags: options.overrides,
  });
  const dockerHost = config.dockerHost || env.DOCKER_HOST || "unix:///var/run/docker.sock";
  return { paths: nodePaths(home, config.dataDir), config, sources, dockerHost };
}

/** A node home that is ready to use: config, identity, and a way to open the state store. */
export interface NodeContext extends LoadedConfig {
  identity: Identity;
  logger: Logger;
  clock: Clock;
  /** Opens state.db (WAL, migrated). The caller closes it. */
  openStore(): Store;
}

/** Meta key: the URL the running server answers at (for the CLI on the same machine). */
export const SERVER_URL_META = "server.url";

/**
 * This node's TLS certificate and key (`identity/tls.crt`, `tls.key`), created on first use: what the
 * server serves and what peers pin from its signed record.
 */
export async function tlsMaterial(ctx: NodeContext): Promise<TlsMaterial> {
  return loadOrCreateTlsCertificate(ctx.paths.identityDir, `p2prc-${ctx.identity.nodeId.slice(0, 16)}`);
}

/**
 * Loads or creates a node home, like P2PRC's `Init`: writes config.json with defaults when there is
 * none, creates the Ed25519 identity on first use. An existing config file is never rewritten here.
 */
export function init(options: NodeOptions = {}): NodeContext {
  const loaded = loadConfig(options);
  if (!existsSync(loaded.paths.configFile)) {
    completeConfigFile(loaded.paths.configFile, hostname());
  }
  const identity = loadOrCreateIdentity(loaded.paths.privateKey, loaded.paths.publicKey);
  const logger = options.logger ?? createLogger(loaded.config.logLevel);
  return {
    ...loaded,
    identity,
    logger,
    clock: options.clock ?? systemClock,
    openStore: () => openStore(loaded.paths.stateDb),
  };
}

/** Result of `--dc`. */
export interface DefaultConfigResult {
  home: string;
  configFile: string;
  nodeId: string;
  stateDb: string;
  /** Fields that were missing from config.json and got their default. */
  added: string[];
  /** SHA-256 of the node's TLS certificate (when `tls` is on): what peers pin. */
  tlsFingerprint?: string;
}

/**
 * `p2prc --dc`: makes the home complete — config.json with every field (edited values kept), the node
 * key pair (kept if present), and state.db migrated. Idempotent.
 */
export async function setDefaultConfig(options: NodeOptions = {}): Promise<DefaultConfigResult> {
  const env = options.env ?? process.env;
  const home = resolveHome({ configDir: options.configDir, env, userHome: homedir() });
  loadConfig(options); // a bad env or flag value fails before anything is written
  const { added } = completeConfigFile(nodePaths(home).configFile, hostname());
  // The files go where the effective config (env and flags included) says, as every other command sees them.
  const loaded = loadConfig(options);
  const full = loaded.paths;
  const identity = loadOrCreateIdentity(full.privateKey, full.publicKey);
  // the TLS certificate too: made here, the server never needs the X.509 library (nor its memory)
  const tls = loaded.config.tls
    ? await loadOrCreateTlsCertificate(full.identityDir, `p2prc-${identity.nodeId.slice(0, 16)}`)
    : undefined;
  const store = openStore(full.stateDb);
  store.close();
  return {
    home,
    configFile: full.configFile,
    nodeId: identity.nodeId,
    stateDb: full.stateDb,
    added,
    ...(tls ? { tlsFingerprint: tls.sha256 } : {}),
  };
}

/** `--vc`: the effective config plus where it lives and the node id (null before the first `--dc`/start). */
export function viewConfig(options: NodeOptions = {}) {
  const loaded = loadConfig(options);
  // The public key file names the id; the private key is parsed only when that file is missing.
  const nodeId = existsSync(loaded.paths.privateKey)
    ? (readNodeId(loaded.paths.publicKey) ??
      loadOrCreateIdentity(loaded.paths.privateKey, loaded.paths.publicKey).nodeId)
    : null;
  return {
    ...loaded.config,
    nodeId,
    home: loaded.paths.home,
    configFile: loaded.paths.configFile,
    stateDb: loaded.paths.stateDb,
    effectiveDockerHost: loaded.dockerHost,
  };
}

/** Sets one field in config.json (keeping the rest). Validates before writing. */
export function setConfigValue(options: NodeOptions, field: ConfigField, value: unknown): Config {
  const loaded = loadConfig(options);
  const current = (readConfigFile(loaded.paths.configFile) ?? {}) as Record<string, unknown>;
  const next = { ...current, [field]: value };
  const { config } = resolveConfig({
    hostname: hostname(),
    file: next,
    filePath: loaded.paths.configFile,
    env: {},
  });
  writeConfigFile(loaded.paths.configFile, next);
  return config;
}
