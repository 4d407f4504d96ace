import type { Clock } from "../core/index.ts";
import type { SignedRecord } from "./types.ts";

export interface IntroductionsOptions {
  clock: Clock;
  /** Most records waiting at once (config `maxUnverifiedPeers`). */
  max: number;
  /** Most one peer may have introduced: waiting, or found unreachable within `rejectMs` (config `maxUnverifiedPerPeer`). */
  perPeer: number;
  /** Longest time a node found unreachable is neither asked for nor probed again. */
  rejectMs: number;
  /**
   * How long after its first failed probe a node may be probed again; each further failure in a row
   * doubles it, up to `rejectMs`. A probe that failed once because a busy node answered late must not
   * keep a real node out for a minute. Default: `rejectMs`.
   */
  retryMs?: number;
}

interface Waiting {
  signed: SignedRecord;
  introducer: string;
}

interface Rejected {
  until: number;
  introducer: string;
}

/**
 * Records of nodes that peers passed on and that this node has not reached itself yet. They wait here,
 * in memory and bounded, until a probe (an exchange with the node at its address) admits them to the IP
 * table; a node that does not answer is set aside for `rejectMs`. Each introducer has a budget: what it
 * introduced that is waiting or was found unreachable lately counts against it, so one peer pushing
 * thousands of made-up records costs this node a few probes a minute, and cannot crowd out the others.
 */
export class Introductions {
  private readonly waiting = new Map<string, Waiting>();
  private readonly rejected = new Map<string, Rejected>();
  /** Per introducer: how many of its introductions are waiting or rejected. */
  private readonly spent = new Map<string, number>();
  /** Failed probes in a row, by node id (bounded like `rejected`; forgotten when the node is admitted). */
  private readonly strikes = new Map<string, number>();

  constructor(private readonly o: IntroductionsOptions) {}

  get size(): number {
    return this.waiting.size;
  }

  /** Whether a record of `id` at `version` would be taken (not waiting at that version, not set aside). */
  wants(id: string, version: number): boolean {
    const w = this.waiting.get(id);
    if (w) return w.signed.record.version < version;
    const r = this.rejected.get(id);
    return !r || r.until <= this.o.clock.now();
  }

  /** How many more records `introducer` may introduce now (its budget, and the room left in all). */
  room(introducer: string): number {
    this.expire();
    const left = Math.min(this.o.perPeer - (this.spent.get(introducer) ?? 0), this.o.max - this.waiting.size);
    return Math.max(0, left);
  }

  /** Offers a verified record; returns whether it now waits for a probe. */
  offer(signed: SignedRecord, introducer: string): boolean {
    const { id, version, addresses } = signed.record;
    const held = this.waiting.get(id);
    if (held) {
      if (held.signed.record.version < version) held.signed = signed;
      return true;
    }
    if (addresses.length === 0) return false; // nothing to probe
    this.expire();
    if (this.rejected.has(id)) return false;
    if (this.waiting.size >= this.o.max) return false;
    if ((this.spent.get(introducer) ?? 0) >= this.o.perPeer) return false;
    this.waiting.set(id, { signed, introducer });
    this.charge(introducer, 1);
    return true;
  }

  /** Takes up to `n` waiting records to probe, the longest waiting first. */
  take(n: number): SignedRecord[] {
    const out: SignedRecord[] = [];
    for (const [id, w] of this.waiting) {
      if (out.length >= n) break;
      out.push(w.signed);
      this.waiting.delete(id);
      this.charge(w.introducer, -1);
      // counted against the introducer until the probe's outcome is known
      this.rejected.set(id, { until: Number.POSITIVE_INFINITY, introducer: w.introducer });
      this.charge(w.introducer, 1);
    }
    return out;
  }

  /** The probe of `id` reached it (or it reached this node): its introducer gets the budget back. */
  admitted(id: string): void {
    const w = this.waiting.get(id);
    if (w) {
      this.waiting.delete(id);
      this.charge(w.introducer, -1);
    }
    const r = this.rejected.get(id);
    if (r) {
      this.rejected.delete(id);
      this.charge(r.introducer, -1);
    }
    this.strikes.delete(id);
  }

  /**
   * The probe of `id` failed: set aside for `retryMs`, doubled for each failure in a row up to
   * `rejectMs`, and still counted against its introducer meanwhile.
   */
  unreachable(id: string): void {
    const r = this.rejected.get(id);
    if (!r) return;
    const strikes = (this.strikes.get(id) ?? 0) + 1;
    this.strikes.delete(id); // re-inserted last: the map's order is the order of the latest failures
    this.strikes.set(id, strikes);
    const limit = Math.max(4 * this.o.max, 64);
    for (const old of this.strikes.keys()) {
      if (this.strikes.size <= limit) break;
      this.strikes.delete(old);
    }
    const first = this.o.retryMs ?? this.o.rejectMs;
    r.until = this.o.clock.now() + Math.min(this.o.rejectMs, first * 2 ** Math.min(strikes - 1, 30));
  }

  /** Forgets rejections that are over; keeps at most 4 × `max` of them (the oldest go first). */
  expire(): void {
    const now = this.o.clock.now();
    const limit = Math.max(4 * this.o.max, 64);
    for (const [id, r] of this.rejected) {
      if (r.until > now && this.rejected.size <= limit) continue;
      this.rejected.delete(id);
      this.charge(r.introducer, -1);
    }
  }

  private charge(introducer: string, n: number): void {
    const next = (this.spent.get(introducer) ?? 0) + n;
    if (next > 0) this.spent.set(introducer, next);
    else this.spent.delete(introducer);
  }
}
