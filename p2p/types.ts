import { z } from "zod";

const nodeId = z.string().regex(/^[0-9a-f]{64}$/, "a node id (64 hex characters)");
const signature = z.string().regex(/^[A-Za-z0-9+/]{86}==$/, "an Ed25519 signature (base64)");
const host = z.string().regex(/^[A-Za-z0-9.:-]{1,253}$/, "an IP address or host name");

export const AddressSchema = z.strictObject({ host, port: z.int().min(1).max(65535) });
export type Address = z.infer<typeof AddressSchema>;

/** What a node offers, summarised for placement. */
export const OfferSchema = z.strictObject({
  cpus: z.number().min(0).max(100000),
  memoryMb: z.int().min(0).max(1e9),
  gpus: z.int().min(0).max(1024),
  freeContainers: z.int().min(0).max(100000),
  maxCpusPerContainer: z.number().min(0).max(1024),
  maxMemoryMbPerContainer: z.int().min(0).max(1e9),
});
export type Offer = z.infer<typeof OfferSchema>;

/** One node's entry in the IP table, written and signed by that node. The id is its public key. */
export const NodeRecordSchema = z.strictObject({
  id: nodeId,
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
  addresses: z.array(AddressSchema).max(16),
  nat: z.boolean(),
  reach: z.enum(["direct", "relay"]),
  /** Monotonic per node; a record older than the one held is rejected. */
  version: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
  metadata: z.string().max(1024),
  offer: OfferSchema,
  issuedAt: z.int().min(0),
});
export type NodeRecord = z.infer<typeof NodeRecordSchema>;

export const SignedRecordSchema = z.strictObject({ record: NodeRecordSchema, signature });
export type SignedRecord = z.infer<typeof SignedRecordSchema>;

/** "Node `id` at `version` is dead", signed by the node that found it unreachable. */
export const DeathNoticeSchema = z.strictObject({
  id: nodeId,
  version: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
  reporter: nodeId,
  at: z.int().min(0),
  signature,
});
export type DeathNotice = z.infer<typeof DeathNoticeSchema>;

/** Digest entry: [id, version, dead]. */
export const DigestSchema = z.array(z.tuple([nodeId, z.int().min(1), z.boolean()])).max(100000);
export type Digest = z.infer<typeof DigestSchema>;

/** POST /v1/p2p/exchange */
export const ExchangeRequestSchema = z.strictObject({
  from: SignedRecordSchema,
  /** SHA-256 of the sender's digest; equal hashes end the exchange at once. */
  hash: z.string().regex(/^[0-9a-f]{64}$/),
});
export type ExchangeRequest = z.infer<typeof ExchangeRequestSchema>;

export interface ExchangeResponse {
  from: SignedRecord;
  /** The address the responder saw the request come from. */
  observed: string | undefined;
  same: boolean;
  digest?: Digest;
}

/** POST /v1/p2p/sync */
export const SyncRequestSchema = z.strictObject({
  from: SignedRecordSchema,
  records: z.array(SignedRecordSchema).max(5000),
  deaths: z.array(DeathNoticeSchema).max(5000),
  want: z.array(nodeId).max(5000),
});
export type SyncRequest = z.infer<typeof SyncRequestSchema>;

export interface SyncResponse {
  records: SignedRecord[];
  deaths: DeathNotice[];
}

/** One row of `p2prc --ls --json`. */
export interface PeerView {
  id: string;
  name: string;
  address: string | undefined;
  port: number | undefined;
  nat: boolean;
  latencyMs: number | undefined;
  lastSeen: string;
  metadata: string;
  state: "alive" | "suspect";
  self: boolean;
  offer: Offer;
}
