import { parseAddress } from "../core/index.ts";
import { type ClusterBook, RelayAgent, type RelayServer, startRelay } from "../p2p/index.ts";
import type { NodeContext } from "./node.ts";

/** The relay role (config `relay`): members of this node's clusters may keep tunnels here. */
export async function startRelayRole(
  ctx: NodeContext,
  clusters: ClusterBook,
): Promise<RelayServer | undefined> {
  if (!ctx.config.relay) return undefined;
  const c = ctx.config;
  return startRelay({
    identity: ctx.identity,
    isMember: (id) => clusters.isMember(id),
    host: c.serverHost,
    port: c.relayPort,
    limits: {
      maxTunnels: c.relayMaxTunnels,
      maxStreamsPerMember: c.relayMaxStreamsPerMember,
      idleTimeoutMs: c.relayIdleTimeoutMs,
    },
    clock: ctx.clock,
    logger: ctx.logger.withTag("relay"),
  });
}

/**
 * The agent (config `relays`): keeps this node reachable through one of them, splicing streams to
 * `serverPort`, or to a port `allowPort` opens to the caller (its containers' published ports).
 */
export async function startRelayAgent(
  ctx: NodeContext,
  serverPort: number,
  allowPort: (caller: string, port: number) => boolean,
): Promise<RelayAgent | undefined> {
  if (ctx.config.relays.length === 0) return undefined;
  // an address bound to all interfaces is dialed on loopback
  const dialable = (h: string) => (h === "0.0.0.0" || h === "::" ? "127.0.0.1" : h);
  const agent = new RelayAgent({
    identity: ctx.identity,
    relays: ctx.config.relays.map((r) => parseAddress(r, "relays")),
    local: { host: dialable(ctx.config.serverHost), port: serverPort },
    portsHost: dialable(ctx.config.publishHost || ctx.config.serverHost),
    clock: ctx.clock,
    logger: ctx.logger.withTag("relay"),
    allowPort,
  });
  agent.start();
  return agent;
}
