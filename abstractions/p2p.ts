/**
 * The p2p module, loaded when a call first needs it: a lazy boundary, since loading it with abstractions
 * (gossip, the relay, hono's routes) costs `--vc` 5.4 ms of ~41 measured side by side (two builds,
 * interleaved), and `--vc`, `--dc` and `-h` never touch the network.
 */
export const p2p = () => import("../p2p/index.ts");
