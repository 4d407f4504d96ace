import { type Cancel, parseAddress } from "../core/index.ts";
import type {
  ClusterBook,
  PeerTable,
  ReachService,
  RelayAgent,
  RelayEndpoint,
  RelayServer,
} from "../p2p/index.ts";
import type { MetaStore } from "../store/index.ts";
import { p2p } from "./lazy.ts";
import {
  type Mapping,
  RELAY_CURRENT_META,
  RELAY_PREFERRED_META,
  RELAY_PUBLISHED_META,
  readMappings,
} from "./mappings.ts";
import type { NodeContext } from "./node.ts";

/** The relay role (config `relay`): members of this node's clusters may keep tunnels here. */
export async function startRelayRole(
  ctx: NodeContext,
  clusters: ClusterBook,
): Promise<RelayServer | undefined> {
  const { startRelay } = await p2p();
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
      maxPublicPorts: c.relayMaxPublicPorts,
      publicPortMin: c.relayPublicPortMin,
      publicPortMax: c.relayPublicPortMax,
    },
    httpPort: c.relayHttpPort || undefined,
    clock: ctx.clock,
    logger: ctx.logger.withTag("relay"),
  });
}

/** The relay agent of a running node and what stops it (with its watch on the mappings). */
export interface RunningAgent {
  agent: RelayAgent;
  stop(): Promise<void>;
}

/** What the agent needs of the running node besides its context. */
export interface AgentDeps {
  table: PeerTable;
  reach: ReachService;
  /** Where the mappings (`p2prc --mp`) and the relay `--ra` prefers are kept; the current relay goes there. */
  meta: MetaStore;
  /** Whether `id` is a member of this node's clusters (mapped ports are for members only). */
  isMember: (id: string) => boolean;
  /**
   * Makes the store's next read ask SQLite whether another connection wrote (it asks by itself at most
   * every 250 ms): a mapping `p2prc --mp` added just now is seen by the first stream asking for it.
   */
  refresh?: () => void;
}

/** `relays` with the preferred one (`--ra`) first, when it is among them. */
function preferring(relays: RelayEndpoint[], preferred: string | undefined): RelayEndpoint[] {
  const i = preferred ? relays.findIndex((r) => r.nodeId === preferred) : -1;
  return i <= 0 ? relays : [relays[i] as RelayEndpoint, ...relays.slice(0, i), ...relays.slice(i + 1)];
}

/**
 * The agent: keeps this node reachable through a relay, splicing streams to `serverPort`, to a port
 * `allowPort` opens to the caller (its containers' published ports), or to a mapping's target
 * (`p2prc --mp`, members only). With config `relays` it runs from the start through them; otherwise,
 * unless `behindNat` is "false", it runs while `reach` says this node is relayed, through the relays
 * members offer in the IP table, the one `--ra` chose first, then nearest first. Once a second it looks
 * at the mappings: a removed one's streams are closed, and a newly preferred relay is switched to.
 */
export async function startRelayAgent(
  ctx: NodeContext,
  serverPort: number,
  allowPort: (caller: string, port: number) => boolean,
  deps: AgentDeps,
): Promise<RunningAgent | undefined> {
  const { offeredRelays, RelayAgent } = await p2p();
  const { config } = ctx;
  if (config.relays.length === 0 && config.behindNat === "false") return undefined;
  // an address bound to all interfaces is dialed on loopback
  const dialable = (h: string) => (h === "0.0.0.0" || h === "::" ? "127.0.0.1" : h);
  const { table, reach, meta } = deps;
  const offered = () =>
    preferring(
      offeredRelays(table.views(), (id) => table.record(id)?.record, ctx.identity.nodeId),
      meta.get(RELAY_PREFERRED_META),
    );
  const agent = new RelayAgent({
    identity: ctx.identity,
    relays: config.relays.length > 0 ? config.relays.map((r) => parseAddress(r, "relays")) : offered,
    local: { host: dialable(config.serverHost), port: serverPort },
    portsHost: dialable(config.publishHost || config.serverHost),
    clock: ctx.clock,
    logger: ctx.logger.withTag("relay"),
    allowPort,
    mapped: (caller, port) => {
      const find = () => readMappings(meta).find((x) => x.port === port);
      let m = find();
      // not held: perhaps added by the CLI within the store's last look (a member's stream came at once)
      if (!m && deps.refresh) {
        deps.refresh();
        m = find();
      }
      const allowed = m?.access === "public" || (caller !== undefined && deps.isMember(caller));
      return allowed ? m?.target : undefined;
    },
  });
  // the record names the relay this node is reachable through (ReachService re-signs it), and the
  // CLI (`--mp`, `p2prc mappings`) prints it from the store
  agent.subscribe((r) => {
    reach.setRelays(r?.nodeId ? [r.nodeId] : []);
    meta.set(RELAY_CURRENT_META, JSON.stringify(r ?? null));
  });
  const access = (m: Mapping) => (m.access === "public" && m.domain ? `public ${m.domain}` : m.access);
  let mapped = new Map(readMappings(meta).map((m) => [m.port, access(m)]));
  let published = "";
  const sync = () => {
    const all = readMappings(meta);
    const now = new Map(all.map((m) => [m.port, access(m)]));
    // removed, or no longer public: its open streams close (members reconnect, strangers cannot)
    // (the agent's own list too: a mapping added and removed between two looks had streams as well)
    for (const port of agent.mappedPorts()) {
      const was = mapped.get(port);
      if (!now.has(port) || (was !== undefined && was !== now.get(port))) agent.closeMapped(port);
    }
    mapped = now;
    agent.publish(all.filter((m) => m.access === "public").map((m) => ({ port: m.port, domain: m.domain })));
    const answers = JSON.stringify(agent.published());
    if (answers === published) return;
    published = answers;
    meta.set(RELAY_PUBLISHED_META, answers);
  };
  sync();
  const watch: Cancel = ctx.clock.setInterval(() => {
    try {
      sync();
    } catch (err) {
      ctx.logger.withTag("relay").warn(`relay: mappings: ${(err as Error).message}`); // a busy store: next time
    }
    const preferred = meta.get(RELAY_PREFERRED_META);
    const current = agent.current;
    if (config.relays.length > 0 || !preferred || !current || current.nodeId === preferred) return;
    if (!offered().some((r) => r.nodeId === preferred)) return;
    ctx.logger.withTag("relay").info(`relay: switching to ${preferred.slice(0, 12)} (--ra)`);
    void agent.stop().then(() => agent.start());
  }, 1000);
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
  return {
    agent,
    stop: async () => {
      watch();
      await agent.stop();
    },
  };
}
