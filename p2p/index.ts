/**
 * p2p: the IP table of signed node records, bootstrap seeds, push-pull gossip, liveness and latency,
 * and the NAT relay (relay role, the agent behind a NAT, the caller's dial).
 */

export type { ClusterAcceptResult, ClusterBookDeps } from "./cluster.ts";
export { ClusterBook, clusterLabel, verifyCluster } from "./cluster.ts";
export type { GossipDeps, GossipRefusal, GossipStats } from "./gossip.ts";
export { GossipService, setNodeMetadata } from "./gossip.ts";
export type {
  DialbackRequest,
  DialbackResponse,
  NatMode,
  Reach,
  ReachDeps,
  ReachReport,
  ReachState,
} from "./reach.ts";
export { decideReach, dialbackCandidates, ReachService } from "./reach.ts";
export type {
  DialOptions,
  RelayAgentOptions,
  RelayAgentStats,
  RelayConnection,
  RelayEndpoint,
  RelayForwarder,
  RelayLimits,
  RelayServer,
  RelayServerOptions,
  RelayStats,
  RelayTransport,
  RelayTransportOptions,
  Sink,
} from "./relay/index.ts";
export {
  DEFAULT_RELAY_LIMITS,
  dialThroughRelay,
  noRelayNow,
  offeredRelays,
  openRelayForwarder,
  RelayAgent,
  relayedByRecords,
  relayFromRecords,
  relayTransport,
  startRelay,
} from "./relay/index.ts";
export type { P2pRoutesOptions } from "./routes.ts";
export { p2pRoutes } from "./routes.ts";
export type { MergeResult } from "./table.ts";
export { digestHash, PeerTable, verifyDeath, verifyRecord } from "./table.ts";
export type { PeerExpectation, PeerTransportOptions } from "./transport.ts";
export { PeerTransport } from "./transport.ts";
export type {
  Address,
  ClusterDigest,
  ClusterDocument,
  ClusterMember,
  DeathNotice,
  Digest,
  ExchangeRequest,
  ExchangeResponse,
  NodeRecord,
  Offer,
  PeerView,
  SignedCluster,
  SignedRecord,
  SyncRequest,
  SyncResponse,
} from "./types.ts";
export { p2pSchemas } from "./types.ts";
