import { parseAddress } from "../core/index.ts";
import {
  type ClusterBook,
  offeredRelays,
  type PeerTable,
  type ReachService,
  RelayAgent,
  type RelayServer,
  startRelay,
} from "../p2p/index.ts";
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
 * The agent: keeps this node reachable through a relay, splicing streams to `serverPort`, or to a port
 * `allowPort` opens to the caller (its containers' published ports). With config `relays` it runs
 * from the start through them; otherwise, unless `behindNat` is "false", it runs while `reach` says
 * this node is relayed, through the relays members offer in the IP table, nearest first.
 */
export function startRelayAgent(
  ctx: NodeContext,
  serverPort: number,
  allowPort: (caller: string, port: number) => boolean,
  auto: { table: PeerTable; reach: ReachService },
): RelayAgent | undefined {
  const { config } = ctx;
  if (config.relays.length === 0 && config.behindNat === "false") return undefined;
  // an address bound to all interfaces is dialed on loopback
  const dialable = (h: string) => (h === "0.0.0.0" || h === "::" ? "127.0.0.1" : h);
  const { table, reach } = auto;
  const agent = new RelayAgent({
    identity: ctx.identity,
    relays:
      config.relays.length > 0
        ? config.relays.map((r) => parseAddress(r, "relays"))
        : () => offeredRelays(table.views(), (id) => table.record(id)?.record, ctx.identity.nodeId),
    local: { host: dialable(config.serverHost), port: serverPort },
    portsHost: dialable(config.publishHost || config.serverHost),
    clock: ctx.clock,
    logger: ctx.logger.withTag("relay"),
    allowPort,
  });
  // the record names the relay this node is reachable through (ReachService re-signs it)
  agent.subscribe((r) => reach.setRelays(r?.nodeId ? [r.nodeId] : []));
  if (config.relays.length > 0) agent.start();
  else {
    // only a change of reach starts or stops it (the agent's own setRelays also notifies)
    let relayed = reach.state().reach === "relay";
    if (relayed) agent.start();
    reach.onChange((s) => {
      if ((s.reach === "relay") === relayed) return;
      relayed = s.reach === "relay";
      if (relayed) agent.start();
      else void agent.stop();
    });
  }
  return agent;
}
