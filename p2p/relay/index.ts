/**
 * p2p/relay: NAT relay. A node with `relay: true` serves tunnels to members behind a NAT (startRelay);
 * a node behind a NAT keeps one through a RelayAgent; a caller reaches it with dialThroughRelay or a
 * loopback openRelayForwarder. The relay only splices bytes: callers speak TLS pinned to the node.
 */
export type { RelayAgentOptions, RelayAgentStats } from "./agent.ts";
export { RelayAgent } from "./agent.ts";
export type { RelayConnection, Sink } from "./connect.ts";
export type { DialOptions, RelayForwarder } from "./dial.ts";
export { dialThroughRelay, openRelayForwarder } from "./dial.ts";
export type { RelayServer, RelayServerOptions } from "./relay.ts";
export { startRelay } from "./relay.ts";
export { noRelayNow, offeredRelays, relayedByRecords, relayFromRecords } from "./route.ts";
export type { RelayTransport, RelayTransportOptions } from "./transport.ts";
export { relayTransport } from "./transport.ts";
export type { RelayEndpoint, RelayLimits, RelayStats } from "./types.ts";
export { DEFAULT_RELAY_LIMITS } from "./types.ts";
