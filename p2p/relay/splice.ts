// Splicing two sockets: bytes read from one are written to the other as they come, with backpressure
// (a reader is paused while its peer's kernel buffer is full, and resumed on the peer's drain), and
// no copy unless a write was short. Every relay path (relay, agent, caller's forwarder) uses it.
import type { Socket } from "bun";

/** Per-socket state a spliced socket carries in `socket.data`. */
export interface Pipe {
  /** The socket this one is spliced to. */
  peer: Socket<Pipe> | undefined;
  /** Bytes not yet written to this socket (a short write): its peer is paused until they are. */
  out: Uint8Array | undefined;
  /** End this socket once `out` is written (its peer closed). */
  endAfter: boolean;
  /** Called with the byte count of each chunk forwarded from this socket (counters, idle clocks). */
  onBytes?: ((n: number) => void) | undefined;
}

/** Fresh pipe state. */
export function pipeState(): Pipe {
  return { peer: undefined, out: undefined, endAfter: false, onBytes: undefined };
}

/** Joins `a` and `b`; the bytes each already read (`aRest`, `bRest`) go to the other first. */
export function splice(a: Socket<Pipe>, b: Socket<Pipe>, aRest?: Uint8Array, bRest?: Uint8Array): void {
  a.data.peer = b;
  b.data.peer = a;
  if (aRest?.length) forward(a, aRest);
  if (bRest?.length) forward(b, bRest);
}

/** A chunk read from `from`: written to its peer, or kept and `from` paused when the peer is full. */
export function forward(from: Socket<Pipe>, chunk: Uint8Array): void {
  const to = from.data.peer;
  if (!to) return;
  from.data.onBytes?.(chunk.length);
  const out = to.data.out;
  if (out) {
    to.data.out = Buffer.concat([out, chunk]);
    from.pause();
    return;
  }
  const n = to.write(chunk);
  if (n < chunk.length) {
    if (n < 0) return; // `to` is closing; its close handler ends `from`
    to.data.out = Buffer.from(chunk.subarray(n));
    from.pause();
  }
}

/** `to` can take more: write what it kept, then resume its peer (or end it, when the peer closed). */
export function drained(to: Socket<Pipe>): void {
  const out = to.data.out;
  if (!out) return;
  const n = to.write(out);
  if (n >= 0 && n < out.length) {
    to.data.out = out.subarray(n);
    return;
  }
  to.data.out = undefined;
  if (to.data.endAfter) to.end();
  else to.data.peer?.resume();
}

/** `s` closed: its peer ends once it has written what it kept. Idempotent. */
export function unsplice(s: Socket<Pipe>): void {
  const peer = s.data.peer;
  s.data.peer = undefined;
  if (!peer) return;
  peer.data.peer = undefined;
  if (peer.data.out) peer.data.endAfter = true;
  else peer.end();
}

/** Socket handlers that splice: data forwards, drain flushes, close/error unsplice. */
export const spliceHandlers = {
  data: (s: Socket<Pipe>, chunk: Uint8Array) => forward(s, chunk),
  drain: (s: Socket<Pipe>) => drained(s),
  close: (s: Socket<Pipe>) => unsplice(s),
  error: (s: Socket<Pipe>) => unsplice(s),
};
