// The relay's limits, counters and endpoints.

/** A relay to dial: its address and, when known, its node id (then its key is checked). */
export interface RelayEndpoint {
  host: string;
  port: number;
  nodeId?: string | undefined;
}

/** What one relay accepts (config `relay*` fields). */
export interface RelayLimits {
  /** Most control connections (nodes relayed) at once. */
  maxTunnels: number;
  /** Most streams one member (the caller) may have open or pending at once. */
  maxStreamsPerMember: number;
  /** A stream that carries no byte either way for this long is closed; a tunnel pinged at a third of it. */
  idleTimeoutMs: number;
  /** A connection must finish its hello within this, and a node answer a stream request within it. */
  handshakeTimeoutMs: number;
  /** Most public ports (`p2prc --mp --public`) open at once, all nodes together; 0: none (the default). */
  maxPublicPorts: number;
  /** The range public ports are opened in (on the relay's host). */
  publicPortMin: number;
  publicPortMax: number;
}

export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  maxTunnels: 256,
  maxStreamsPerMember: 256,
  idleTimeoutMs: 120_000,
  handshakeTimeoutMs: 10_000,
  maxPublicPorts: 0,
  publicPortMin: 20_000,
  publicPortMax: 20_999,
};

/** Counters of one relay, in `GET /v1/p2p/stats` as `relay`. */
export interface RelayStats {
  /** Tunnels (control connections) open now, and ever accepted. */
  tunnels: number;
  tunnelsOpened: number;
  /** Streams open or pending now, and ever spliced. */
  streams: number;
  streamsOpened: number;
  /** Bytes forwarded both ways, all streams together. */
  bytes: number;
  /** Refusals by reason. */
  refused: {
    /** A hello that is malformed or whose signature does not verify. */
    badHello: number;
    /** A node or caller that is not a member of a cluster this relay serves. */
    notMember: number;
    tunnelLimit: number;
    streamLimit: number;
    /** A stream to a node that has no tunnel here. */
    noTunnel: number;
    /** A work connection with an unknown token or from another node than the one asked. */
    badToken: number;
    /** A handshake or a stream request not answered in time. */
    timeout: number;
    /** Streams the node itself refused (a port not open to that caller, a hello that did not verify). */
    byNode: number;
    /** Public ports asked for past `maxPublicPorts` (or with none allowed), or with no free port in range. */
    publicLimit: number;
  };
  /** Public ports open now. */
  publicPorts: number;
  /** Streams closed for idleness. */
  idleClosed: number;
}

export function emptyRelayStats(): RelayStats {
  return {
    tunnels: 0,
    tunnelsOpened: 0,
    streams: 0,
    streamsOpened: 0,
    bytes: 0,
    refused: {
      badHello: 0,
      notMember: 0,
      tunnelLimit: 0,
      streamLimit: 0,
      noTunnel: 0,
      badToken: 0,
      timeout: 0,
      byNode: 0,
      publicLimit: 0,
    },
    publicPorts: 0,
    idleClosed: 0,
  };
}
