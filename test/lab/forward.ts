// A loopback forwarder through a relay, run inside a lab host as a member would open one
// (`bun test/lab/forward.ts <relay host:port> <target id> <port> <P2PRC home>`): prints the local port it
// listens on, then keeps forwarding until it is killed. Every connection to it is one stream to `port`
// on the target's machine, asked with the key of the node whose home is given.
import { join } from "node:path";
import { loadOrCreateIdentity, parseAddress } from "../../core/index.ts";
import { openRelayForwarder } from "../../p2p/index.ts";

const [relayArg, target, port, home] = process.argv.slice(2) as [string, string, string, string];
const identity = loadOrCreateIdentity(join(home, "identity/node.key"), join(home, "identity/node.pub"));
const fwd = await openRelayForwarder({
  relay: parseAddress(relayArg, "relay"),
  target,
  identity,
  port: Number(port),
});
console.log(fwd.port);
await new Promise(() => {});
