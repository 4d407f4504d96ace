// The dialer's side of a relay connection (a node's control and work connections, a caller's stream):
// connect, read the relay's hello, answer with a signed hello, read the verdict.
import type { Socket } from "bun";
import { P2prcError } from "../../core/index.ts";
import { type DialerHello, LineReader, parseRelayHello, parseVerdict, type RelayHello } from "./handshake.ts";
import { drained, forward, type Pipe, pipeState, splice, unsplice } from "./splice.ts";
import type { RelayEndpoint } from "./types.ts";

/** Where the bytes of an open relay connection go when it is not spliced to another socket. */
export interface Sink {
  data(chunk: Uint8Array): void;
  drain?(): void;
  close(): void;
}

interface DialConn extends Pipe {
  phase: "hello" | "verdict" | "open" | "failed";
  reader: LineReader;
  hello: (relay: RelayHello) => DialerHello;
  relay: RelayHello | undefined;
  settle: { resolve: (c: RelayConnection) => void; reject: (err: Error) => void };
  sink: Sink | undefined;
  /** Bytes read after the verdict before a sink or a peer was attached. */
  early: Uint8Array[];
}

/** An open relay connection, paused: `attach` a sink or `splice` it, then `resume`. */
export interface RelayConnection {
  socket: Socket<Pipe>;
  /** The relay's node id, from its hello. */
  relayId: string;
  /** The verdict's extra fields (a control connection's `sig` and `pingMs`). */
  verdict: { sig?: string; pingMs?: number };
  /** Sends this connection's bytes to `sink` (those already read first) and resumes reading. */
  attach(sink: Sink): void;
  /** Splices this connection to `other` (`otherRest`: bytes `other` already read) and resumes both. */
  splice(other: Socket<Pipe>, otherRest?: Uint8Array): void;
}

const fail = (s: Socket<DialConn>, err: Error) => {
  if (s.data.phase === "open" || s.data.phase === "failed") return;
  s.data.phase = "failed";
  s.data.settle.reject(err);
  s.end();
};

/**
 * Dials `relay` and completes the handshake with the hello `hello` builds from the relay's challenge.
 * Rejects with the relay's refusal (its code), or E_NODE_UNREACHABLE.
 */
export function relayConnect(
  relay: RelayEndpoint,
  hello: (relay: RelayHello) => DialerHello,
  timeoutMs = 10_000,
): Promise<RelayConnection> {
  const where = `${relay.host}:${relay.port}`;
  return new Promise<RelayConnection>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const settle = {
      resolve: (c: RelayConnection) => {
        clearTimeout(timer);
        resolve(c);
      },
      reject: (err: Error) => {
        clearTimeout(timer);
        reject(err);
      },
    };
    const data: DialConn = {
      ...pipeState(),
      phase: "hello",
      reader: new LineReader(),
      hello,
      relay: undefined,
      settle,
      sink: undefined,
      early: [],
    };
    Bun.connect<DialConn>({
      hostname: relay.host,
      port: relay.port,
      data,
      socket: {
        open(s) {
          s.setNoDelay(true);
          timer = setTimeout(
            () => fail(s, new P2prcError("E_NODE_UNREACHABLE", `relay ${where}: handshake timed out`)),
            timeoutMs,
          );
        },
        data(s, chunk) {
          const c = s.data;
          if (c.phase === "open") {
            if (c.peer) forward(s as Socket<Pipe>, chunk);
            else if (c.sink) c.sink.data(chunk);
            else c.early.push(Buffer.from(chunk));
            return;
          }
          try {
            let rest: Uint8Array = chunk;
            while (c.phase === "hello" || c.phase === "verdict") {
              const got = c.reader.push(rest);
              if (!got) return;
              rest = got.rest;
              if (c.phase === "hello") {
                c.relay = parseRelayHello(got.line);
                if (relay.nodeId && c.relay.relay !== relay.nodeId)
                  throw new P2prcError("E_NODE_UNREACHABLE", `relay ${where} is another node`);
                c.phase = "verdict";
                s.write(`${JSON.stringify(c.hello(c.relay))}\n`);
                continue;
              }
              const verdict = parseVerdict(got.line);
              c.phase = "open";
              s.pause();
              if (rest.length) c.early.push(Buffer.from(rest));
              const takeEarly = () => {
                const early = Buffer.concat(c.early);
                c.early = [];
                return early;
              };
              c.settle.resolve({
                socket: s as Socket<Pipe>,
                relayId: c.relay?.relay ?? "",
                verdict,
                attach(sink) {
                  c.sink = sink;
                  const early = takeEarly();
                  if (early.length) sink.data(early);
                  s.resume();
                },
                splice(other, otherRest) {
                  splice(s as Socket<Pipe>, other, takeEarly(), otherRest);
                  s.resume();
                  other.resume();
                },
              });
            }
          } catch (err) {
            fail(s, err as Error);
          }
        },
        drain(s) {
          drained(s as Socket<Pipe>);
          s.data.sink?.drain?.();
        },
        close(s) {
          fail(s, new P2prcError("E_NODE_UNREACHABLE", `relay ${where} closed the connection`));
          unsplice(s as Socket<Pipe>);
          s.data.sink?.close();
        },
        error(s, err) {
          fail(s, new P2prcError("E_NODE_UNREACHABLE", `relay ${where}: ${err.message}`, { cause: err }));
        },
        connectError(_s, err) {
          settle.reject(
            new P2prcError("E_NODE_UNREACHABLE", `cannot reach relay ${where}: ${err.message}`, {
              cause: err,
              retryable: true,
            }),
          );
        },
      },
    }).catch((err: Error) =>
      settle.reject(new P2prcError("E_NODE_UNREACHABLE", `cannot reach relay ${where}: ${err.message}`)),
    );
  });
}
