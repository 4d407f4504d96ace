// The caller's side: a stream to a relayed node, raw or behind a loopback listener that any client
// (fetch with the node's pinned certificate, ssh's ProxyCommand, a mapped port) can connect to.
import type { Socket } from "bun";
import type { Identity, Logger } from "../../core/index.ts";
import { type RelayConnection, relayConnect } from "./connect.ts";
import { signHello } from "./handshake.ts";
import { drained, forward, type Pipe, pipeState, unsplice } from "./splice.ts";
import type { RelayEndpoint } from "./types.ts";

export interface DialOptions {
  relay: RelayEndpoint;
  /** The relayed node's id. */
  target: string;
  /** The caller's key: the relay serves members only. */
  identity: Identity;
  /**
   * A port on the node's machine instead of the node's server (a container's published ssh port the
   * caller owns); the node decides (`RelayAgentOptions.allowPort`).
   */
  port?: number;
  timeoutMs?: number;
}

/**
 * Opens one stream to node `target` through `relay`: the relay checks the caller's signed hello, asks
 * the node for a work connection and splices it to this one. The returned connection is paused:
 * `attach` a sink or `splice` it to a socket. The bytes are the node's own server port (its TLS, its
 * signed API): speak TLS pinned to the node's certificate over it, never plain text.
 */
export function dialThroughRelay(o: DialOptions): Promise<RelayConnection> {
  return relayConnect(
    o.relay,
    (hello) =>
      signHello(o.identity, hello, {
        kind: "stream",
        node: o.identity.nodeId,
        target: o.target,
        port: o.port,
      }),
    o.timeoutMs,
  );
}

/** A loopback listener that carries each connection it accepts to a relayed node as one stream. */
export interface RelayForwarder extends AsyncDisposable {
  /** 127.0.0.1 (or the host asked). */
  host: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * Listens on `listenHost:listenPort` (default 127.0.0.1, a free port); every connection to it becomes a
 * stream to `target` through `relay` (the node's own server port, or `port` on its machine). A client reaches the node by dialing this
 * address instead of the node's: `https://127.0.0.1:<port>/…` with TLS pinned to the node's
 * certificate, requests signed `to` the node.
 *
 * @example
 *   const fwd = await openRelayForwarder({ relay: { host: "203.0.113.5", port: 8089 }, target, identity });
 *   await fetch(`https://127.0.0.1:${fwd.port}/v1/identity`, { tls: pinnedTls(nodeCertPem) });
 */
export async function openRelayForwarder(
  o: DialOptions & { listenHost?: string; listenPort?: number; logger?: Logger },
): Promise<RelayForwarder> {
  const host = o.listenHost ?? "127.0.0.1";
  const listener = Bun.listen<Pipe & { closed: boolean }>({
    hostname: host,
    port: o.listenPort ?? 0,
    socket: {
      open(local) {
        local.data = { ...pipeState(), closed: false };
        local.setNoDelay(true);
        local.pause();
        dialThroughRelay(o).then(
          (remote) => {
            if (local.data.closed) remote.socket.end();
            else remote.splice(local);
          },
          (err: Error) => {
            o.logger?.warn(`relay: stream to ${o.target.slice(0, 12)}: ${err.message}`);
            local.end();
          },
        );
      },
      data: (s, chunk) => forward(s as Socket<Pipe>, chunk),
      drain: (s) => drained(s as Socket<Pipe>),
      close(s) {
        s.data.closed = true;
        unsplice(s as Socket<Pipe>);
      },
      error: (s) => unsplice(s as Socket<Pipe>),
    },
  });
  const stop = async () => listener.stop(true);
  return { host, port: listener.port, stop, [Symbol.asyncDispose]: stop };
}
