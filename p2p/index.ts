/** p2p: the IP table, bootstrap, signed gossip, liveness and latency. Not built yet. */
export {};
