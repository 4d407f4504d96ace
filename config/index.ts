/**
 * config: the base every module stands on — the node's config file and its loader, node identity
 * (Ed25519), the SQLite state store, the clock, the logger, the shared error type, and zod: `zod()`
 * (zod/mini with English messages, loaded on first call) builds every schema, `z` names its types;
 * addresses (`host:port`, IPv6 in brackets) are parsed and formatted here.
 * Imports nothing of p2prc's own.
 */
export type { Address } from "./address.ts";
export {
  DEFAULT_PORT,
  formatAddress,
  formatHost,
  nodeUrl,
  parseAddress,
  tryParseAddress,
  unbracket,
} from "./address.ts";
export { canonicalJson } from "./canonical-json.ts";
export type { Cancel, Clock } from "./clock.ts";
export { ManualClock, systemClock } from "./clock.ts";
export type { ErrorCode, P2prcErrorOptions } from "./errors.ts";
export { isP2prcError, P2prcError, wrapError } from "./errors.ts";
export type { Identity } from "./identity.ts";
export {
  generateIdentity,
  loadOrCreateIdentity,
  NODE_ID_RE,
  publicKeyOfNodeId,
  readNodeId,
  verifyJson,
  verifySignature,
} from "./identity.ts";
export type { ResolvedConfig, ResolveInputs } from "./load.ts";
export {
  completeConfigFile,
  defaultConfig,
  envName,
  readConfigFile,
  resolveConfig,
  writeConfigFile,
} from "./load.ts";
export type { Logger, LogLevel } from "./logger.ts";
export { createLogger, memoryLogger } from "./logger.ts";
export type { HomeInputs, NodePaths } from "./paths.ts";
export { nodePaths, resolveHome } from "./paths.ts";
export type { RequestAuthResult, SignedHeaders } from "./request-auth.ts";
export {
  AUTH_HEADERS,
  canonicalRequest,
  NonceCache,
  parseSignedHeaders,
  sha256Hex,
  signedFetch,
  signRequest,
  signRequestHash,
  verifyRequest,
  verifySignedHeaders,
} from "./request-auth.ts";
export type {
  BatchRow,
  BatchTaskRow,
  BatchTaskState,
  ClientStore,
  ClusterRow,
  ClusterStore,
  ContainerRecord,
  ContainerStore,
  MetaStore,
  PeerRow,
  PeerState,
  PeerStore,
  PortMapping,
  SeedRow,
  SshInfo,
  Store,
  TrackedContainer,
} from "./store/index.ts";
export { openStore } from "./store/index.ts";
export type { TlsMaterial } from "./tls.ts";
export { certSha256, loadOrCreateTlsCertificate, pinnedTls, probeCertificate } from "./tls.ts";
export type { Config, ConfigField, ConfigSource } from "./types.ts";
export { CONFIG_FIELDS, configSchema, fieldSchema, zod } from "./types.ts";
export { VERSION } from "./version.ts";
export type * as z from "./zod.ts";
