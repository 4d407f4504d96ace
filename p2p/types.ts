import { type z, zod } from "../core/index.ts";

function build() {
  const z = zod();
  const nodeId = z.string().check(z.regex(/^[0-9a-f]{64}$/, "a node id (64 hex characters)"));
  const signature = z.string().check(z.regex(/^[A-Za-z0-9+/]{86}==$/, "an Ed25519 signature (base64)"));
  const host = z.string().check(z.regex(/^[A-Za-z0-9.:-]{1,253}$/, "an IP address or host name"));

  const AddressSchema = z.strictObject({ host, port: z.int().check(z.minimum(1), z.maximum(65535)) });

  /** What a node offers, summarised for placement. */
  const OfferSchema = z.strictObject({
    cpus: z.number().check(z.minimum(0), z.maximum(100000)),
    memoryMb: z.int().check(z.minimum(0), z.maximum(1e9)),
    gpus: z.int().check(z.minimum(0), z.maximum(1024)),
    freeContainers: z.int().check(z.minimum(0), z.maximum(100000)),
    maxCpusPerContainer: z.number().check(z.minimum(0), z.maximum(1024)),
    maxMemoryMbPerContainer: z.int().check(z.minimum(0), z.maximum(1e9)),
    /** Machines behind a node in front of a cluster (config `engine: swarm`): cpus/memory/gpus sum over them. */
    machines: z.optional(z.int().check(z.minimum(0), z.maximum(100000))),
  });

  /** One node's entry in the IP table, written and signed by that node. The id is its public key. */
  const NodeRecordSchema = z.strictObject({
    id: nodeId,
    name: z.string().check(z.regex(/^[A-Za-z0-9._-]{1,64}$/)),
    addresses: z.array(AddressSchema).check(z.maxLength(16)),
    nat: z.boolean(),
    reach: z.enum(["direct", "relay"]),
    /** With reach "relay": the relay nodes it holds a tunnel to (absent: none yet, or an older node). */
    relays: z.optional(z.array(nodeId).check(z.maxLength(4))),
    /** When the node serves as a relay (config `relay`): the TCP port of its relay, on its addresses. */
    relayPort: z.optional(z.int().check(z.minimum(1), z.maximum(65535))),
    /** Monotonic per node; a record older than the one held is rejected. */
    version: z.int().check(z.minimum(1), z.maximum(Number.MAX_SAFE_INTEGER)),
    metadata: z.string().check(z.maxLength(1024)),
    offer: OfferSchema,
    issuedAt: z.int().check(z.minimum(0)),
    /** The node's self-signed TLS certificate (PEM); peers pin exactly it. Absent when tls is off. */
    cert: z.optional(
      z
        .string()
        .check(
          z.maxLength(4096),
          z.regex(
            /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/,
            "a PEM certificate",
          ),
        ),
    ),
  });

  const SignedRecordSchema = z.strictObject({ record: NodeRecordSchema, signature });

  /** "Node `id` at `version` is dead", signed by the node that found it unreachable. */
  const DeathNoticeSchema = z.strictObject({
    id: nodeId,
    version: z.int().check(z.minimum(1), z.maximum(Number.MAX_SAFE_INTEGER)),
    reporter: nodeId,
    at: z.int().check(z.minimum(0)),
    signature,
  });

  /** Digest entry: [id, version, dead]. */
  const DigestSchema = z
    .array(z.tuple([nodeId, z.int().check(z.minimum(1)), z.boolean()]))
    .check(z.maxLength(100000));

  const clusterName = z
    .string()
    .check(z.regex(/^[A-Za-z0-9._-]{1,64}$/, "1-64 letters, digits, '.', '_' or '-'"));

  /** One member of a shared cluster. Admins manage every container on the cluster's nodes. */
  const ClusterMemberSchema = z.strictObject({
    id: nodeId,
    label: z.string().check(z.maxLength(64)),
    role: z.enum(["member", "admin"]),
  });

  /**
   * A shared cluster: who may use the nodes that joined it. Written and signed by the host; a newer
   * version replaces an older one everywhere (spread by gossip).
   */
  const ClusterDocumentSchema = z.strictObject({
    name: clusterName,
    host: nodeId,
    members: z.array(ClusterMemberSchema).check(z.maxLength(10000)),
    /** host:port addresses a joining node contacts first. */
    bootstrap: z.array(z.string().check(z.maxLength(300))).check(z.maxLength(64)),
    version: z.int().check(z.minimum(1), z.maximum(Number.MAX_SAFE_INTEGER)),
    issuedAt: z.int().check(z.minimum(0)),
  });

  const SignedClusterSchema = z.strictObject({ cluster: ClusterDocumentSchema, signature });

  /** Cluster digest entry: [host, name, version]. */
  const ClusterDigestSchema = z
    .array(z.tuple([nodeId, clusterName, z.int().check(z.minimum(1))]))
    .check(z.maxLength(1000));

  /** POST /v1/p2p/exchange */
  const ExchangeRequestSchema = z.strictObject({
    /** The sender's record; left out when the responder said it holds the current version. */
    from: z.optional(SignedRecordSchema),
    /** Version of the responder's record the sender holds: the responder leaves its own out if equal. */
    have: z.optional(z.int().check(z.minimum(0), z.maximum(Number.MAX_SAFE_INTEGER))),
    /** SHA-256 of the sender's digest; equal hashes end the exchange at once. */
    hash: z.string().check(z.regex(/^[0-9a-f]{64}$/)),
    /** Versions of the cluster documents the sender holds (absent: none). */
    clusters: z.optional(ClusterDigestSchema),
  });

  /** POST /v1/p2p/sync */
  const SyncRequestSchema = z.strictObject({
    from: SignedRecordSchema,
    // Records and notices are checked (schema, then signature) one by one when taken: at most
    // `gossipMaxRecords` of them per sync, so a body of 5000 costs no more than a body of 100.
    records: z.array(z.unknown()).check(z.maxLength(5000)),
    deaths: z.array(z.unknown()).check(z.maxLength(5000)),
    /** Ids the caller wants (from a digest, so up to its size); only `gossipMaxRecords` are answered. */
    want: z.array(nodeId).check(z.maxLength(100000)),
  });
  return {
    ClusterMemberSchema,
    ClusterDocumentSchema,
    SignedClusterSchema,
    ClusterDigestSchema,
    AddressSchema,
    OfferSchema,
    NodeRecordSchema,
    SignedRecordSchema,
    DeathNoticeSchema,
    DigestSchema,
    ExchangeRequestSchema,
    SyncRequestSchema,
  };
}

let built: ReturnType<typeof build> | undefined;
/** The p2p wire schemas, built on first use (so reading the table does not load zod). */
export function p2pSchemas(): ReturnType<typeof build> {
  built ??= build();
  return built;
}

type Schemas = ReturnType<typeof build>;
export type Address = z.infer<Schemas["AddressSchema"]>;
export type Offer = z.infer<Schemas["OfferSchema"]>;
export type NodeRecord = z.infer<Schemas["NodeRecordSchema"]>;
export type SignedRecord = z.infer<Schemas["SignedRecordSchema"]>;
export type DeathNotice = z.infer<Schemas["DeathNoticeSchema"]>;
export type Digest = z.infer<Schemas["DigestSchema"]>;
export type ClusterMember = z.infer<Schemas["ClusterMemberSchema"]>;
export type ClusterDocument = z.infer<Schemas["ClusterDocumentSchema"]>;
export type SignedCluster = z.infer<Schemas["SignedClusterSchema"]>;
export type ClusterDigest = z.infer<Schemas["ClusterDigestSchema"]>;
export type ExchangeRequest = z.infer<Schemas["ExchangeRequestSchema"]>;
export type SyncRequest = z.infer<Schemas["SyncRequestSchema"]>;

export interface ExchangeResponse {
  /** The responder's record; left out when the request said it holds the current version. */
  from?: SignedRecord;
  /** Version of the sender's record the responder holds (the sender leaves its record out when equal). */
  got?: number;
  /** The address the responder saw the request come from. */
  observed: string | undefined;
  same: boolean;
  digest?: Digest;
  /** Cluster documents the responder holds newer than the sender's digest said. */
  clusters?: SignedCluster[];
  /** The responder's versions of the clusters both hold, when the sender's is newer (it pushes them). */
  olderClusters?: ClusterDigest;
}

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
  /** The node serves TLS (its record carries its certificate). */
  tls: boolean;
  /** How members reach it: at its address, or through one of `relays`. */
  reach: "direct" | "relay";
  relays: string[];
}
