/**
 * core: what every module stands on — the shared error type, the clock, the logger, node identity
 * (Ed25519), request signing and its nonce cache, the peer client (the one way to call a node: signed,
 * timed out, errors coded; its transport takes a node), TLS certificates and pinning, addresses
 * (`host:port`, IPv6 in brackets, node URLs), canonical JSON, the version, and zod: `zod()` (zod/mini with English
 * messages, loaded on first call) builds every schema, `z` names its types.
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
export type { FramePiece } from "./frames.ts";
export { FrameDemuxer } from "./frames.ts";
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
export type { Logger, LogLevel } from "./logger.ts";
export { createLogger, memoryLogger } from "./logger.ts";
export type { CollectorPacing } from "./memory.ts";
export { pacedCollector } from "./memory.ts";
export type { NonceUse } from "./nonces.ts";
export { NonceCache } from "./nonces.ts";
export type { NodeRef, NodeTransport, PeerClientOptions, PeerRequest } from "./peer-client.ts";
export { fetchTransport, nodeOfUrl, PeerClient } from "./peer-client.ts";
export type { SignedTaskFields } from "./runtime.ts";
export { RUNTIME_BIN, RUNTIME_IMAGE, RUNTIME_KEEP_ALIVE, taskReplyText } from "./runtime.ts";
export type { Z } from "./schema.ts";
export { zod } from "./schema.ts";
export { shellQuote } from "./shell.ts";
export type { RequestAuthResult, SignedHeaders } from "./signing.ts";
export {
  AUTH_HEADERS,
  canonicalRequest,
  MAC_V1,
  macRequestHash,
  parseSignedHeaders,
  STREAMED_BODY_SHA256,
  sha256Hex,
  sha256OfFile,
  signRequest,
  signRequestHash,
  verifyMacHeaders,
  verifyRequest,
  verifySignedHeaders,
} from "./signing.ts";
export type { TlsMaterial } from "./tls.ts";
export { certSha256, loadOrCreateTlsCertificate, pinnedTls, probeCertificate } from "./tls.ts";
export { VERSION } from "./version.ts";
export type * as z from "./zod.ts";
