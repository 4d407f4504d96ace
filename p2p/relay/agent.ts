// The node behind a NAT: one outbound control connection to a relay, and per stream the relay asks
// for, a fresh outbound work connection spliced to a fresh connection to this node's own server.

import { randomBytes } from "node:crypto";
import type { Socket } from "bun";
import type { Cancel, Clock, Identity, Logger } from "../../core/index.ts";
import { P2prcError, verifySignature } from "../../core/index.ts";
import { relayConnect } from "./connect.ts";
import { helloText, LineReader, relayProofText, signHello } from "./handshake.ts";
import { drained, forward, type Pipe, pipeState, unsplice } from "./splice.ts";
import type { RelayEndpoint } from "./types.ts";

export interface RelayAgentOptions {
  identity: Identity;
  /**
   * Relays in order of preference; on loss the agent fails over to the next. A function is asked
   * again at each attempt (relays offered in the IP table, nearest first).
   */
  relays: RelayEndpoint[] | (() => RelayEndpoint[]);
  /** This node's own server: every stream is spliced to a fresh connection to it. */
  local: { host: string; port: number };
  /** Where the ports `allowPort` opens listen (containers' published ports); default `local.host`. */
  portsHost?: string;
  clock: Clock;
  logger: Logger;
  /** First retry delay after a failed attempt, doubled per failure up to backoffMaxMs. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Handshake timeout of a control or work connection. */
  timeoutMs?: number;
  /**
   * Whether `caller` may open a stream to `port` on this machine (a container's published port it
   * owns, for ssh); default: none. A stream that names no port goes to `local` (the node's server).
   */
  allowPort?: (caller: string, port: number) => boolean;
  /** The relay this node is reachable through changed (undefined: none now). */
  onChange?: (relay: RelayEndpoint | undefined) => void;
}

/** Counters of an agent. */
export interface RelayAgentStats {
  connects: number;
  failures: number;
  streams: number;
  streamFailures: number;
}

/**
 * Keeps this node reachable through one of its relays. `start()` and `stop()` may alternate (the node
 * runs it while it finds itself relayed); both are idempotent.
 */
export class RelayAgent implements AsyncDisposable {
  readonly stats: RelayAgentStats = { connects: 0, failures: 0, streams: 0, streamFailures: 0 };
  private relay: RelayEndpoint | undefined;
  private control: Socket<Pipe> | undefined;
  private index = 0;
  private backoff: number;
  private stopped = true;
  /** Bumped by each start: a connection attempt of an earlier run is dropped. */
  private run = 0;
  private timer: Cancel | undefined;
  private watchdog: Cancel | undefined;
  private readonly listeners = new Set<(relay: RelayEndpoint | undefined) => void>();

  constructor(private readonly o: RelayAgentOptions) {
    if (Array.isArray(o.relays) && o.relays.length === 0)
      throw new P2prcError("E_CONFIG", "relay agent: no relay to use");
    this.backoff = o.backoffMinMs ?? 250;
  }

  /** The relay this node is reachable through now (with its proven node id), if any. */
  get current(): RelayEndpoint | undefined {
    return this.relay;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.run++;
    void this.connect(this.run);
  }

  /**
   * Calls `fn` whenever the relay this node is reachable through changes (undefined: none now), as
   * `onChange` does: the node re-signs its record with it. Returns the unsubscribe function.
   */
  subscribe(fn: (relay: RelayEndpoint | undefined) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(relay: RelayEndpoint | undefined): void {
    this.o.onChange?.(relay);
    for (const fn of this.listeners) fn(relay);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.();
    this.watchdog?.();
    this.control?.end();
    this.control = undefined;
    if (this.relay) {
      this.relay = undefined;
      this.changed(undefined);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  private retry(run: number, delayMs: number): void {
    if (this.stopped || run !== this.run) return;
    this.timer = this.o.clock.setTimeout(() => void this.connect(run), delayMs);
  }

  private async connect(run: number): Promise<void> {
    if (this.stopped || run !== this.run) return;
    const { identity, logger } = this.o;
    const relays = typeof this.o.relays === "function" ? this.o.relays() : this.o.relays;
    if (relays.length === 0) {
      // a list from the IP table may be empty for now: look again after the backoff
      logger.debug(`relay: no relay known yet; looking again in ${this.backoff} ms`);
      this.retry(run, this.backoff);
      this.backoff = Math.min(this.o.backoffMaxMs ?? 10_000, this.backoff * 2);
      return;
    }
    const relay = relays[this.index % relays.length] as RelayEndpoint;
    const where = `${relay.host}:${relay.port}`;
    const node = identity.nodeId;
    const nonce = randomBytes(16).toString("hex");
    try {
      const conn = await relayConnect(
        relay,
        (hello) => signHello(identity, hello, { kind: "control", node, nonce }),
        this.o.timeoutMs,
      );
      const sig = conn.verdict.sig ?? "";
      if (!verifySignature(conn.relayId, relayProofText(conn.relayId, node, nonce), sig)) {
        conn.socket.end();
        throw new P2prcError("E_UNAUTHORIZED", `relay ${where} did not prove its key`);
      }
      if (this.stopped || run !== this.run) {
        conn.socket.end();
        return;
      }
      this.stats.connects++;
      this.backoff = this.o.backoffMinMs ?? 250;
      this.control = conn.socket;
      this.relay = { host: relay.host, port: relay.port, nodeId: conn.relayId };
      const pingMs = conn.verdict.pingMs ?? 15_000;
      let heard = this.o.clock.now();
      this.watchdog = this.o.clock.setInterval(() => {
        if (this.o.clock.now() - heard > 3 * pingMs) conn.socket.end();
      }, pingMs);
      const reader = new LineReader();
      conn.attach({
        data: (chunk) => {
          heard = this.o.clock.now();
          let rest = chunk;
          for (let got = reader.push(rest); got; got = reader.push(rest)) {
            rest = got.rest;
            this.onMessage(got.line, conn.socket);
          }
        },
        close: () => this.lost(run, where, conn.socket),
      });
      logger.info(`relay: reachable through ${where}`);
      this.changed(this.relay);
    } catch (err) {
      this.stats.failures++;
      logger.warn(`relay: ${where}: ${(err as Error).message}; retrying in ${this.backoff} ms`);
      this.index++;
      this.retry(run, this.backoff);
      this.backoff = Math.min(this.o.backoffMaxMs ?? 10_000, this.backoff * 2);
    }
  }

  private lost(run: number, where: string, socket: Socket<Pipe>): void {
    if (this.control !== socket) return; // a tunnel stop() already let go of
    this.watchdog?.();
    this.control = undefined;
    this.relay = undefined;
    if (this.stopped || run !== this.run) return;
    this.o.logger.warn(`relay: lost the tunnel to ${where}; failing over`);
    this.changed(undefined);
    this.index++;
    this.retry(run, this.o.backoffMinMs ?? 250);
  }

  private onMessage(line: string, control: Socket<Pipe>): void {
    let msg: { t?: string; token?: string; from?: string; port?: number; challenge?: string; sig?: string };
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    if (msg.t === "ping") control.write('{"t":"pong"}\n');
    const token = msg.token;
    if (msg.t !== "open" || typeof token !== "string" || !/^[0-9a-f]{32}$/.test(token) || !this.relay) return;
    const refuse = (message: string) => {
      this.stats.streamFailures++;
      control.write(`${JSON.stringify({ t: "refuse", token, message })}\n`);
    };
    // The caller's own signed hello, over the challenge of its connection to this (proven) relay:
    // the relay cannot make up who asked, nor for which port.
    const from = String(msg.from);
    const port = msg.port;
    const hello = { kind: "stream" as const, node: from, target: this.o.identity.nodeId, port };
    const relayId = this.relay.nodeId ?? "";
    if (!verifySignature(from, helloText(relayId, String(msg.challenge), hello), String(msg.sig)))
      refuse("the caller's hello does not verify");
    else if (port !== undefined && !(Number.isInteger(port) && this.o.allowPort?.(from, port)))
      refuse(`port ${port} is not open to this caller`);
    else if (port === undefined) this.openWork(token, this.relay, this.o.local.host, this.o.local.port);
    else this.openWork(token, this.relay, this.o.portsHost ?? this.o.local.host, port);
  }

  /** A stream asked for: a work connection to the relay, spliced to a new connection to the server. */
  private openWork(token: string, relay: RelayEndpoint, host: string, port: number): void {
    const { identity } = this.o;
    relayConnect(
      relay,
      (hello) => signHello(identity, hello, { kind: "work", node: identity.nodeId, token }),
      this.o.timeoutMs,
    ).then(
      (work) =>
        Bun.connect<Pipe>({
          hostname: host,
          port,
          data: pipeState(),
          socket: {
            open: (local) => {
              local.setNoDelay(true);
              this.stats.streams++;
              work.splice(local);
            },
            data: (s, chunk) => forward(s, chunk),
            drain: (s) => drained(s),
            close: (s) => unsplice(s),
            error: (s) => unsplice(s),
            connectError: () => {
              this.stats.streamFailures++;
              work.socket.end();
            },
          },
        }).catch(() => work.socket.end()),
      (err: Error) => {
        this.stats.streamFailures++;
        this.o.logger.debug(`relay: work connection: ${err.message}`);
      },
    );
  }
}
