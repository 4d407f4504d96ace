// Test helpers for the relay's tests: a local echo server standing for a node's own server, and waits.
import type { Socket, TCPSocketListener } from "bun";
import type { Identity, NodeRef, NodeTransport } from "../../core/index.ts";
import { memoryLogger, PeerClient, pinnedTls, systemClock } from "../../core/index.ts";
import type { RelayConnection } from "./connect.ts";
import { type RelayServer, startRelay } from "./relay.ts";
import { relayTransport } from "./transport.ts";
import type { RelayEndpoint, RelayLimits } from "./types.ts";

/** A TCP echo server on 127.0.0.1 that counts the connections it accepted. */
export function echoServer(): TCPSocketListener<undefined> & { accepted: () => number } {
  let accepted = 0;
  const l = Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open: () => {
        accepted++;
      },
      data: (s, chunk) => {
        s.write(chunk);
      },
    },
  });
  return Object.assign(l, { accepted: () => accepted });
}

/** A relay on 127.0.0.1 serving the ids in `members`. */
export function relayFor(
  identity: Identity,
  members: Identity[],
  limits?: Partial<RelayLimits>,
): Promise<RelayServer> {
  const ids = new Set(members.map((m) => m.nodeId));
  return startRelay({
    identity,
    isMember: (id) => ids.has(id),
    host: "127.0.0.1",
    port: 0,
    limits,
    clock: systemClock,
    logger: memoryLogger(),
  });
}

/** Resolves when `cond` holds (polled every 5 ms), rejects after `ms`. */
export async function until(cond: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** Sends `data` over a relay stream and resolves with the first `data.length` bytes that come back. */
export function roundTrip(conn: RelayConnection, data: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    let size = 0;
    conn.attach({
      data(chunk) {
        got.push(Buffer.from(chunk));
        size += chunk.length;
        if (size >= data.length) resolve(Buffer.concat(got));
      },
      close: () => reject(new Error("stream closed")),
    });
    (conn.socket as Socket<unknown>).write(data);
  });
}

/**
 * A peer client of `identity` over relayTransport, on a base that pins TLS to each node's `cert` at
 * 127.0.0.1 and the node's port (every test server is on loopback); `seen` lists the addresses the
 * base was given.
 */
export function loopbackClient(identity: Identity, relayOf: (node: NodeRef) => RelayEndpoint | undefined) {
  const seen: string[] = [];
  const base: NodeTransport = {
    send: (node, path, init) => {
      seen.push(`${node.address.host}:${node.address.port}`);
      return fetch(`https://127.0.0.1:${node.address.port}${path}`, {
        ...init,
        tls: pinnedTls(node.cert as string),
      });
    },
  };
  const transport = relayTransport({ base, identity, relayOf });
  return { client: new PeerClient({ identity, clock: systemClock, transport }), transport, seen };
}
