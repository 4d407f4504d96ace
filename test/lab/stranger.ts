// A non-member's attempts on a relay, run inside a lab host (`bun test/lab/stranger.ts <host:port> <target id>`):
// a tunnel (a RelayAgent with a fresh key, as a node behind a NAT would keep one) and a stream to the target
// (as a caller would open one). Prints one JSON line: {tunnel: relay id or null, agent: its counters, stream:
// "opened" or the refusal's message}.
import { generateIdentity, memoryLogger, parseAddress, systemClock } from "../../core/index.ts";
import { dialThroughRelay, RelayAgent } from "../../p2p/index.ts";

const [relayArg, target] = process.argv.slice(2) as [string, string];
const relay = parseAddress(relayArg, "relay");
const stranger = generateIdentity();

const agent = new RelayAgent({
  identity: stranger,
  relays: [relay],
  local: { host: "127.0.0.1", port: 9 },
  clock: systemClock,
  logger: memoryLogger(),
  backoffMinMs: 100,
});
agent.start();
await Bun.sleep(1500);
const tunnel = agent.current?.nodeId ?? null;
const agentStats = { ...agent.stats };
await agent.stop();

const stream = await dialThroughRelay({ relay, target, identity: stranger, timeoutMs: 5000 }).then(
  (conn) => {
    conn.socket.end();
    return "opened";
  },
  (err: unknown) => (err instanceof Error ? err.message : String(err)),
);
console.log(JSON.stringify({ tunnel, agent: agentStats, stream }));
process.exit(0);
