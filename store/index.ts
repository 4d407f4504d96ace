/** The state store: one SQLite file (WAL) behind domain verbs. */

export type {
  BatchRow,
  BatchTaskRow,
  BatchTaskState,
  ClaimedPort,
  ClientStore,
  TrackedContainer,
} from "./client.ts";
export type { ClusterRow, ClusterStore } from "./clusters.ts";
export type { ImageStore, PushedImageRow } from "./images.ts";
export type { PeerRow, PeerState, PeerStore, SeedRow } from "./peers.ts";
export type { ContainerStore, MetaStore, Store } from "./store.ts";
export { openStore } from "./store.ts";
export type { ContainerRecord, PortMapping, SshInfo } from "./types.ts";
