// How long an exchange may take, and whether one that failed says anything about the peer: decisions of
// plain numbers (round trips and lateness measured by the shell), so that a starved host slows down
// instead of declaring its peers dead. Internal to p2p/ (gossip.ts uses it).

/**
 * The round trip of this node's exchanges, smoothed as TCP does (RFC 6298: `srtt`, `rttvar`, the
 * timeout `srtt + 4 × rttvar`). One estimate for the node, not one per peer: what makes answers late on
 * a starved host is the host (every exchange waits for a core), and a peer's own slowness is met by
 * the per-peer backoff below.
 */
export class RoundTrips {
  private srtt: number | undefined;
  private rttvar = 0;

  /** A successful exchange's round trip (wall time, ms). */
  sample(ms: number): void {
    if (this.srtt === undefined) {
      this.srtt = ms;
      this.rttvar = ms / 2;
      return;
    }
    this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms);
    this.srtt = 0.875 * this.srtt + 0.125 * ms;
  }

  /** `srtt + 4 × rttvar`, or undefined before the first sample. */
  get timeoutMs(): number | undefined {
    return this.srtt === undefined ? undefined : this.srtt + 4 * this.rttvar;
  }
}

/** The shortest timeout: 0.8 × the interval, within 150 ms … 2 s (what every exchange had before). */
export function baseTimeoutMs(intervalMs: number): number {
  return Math.min(2000, Math.max(150, Math.round(intervalMs * 0.8)));
}

/**
 * The longest: half the suspect timeout, and never under the base (a peer silent that long is already
 * on its way to being declared dead; waiting longer for one answer would only stall rounds).
 */
export function maxTimeoutMs(intervalMs: number, suspectTimeoutMs: number): number {
  return Math.max(baseTimeoutMs(intervalMs), Math.round(suspectTimeoutMs / 2));
}

/**
 * An exchange's timeout: the node's measured round trips (`srtt + 4 × rttvar`, never under the base),
 * doubled for each exchange with this peer that timed out in a row (`backoff`, as TCP's retransmission
 * timer), within the maximum. A healthy network keeps the base; a host whose answers come late (a
 * starved machine) or a slow-but-alive peer gets time to answer instead of being marked suspect.
 */
export function exchangeTimeoutMs(o: {
  intervalMs: number;
  suspectTimeoutMs: number;
  measuredMs: number | undefined;
  backoff: number;
}): number {
  const base = Math.max(baseTimeoutMs(o.intervalMs), Math.ceil(o.measuredMs ?? 0));
  return Math.min(maxTimeoutMs(o.intervalMs, o.suspectTimeoutMs), base * 2 ** Math.min(o.backoff, 8));
}

/**
 * Whether a failed exchange counts against the peer (suspect, then dead). Not when it timed out while
 * this node was itself late: its own event loop ran behind (measured at its timer, `lagMs`) by at least
 * a quarter of the time the exchange had, so the answer may have been there, unread. A refused
 * connection, an error answer, or a timeout on a node that keeps time all count, so a dead peer is
 * still found dead.
 */
export function failureCounts(o: { timedOut: boolean; lagMs: number; timeoutMs: number }): boolean {
  return !o.timedOut || o.lagMs * 4 < o.timeoutMs;
}

/**
 * How late this node's event loop runs, from its round timer: each tick's lateness past the interval,
 * kept as a decaying maximum (halved each tick), so one late tick counts for a few rounds and a
 * starved host reads late for as long as it stays starved.
 */
export class Lateness {
  private last: number | undefined;
  private lag = 0;

  /** A timer tick at `now` (ms, a monotonic clock), due `intervalMs` after the previous one. */
  tick(now: number, intervalMs: number): void {
    const late = this.last === undefined ? 0 : Math.max(0, now - this.last - intervalMs);
    this.last = now;
    this.lag = Math.max(late, this.lag / 2);
  }

  get lagMs(): number {
    return this.lag;
  }
}

/**
 * How many peers a round may contact while exchanges time out: a congestion window, as TCP's (AIMD). A
 * round in which an exchange with a peer of the table timed out (on a node that kept time: see
 * failureCounts) halves it, down to one; a round with answers and no timeout raises it by one, up to the
 * fanout. A refused connection or an error answer says nothing of load and counts as neither.
 *
 * Why: a timeout is the sign of an overloaded network or host, and more contacts then add load where
 * there is no room for it (the work for an answer that comes too late is wasted on both sides). Without
 * it, failures made every round a full one plus every suspect: 100 nodes started at once on a 2-core
 * host stayed at a load of ~100 for minutes, a few nodes cut off for good. Halving only when at least as
 * many exchanges timed out as answered (tried for a session) let that storm last twice as long.
 *
 * How long a silent peer must stay silent before this node declares it dead is a second measure,
 * `stretch` (Lifeguard's "local health", in SWIM terms: a node whose own exchanges time out is the worst
 * judge of whether its peers are alive), taken from exchanges with peers that were alive (not suspects):
 * a round in which such an exchange timed out and no more of them answered adds one, a round in which
 * more of them answered than timed out takes one off, within 1 … fanout. Suspects are left out: one
 * dead host (its packets dropped) times out every round until it is declared dead, whatever this
 * node's health. So such a host narrows the window for a few rounds but is declared dead as fast as
 * before (live peers answer beside it), while a node whose peers stop answering in time (an overloaded
 * host or network) waits up to `fanout` suspect timeouts.
 */
export class Window {
  private size: number;
  private health = 0;

  constructor(private readonly max: number) {
    this.size = max;
  }

  /** Peers a round may contact (suspects and alive peers, each up to this many), ≥ 1. */
  get value(): number {
    return this.size;
  }

  /** Whether exchanges timed out lately (the window is below the fanout). */
  get reduced(): boolean {
    return this.size < this.max;
  }

  /** How many `suspectTimeoutMs` a peer must be silent before this node declares it dead: 1 … fanout. */
  get stretch(): number {
    return 1 + this.health;
  }

  /**
   * One round's outcome: exchanges with peers of the table that timed out (counted ones) and that
   * answered; `alive`: those of them with peers that were not suspects (the stretch's measure).
   */
  round(all: Outcome, alive: Outcome = all): void {
    if (all.timeouts > 0) this.size = Math.max(1, Math.floor(this.size / 2));
    else if (all.answered > 0) this.size = Math.min(this.max, this.size + 1);
    if (alive.timeouts > 0 && alive.timeouts >= alive.answered)
      this.health = Math.min(this.max - 1, this.health + 1);
    else if (alive.answered > alive.timeouts) this.health = Math.max(0, this.health - 1);
  }
}

/** Exchanges of one round that timed out and that answered. */
export interface Outcome {
  timeouts: number;
  answered: number;
}

/**
 * Seeds whose exchanges time out are left alone for a few rounds: after k timeouts in a row, the next
 * try is a random number of rounds later, from 2^(k−1) to 2^k − 1 (at most 16–31), with the base
 * timeout. Exponential backoff with jitter, as against any overloaded server: when a network starts
 * at once, every new node has only its seed to try, and trying it every round, each try a new TLS
 * connection given up after the base timeout, kept the seed too busy to answer anyone. A seed's
 * timeout itself does not grow (as a peer's does): one that accepts and never answers is tried for
 * good, and a round must not wait longer for it each time. Keys are seed addresses.
 */
export class SeedPauses {
  private readonly paused = new Map<string, { strikes: number; until: number }>();

  constructor(private readonly random: () => number) {}

  /** Whether the seed at `key` is tried in round number `round`. */
  due(key: string, round: number): boolean {
    const p = this.paused.get(key);
    return !p || round >= p.until;
  }

  /** The seed's exchange in round `round` timed out. */
  timedOut(key: string, round: number): void {
    const strikes = (this.paused.get(key)?.strikes ?? 0) + 1;
    const span = 2 ** Math.min(strikes - 1, 4);
    this.paused.set(key, { strikes, until: round + span + Math.floor(span * this.random()) });
  }

  /** The seed answered: tried every round again. */
  answered(key: string): void {
    this.paused.delete(key);
  }
}

/**
 * Whether a peer's keep-alive connection is worth keeping after an exchange: when this node will
 * likely contact that peer again before the connection's idle timeout closes it anyway. Rounds take
 * peers least recently tried first, `perRound` of them each interval, so a peer comes round again
 * after about `alive / perRound` intervals (a quiet network: one peer a round). Beyond the idle
 * timeout a kept connection only sits idle until it closes (its socket and TLS state on both sides);
 * closing it at once costs no handshake that would not have come anyway.
 */
export function keepSession(o: {
  alive: number;
  perRound: number;
  intervalMs: number;
  idleTimeoutMs: number;
}): boolean {
  return (o.alive / Math.max(1, o.perRound)) * o.intervalMs <= o.idleTimeoutMs;
}
