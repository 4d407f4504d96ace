// Test helpers for the relay's tests: a local echo server standing for a node's own server, and waits.
import type { Socket, TCPSocketListener } from "bun";
import type { Identity } from "../../core/index.ts";
import { memoryLogger, systemClock } from "../../core/index.ts";
import type { RelayConnection } from "./connect.ts";
import { type RelayServer, startRelay } from "./relay.ts";
import type { RelayLimits } from "./types.ts";

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
