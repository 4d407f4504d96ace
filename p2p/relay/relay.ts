// The relay role: a TCP listener that keeps nodes' control connections (tunnels) and splices each
// member's stream to a fresh work connection the relayed node opens for it (frp's shape). It reads
// only the one-line hellos; everything after is end-to-end TLS between caller and node, spliced as is.

import { randomBytes } from "node:crypto";
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { Cancel, Clock, ErrorCode, Identity, Logger } from "../../core/index.ts";
import { isP2prcError } from "../../core/index.ts";
import { checkHello, type DialerHello, LineReader, relayProofText, type Verdict } from "./handshake.ts";
import { publicPorts } from "./public.ts";
import { drained, forward, type Pipe, pipeState, splice, unsplice } from "./splice.ts";
import { DEFAULT_RELAY_LIMITS, emptyRelayStats, type RelayLimits, type RelayStats } from "./types.ts";

export interface RelayServerOptions {
  identity: Identity;
  /** Whether a node id is a member of a cluster this relay serves (the server's auth check). */
  isMember: (nodeId: string) => boolean;
  host: string;
  /** 0 = any free port. */
  port: number;
  limits?: Partial<RelayLimits>;
  /** A shared HTTP port that routes public mappings with a domain by Host (`--dn`); undefined: none. */
  httpPort?: number | undefined;
  clock: Clock;
  logger: Logger;
}

/** A running relay. */
export interface RelayServer extends AsyncDisposable {
  readonly host: string;
  readonly port: number;
  readonly stats: RelayStats;
  /** Node ids with a tunnel here now. */
  tunnels(): string[];
  /** Closes the listener and every connection. Idempotent. */
  stop(): Promise<void>;
}

type Phase = "hello" | "control" | "waiting" | "spliced" | "closed";

interface Conn extends Pipe {
  phase: Phase;
  challenge: string;
  reader: LineReader | undefined;
  /** The proven node id (after the hello). */
  node: string | undefined;
  /** hello: when it opened; control: when last heard; waiting and spliced: last byte either way. */
  at: number;
  /** A caller's stream: counted against its member quota until closed. */
  counted: boolean;
  /** control: when it was last pinged. */
  pinged: number;
  /** A connection to a public port: no hello, no verdict line, only the node's bytes. */
  public?: boolean;
  /** A public connection's bytes read before it was spliced (an HTTP request head, for `--dn`). */
  early?: Uint8Array | undefined;
}

/** The key public connections are counted under, against `maxStreamsPerMember`. */
const PUBLIC = "public";
/** A domain a node may route (`--dn`): DNS names, lower or upper case. */
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/**
 * Starts a relay on `host:port`.
 *
 * @example
 *   const relay = await startRelay({ identity, isMember: (id) => book.isMember(id), host: "0.0.0.0",
 *     port: 8089, clock: systemClock, logger });
 */
export async function startRelay(o: RelayServerOptions): Promise<RelayServer> {
  const limits = { ...DEFAULT_RELAY_LIMITS, ...o.limits };
  const relayId = o.identity.nodeId;
  const stats = emptyRelayStats();
  const log = o.logger;
  const tunnels = new Map<string, Socket<Conn>>();
  const pending = new Map<string, { caller: Socket<Conn>; target: string; at: number }>();
  const perMember = new Map<string, number>();
  const open = new Set<Socket<Conn>>();
  const pingMs = Math.max(50, Math.min(15_000, Math.floor(limits.idleTimeoutMs / 3)));

  const send = (s: Socket<Conn>, v: Verdict | Record<string, unknown>) => s.write(`${JSON.stringify(v)}\n`);
  const refuse = (
    s: Socket<Conn>,
    code: ErrorCode,
    message: string,
    counter: keyof RelayStats["refused"],
  ) => {
    stats.refused[counter]++;
    log.debug(`relay: refused (${counter}): ${message}`);
    if (!s.data.public) send(s, { ok: false, code, message });
    s.data.phase = "closed";
    s.end();
  };
  const uncount = (c: Conn) => {
    if (!c.counted || !c.node) return;
    c.counted = false;
    stats.streams--;
    const n = (perMember.get(c.node) ?? 1) - 1;
    if (n <= 0) perMember.delete(c.node);
    else perMember.set(c.node, n);
  };

  function onHello(s: Socket<Conn>, h: DialerHello, rest: Uint8Array) {
    const c = s.data;
    c.node = h.node;
    c.at = o.clock.now();
    if (h.kind === "control") return onControl(s, h.node, h.nonce);
    if (h.kind === "stream") return onStream(s, h);
    return onWork(s, h.node, h.token, rest);
  }

  function onControl(s: Socket<Conn>, node: string, nonce: string) {
    if (!o.isMember(node)) return refuse(s, "E_FORBIDDEN", "node is not a member here", "notMember");
    const old = tunnels.get(node);
    if (!old && tunnels.size >= limits.maxTunnels)
      return refuse(s, "E_LIMIT", `relay at its limit of ${limits.maxTunnels} tunnels`, "tunnelLimit");
    if (old) {
      old.data.phase = "closed";
      old.end();
    } else stats.tunnels++;
    tunnels.set(node, s);
    stats.tunnelsOpened++;
    s.data.phase = "control";
    s.data.reader = new LineReader();
    send(s, { ok: true, sig: o.identity.sign(relayProofText(relayId, node, nonce)), pingMs });
    log.info(`relay: tunnel from ${node.slice(0, 12)}`);
  }

  function onStream(s: Socket<Conn>, h: DialerHello & { kind: "stream" }) {
    const { node: caller, target } = h;
    if (!o.isMember(caller)) return refuse(s, "E_FORBIDDEN", "caller is not a member here", "notMember");
    const control = tunnels.get(target);
    if (!control)
      return refuse(s, "E_NODE_UNREACHABLE", `node ${target.slice(0, 12)} has no tunnel here`, "noTunnel");
    const n = perMember.get(caller) ?? 0;
    if (n >= limits.maxStreamsPerMember)
      return refuse(s, "E_LIMIT", `at most ${limits.maxStreamsPerMember} streams per member`, "streamLimit");
    perMember.set(caller, n + 1);
    stats.streams++;
    s.data.counted = true;
    s.data.phase = "waiting";
    s.pause(); // nothing is read from the caller until its stream is spliced
    const token = randomBytes(16).toString("hex");
    pending.set(token, { caller: s, target, at: o.clock.now() });
    // the caller's hello goes along: the node checks for itself who asked (and for which port)
    send(control, { t: "open", token, from: caller, port: h.port, challenge: s.data.challenge, sig: h.sig });
  }

  function onWork(s: Socket<Conn>, node: string, token: string, rest: Uint8Array) {
    const p = pending.get(token);
    if (!p || p.target !== node) return refuse(s, "E_FORBIDDEN", "unknown stream token", "badToken");
    pending.delete(token);
    const caller = p.caller;
    if (caller.data.phase !== "waiting") {
      s.data.phase = "closed";
      s.end();
      return;
    }
    const now = o.clock.now();
    for (const x of [s, caller]) {
      x.data.phase = "spliced";
      x.data.at = now;
      x.data.onBytes = (n) => {
        stats.bytes += n;
        x.data.at = o.clock.now();
      };
      if (!x.data.public) send(x, { ok: true });
    }
    stats.streamsOpened++;
    const early = caller.data.early;
    caller.data.early = undefined;
    splice(s, caller, rest, early);
    caller.resume();
  }

  function onControlLine(s: Socket<Conn>, chunk: Uint8Array) {
    // the node answers pings and may refuse a stream; any line is a sign of life
    let rest: Uint8Array = chunk;
    for (;;) {
      const got = s.data.reader?.push(rest);
      if (!got) return;
      s.data.at = o.clock.now();
      rest = got.rest;
      if (!/"(refuse|publish|unpublish)"/.test(got.line)) continue;
      let msg: { t?: string; token?: string; message?: string; port?: number; domain?: unknown };
      try {
        msg = JSON.parse(got.line);
      } catch {
        continue;
      }
      const node = s.data.node as string;
      if ((msg.t === "publish" || msg.t === "unpublish") && Number.isInteger(msg.port)) {
        const port = msg.port as number;
        if (msg.t === "unpublish") pub.unpublish(node, port);
        else {
          const domain = typeof msg.domain === "string" && DOMAIN.test(msg.domain) ? msg.domain : undefined;
          send(s, { t: "published", ...pub.publish(node, port, domain) });
        }
        continue;
      }
      const p = typeof msg.token === "string" ? pending.get(msg.token) : undefined;
      if (msg.t !== "refuse" || !p || p.target !== s.data.node) continue;
      pending.delete(msg.token as string);
      if (p.caller.data.phase === "waiting")
        refuse(p.caller, "E_FORBIDDEN", `the node refused: ${String(msg.message).slice(0, 200)}`, "byNode");
    }
  }

  /** A connection to a public port of `node`'s mapped `port`: a stream request on its tunnel. */
  function onPublic(node: string, port: number, s: Socket<Conn>, early?: Uint8Array) {
    s.data = { ...fresh(), phase: "waiting", public: true, node: PUBLIC, early };
    s.setNoDelay(true);
    const control = tunnels.get(node);
    if (!control) return refuse(s, "E_NODE_UNREACHABLE", "the node has no tunnel here", "noTunnel");
    const n = perMember.get(PUBLIC) ?? 0;
    if (n >= limits.maxStreamsPerMember)
      return refuse(s, "E_LIMIT", `at most ${limits.maxStreamsPerMember} public streams`, "streamLimit");
    perMember.set(PUBLIC, n + 1);
    stats.streams++;
    s.data.counted = true;
    open.add(s);
    s.pause();
    const token = randomBytes(16).toString("hex");
    pending.set(token, { caller: s, target: node, at: o.clock.now() });
    send(control, { t: "open", token, port, public: true });
  }

  const fresh = (): Conn => ({
    ...pipeState(),
    phase: "hello",
    challenge: randomBytes(16).toString("hex"),
    reader: new LineReader(),
    node: undefined,
    at: o.clock.now(),
    counted: false,
    pinged: 0,
  });

  const handlers: Omit<SocketHandler<Conn>, "open"> = {
    data(s, chunk) {
      const c = s.data;
      if (c.phase === "spliced") return forward(s, chunk);
      try {
        if (c.phase === "control") return onControlLine(s, chunk);
        if (c.phase !== "hello") return;
        const got = c.reader?.push(chunk);
        if (!got) return;
        c.reader = undefined;
        onHello(s, checkHello(got.line, relayId, c.challenge), got.rest);
      } catch (err) {
        const code = isP2prcError(err) ? err.code : "E_INVALID";
        refuse(s, code, (err as Error).message, "badHello");
      }
    },
    drain: (s) => drained(s),
    close(s) {
      open.delete(s);
      const c = s.data;
      if (c.phase === "control" && c.node && tunnels.get(c.node) === s) {
        tunnels.delete(c.node);
        stats.tunnels--;
        log.info(`relay: tunnel from ${c.node.slice(0, 12)} closed`);
        pub.closeNode(c.node);
        // its pending streams get no work connection now: refused at once, not at the timeout
        for (const [token, p] of pending) {
          if (p.target !== c.node) continue;
          pending.delete(token);
          if (p.caller.data.phase === "waiting")
            refuse(p.caller, "E_NODE_UNREACHABLE", "the node's tunnel closed", "noTunnel");
        }
      }
      c.phase = "closed";
      uncount(c);
      const peer = c.peer;
      unsplice(s);
      if (peer) uncount(peer.data as Conn);
    },
    error(_s, err) {
      log.debug(`relay: socket error: ${err.message}`);
    },
  };
  const pub = publicPorts<Conn>({
    host: o.host,
    limits,
    stats,
    handlers,
    accept: onPublic,
    httpPort: o.httpPort,
  });
  const listener: TCPSocketListener<Conn> = Bun.listen<Conn>({
    hostname: o.host,
    port: o.port,
    socket: {
      ...handlers,
      open(s) {
        s.data = fresh();
        s.setNoDelay(true);
        open.add(s);
        s.write(`${JSON.stringify({ v: 1, relay: relayId, challenge: s.data.challenge })}\n`);
      },
    },
  });

  // One sweep for every clock: hellos and stream requests not answered in time, idle streams, silent
  // tunnels, and the tunnels' pings.
  const sweep = () => {
    const now = o.clock.now();
    for (const [token, p] of pending) {
      if (now - p.at < limits.handshakeTimeoutMs) continue;
      pending.delete(token);
      if (p.caller.data.phase === "waiting")
        refuse(p.caller, "E_NODE_UNREACHABLE", "the node did not answer the stream request", "timeout");
    }
    for (const s of open) {
      const c = s.data;
      const idle = now - c.at;
      if (c.phase === "hello" && idle > limits.handshakeTimeoutMs) {
        stats.refused.timeout++;
        c.phase = "closed";
        s.end();
      } else if (c.phase === "spliced" && idle > limits.idleTimeoutMs) {
        stats.idleClosed++;
        s.end();
      } else if (c.phase === "control") {
        if (idle > 3 * pingMs) s.end();
        else if (now - c.pinged >= pingMs) {
          c.pinged = now;
          send(s, { t: "ping" });
        }
      }
    }
  };
  const stopSweep: Cancel = o.clock.setInterval(sweep, Math.min(pingMs, 1000));

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      stopSweep();
      pub.stop();
      listener.stop(true);
      for (const s of open) s.end();
    })();
    return stopped;
  };
  log.info(`relay: listening on ${o.host}:${listener.port}`);
  return {
    host: o.host,
    port: listener.port,
    stats,
    tunnels: () => [...tunnels.keys()],
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
