// Embeds a p2prc node in another program: start it, use its API, stop it.
// Run: P2PRC=/tmp/example-node bun examples/embed.ts [port]
import { start } from "../abstractions/index.ts";

const node = await start({
  overrides: { serverPort: Number(process.argv[2] ?? 8088), serverHost: "127.0.0.1" },
});
// The node serves TLS with its own self-signed certificate: pin exactly that certificate.
const tls = node.certPem ? { ca: node.certPem, checkServerIdentity: () => undefined } : undefined;
const health = await (await fetch(`${node.url}/v1/health`, { tls })).json();
console.log(JSON.stringify({ url: node.url, nodeId: node.nodeId, health }));
await node.stop();
