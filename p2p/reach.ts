import {
  type Address,
  type Cancel,
  type Clock,
  fetchTransport,
  formatAddress,
  type Identity,
  type Logger,
  type NodeTransport,
  nodeUrl,
  P2prcError,
  PeerClient,
  pinnedTls,
} from "../core/index.ts";
import type { PeerRow } from "../store/index.ts";
import { type PeerTable, verifyRecord } from "./table.ts";
import type { SignedRecord } from "./types.ts";

/** How members reach a node: at its own address, or through a relay its record names. */
export type Reach = "direct" | "relay";

/** Config `behindNat`: "auto" finds out by dial-backs; "true" / "false" force it. */
export type NatMode = "auto" | "true" | "false";

/** What this node's record says about how it is reached. */
export interface ReachState {
  nat: boolean;
  reach: Reach;
  /** Relay nodes this node holds a tunnel to (left out of the record when none). */
  relays?: string[];
}

/** POST /v1/p2p/dialback: the asker's own signed record (its advertised address is dialed, nothing else). */
export interface DialbackRequest {
  record: SignedRecord;
}

/** What the member that dialed back saw. */
export interface DialbackResponse {
  reachable: boolean;
  /** The address dialed (`host:port`), or "" when the record names none. */
  address: string;
  /** Why not, when not reachable. */
  error?: string;
}

/** What GET /v1/p2p/reach answers: this node's reachability as last found. */
export interface ReachReport extends ReachState {
  mode: NatMode;
  /** When the last dial-back answered (ms since the epoch); absent: never (forced, or nobody to ask yet). */
  checkedAt?: number;
  /** Members that answered the last check, and what each saw. */
  answers: { by: string; reachable: boolean; error?: string }[];
}

/**
 * The pure decision: the config forces it, else any member that dialed this node back makes it direct;
 * answers that all failed make it relayed; no answer at all keeps what it was.
 */
export function decideReach(mode: NatMode, current: Reach, answers: readonly boolean[]): Reach {
  if (mode === "true") return "relay";
  if (mode === "false") return "direct";
  if (answers.length === 0) return current;
  return answers.some(Boolean) ? "direct" : "relay";
}

/**
 * Members to ask for a dial-back, best first: live, vouched for (a member or host of one of this node's
 * clusters, or `trusted`: `vouched`, their ids), reached directly themselves and with an address; the
 * lowest latency first. Only the vouched ids' rows are read, not the table: a node with no member to ask
 * checks again every second or so, and a pass over 100 rows each time was a cost that grew with the
 * network (bench/gossip).
 */
export function dialbackCandidates(
  table: PeerTable,
  selfId: string,
  vouched: Iterable<string>,
  max: number,
): SignedRecord[] {
  const rows: PeerRow[] = [];
  for (const id of vouched) {
    const row = id === selfId ? undefined : table.get(id);
    if (row?.state === "alive") rows.push(row);
  }
  return rows
    .sort(
      (a, b) =>
        (a.latencyMs ?? Number.POSITIVE_INFINITY) - (b.latencyMs ?? Number.POSITIVE_INFINITY) ||
        a.id.localeCompare(b.id),
    )
    .flatMap((row) => {
      const signed = table.record(row.id);
      return signed && signed.record.reach === "direct" && signed.record.addresses.length ? [signed] : [];
    })
    .slice(0, max);
}

export interface ReachDeps {
  identity: Identity;
  mode: NatMode;
  table: PeerTable;
  clock: Clock;
  logger: Logger;
  /** Whom this node asks: the ids of the nodes it vouches for (ClusterBook.vouchedIds). */
  vouched: () => Iterable<string>;
  /** This node's current signed record (its advertised address is what members dial). */
  selfRecord: () => Promise<SignedRecord>;
  /** Called when the state changed: the composition root re-signs the record (gossip.refreshSelf). */
  changed: (state: ReachState) => void;
  /** How this node reaches the members it asks (PeerTransport: TLS pinned to their records); default: `fetch`. */
  transport?: NodeTransport;
  fetch?: typeof fetch;
  /** Between checks once one was answered (default 60 s). */
  intervalMs?: number;
  /** Until a check is answered (nobody to ask yet; default 2 s). */
  retryMs?: number;
  /** The dial-back's own timeout (default 3 s); the asker waits this plus 2 s. */
  dialTimeoutMs?: number;
  /** Dial-backs one caller may ask for: one per this many ms (default 10 s). */
  perCallerMs?: number;
  /** Dial-backs in flight at once on this node (default 4). */
  maxConcurrent?: number;
}

/**
 * Finds out whether members can dial this node: asks up to two members to dial back the address in its
 * signed record and confirm its identity there (`POST /v1/p2p/dialback`), and answers members that ask
 * the same. Its state goes into the record (`reach`, `nat`, `relays`); the relay agent names the relays.
 *
 * The dial-back cannot be turned into an amplifier: only members may ask (the route is behind the
 * signed-request auth), only the asker's own signed record's first address is dialed, once per caller
 * per `perCallerMs`, at most `maxConcurrent` at once, with a short timeout, and the answer is a boolean.
 */
export class ReachService {
  private reach: Reach;
  private relays: string[] = [];
  private checkedAt: number | undefined;
  private answers: ReachReport["answers"] = [];
  private nextCheck = 0;
  private cancel: Cancel | undefined;
  /** Aborts the asks of a check in progress when the service stops. */
  private stopping = new AbortController();
  private running: Promise<unknown> | undefined;
  private readonly lastAsked = new Map<string, number>();
  private inFlight = 0;
  private readonly listeners: ((s: ReachState) => void)[] = [];
  private readonly log: Logger;
  private readonly fetchFn: typeof fetch;

  constructor(private readonly deps: ReachDeps) {
    // until a member answers, "auto" is what it always was: direct
    this.reach = decideReach(deps.mode, "direct", []);
    this.log = deps.logger.withTag("p2p:reach");
    this.fetchFn = deps.fetch ?? fetch;
  }

  /** What the record says now. */
  state(): ReachState {
    const s: ReachState = { nat: this.reach === "relay", reach: this.reach };
    if (this.reach === "relay" && this.relays.length) s.relays = [...this.relays];
    return s;
  }

  /** For GET /v1/p2p/reach and `p2prc doctor`. */
  report(): ReachReport {
    return {
      mode: this.deps.mode,
      ...this.state(),
      ...(this.checkedAt === undefined ? {} : { checkedAt: this.checkedAt }),
      answers: this.answers,
    };
  }

  /** Called back with the new state each time it changes (the relay agent starts or stops on it). */
  onChange(listener: (s: ReachState) => void): void {
    this.listeners.push(listener);
  }

  /** The relays this node holds a tunnel to now (the relay agent sets them; at most 4 are published). */
  setRelays(ids: readonly string[]): void {
    const next = [...new Set(ids)].slice(0, 4);
    if (next.join() === this.relays.join()) return;
    const before = JSON.stringify(this.state());
    this.relays = next;
    if (JSON.stringify(this.state()) !== before) this.emit();
  }

  private emit(): void {
    const s = this.state();
    this.deps.changed(s);
    for (const l of this.listeners) l(s);
  }

  /** One check: asks up to two members; returns the reach that follows (unchanged when nobody answered). */
  async check(): Promise<Reach> {
    const { mode, identity, table, vouched, clock } = this.deps;
    if (mode !== "auto") return this.reach;
    const self = await this.deps.selfRecord();
    if (self.record.addresses.length === 0) return this.reach; // nothing to dial yet (not learned)
    const asked = dialbackCandidates(table, identity.nodeId, vouched(), 2);
    const settled = await Promise.all(asked.map((m) => this.ask(m, self).catch((err: Error) => err)));
    const answers = settled.flatMap((a, i) =>
      a instanceof Error ? [] : [{ by: (asked[i] as SignedRecord).record.id, ...a }],
    );
    for (const [i, a] of settled.entries())
      if (a instanceof Error)
        this.log.debug(`dial-back by ${(asked[i] as SignedRecord).record.id.slice(0, 12)}: ${a.message}`);
    if (answers.length === 0) return this.reach;
    this.checkedAt = clock.now();
    this.answers = answers.map(({ by, reachable, error }) => ({
      by,
      reachable,
      ...(error ? { error } : {}),
    }));
    const next = decideReach(
      mode,
      this.reach,
      answers.map((a) => a.reachable),
    );
    if (next !== this.reach) {
      const how = answers.map((a) => `${a.by.slice(0, 12)}: ${a.reachable ? "dialed" : a.error}`).join("; ");
      this.log.info(`reachability: ${next} (${how})`);
      this.reach = next;
      this.emit();
    }
    return next;
  }

  private async ask(member: SignedRecord, self: SignedRecord): Promise<DialbackResponse> {
    const { record } = member;
    const { identity, clock, transport } = this.deps;
    const client = new PeerClient({ identity, clock, transport: transport ?? fetchTransport(this.fetchFn) });
    const node = {
      address: record.addresses[0] as Address,
      id: record.id,
      cert: record.cert,
      tls: !!record.cert,
    };
    const body = await client.json<Partial<DialbackResponse>>(node, "/v1/p2p/dialback", {
      method: "POST",
      json: { record: self } satisfies DialbackRequest,
      timeoutMs: (this.deps.dialTimeoutMs ?? 3000) + 2000,
      signal: this.stopping.signal,
    });
    if (typeof body.reachable !== "boolean") throw new Error("answer without `reachable`");
    return { reachable: body.reachable, address: String(body.address ?? ""), error: body.error };
  }

  /**
   * POST /v1/p2p/dialback from member `callerId`: dials the first address of the caller's own signed
   * record, fetches /v1/identity there (TLS pinned to the record's certificate) and answers whether the
   * caller itself answered. Over the limits: E_RATE_LIMIT (429), nothing dialed.
   */
  async handleDialback(callerId: string, raw: unknown): Promise<DialbackResponse> {
    const signed = verifyRecord((raw as { record?: unknown } | null)?.record);
    if (!signed)
      throw new P2prcError("E_INVALID", "record: not a validly signed node record", { field: "record" });
    if (signed.record.id !== callerId)
      throw new P2prcError("E_INVALID", "record: not the record of the node that signed the request", {
        field: "record",
      });
    const now = this.deps.clock.now();
    const perCaller = this.deps.perCallerMs ?? 10_000;
    const last = this.lastAsked.get(callerId);
    if (last !== undefined && now - last < perCaller)
      throw new P2prcError("E_RATE_LIMIT", `dial-back: at most one per ${perCaller / 1000} s per node`, {
        retryable: true,
      });
    if (this.inFlight >= (this.deps.maxConcurrent ?? 4))
      throw new P2prcError("E_RATE_LIMIT", "dial-back: too many in progress", { retryable: true });
    this.lastAsked.set(callerId, now);
    if (this.lastAsked.size > 10_000) this.lastAsked.delete(this.lastAsked.keys().next().value as string);
    const addr = signed.record.addresses[0];
    if (!addr) return { reachable: false, address: "", error: "the record names no address" };
    const url = nodeUrl(addr, !!signed.record.cert);
    const address = formatAddress(addr);
    this.inFlight++;
    try {
      // a fresh connection (no pooled session): only a dial that works now says "reachable"
      const res = await this.fetchFn(`${url}/v1/identity`, {
        keepalive: false,
        signal: AbortSignal.timeout(this.deps.dialTimeoutMs ?? 3000),
        ...(signed.record.cert ? { tls: pinnedTls(signed.record.cert) } : {}),
      } as RequestInit);
      const answered = verifyRecord(((await res.json()) as { record?: unknown }).record);
      if (answered?.record.id !== callerId)
        return { reachable: false, address, error: "another node answers at that address" };
      return { reachable: true, address };
    } catch (err) {
      return { reachable: false, address, error: `cannot dial ${address}: ${(err as Error).message}` };
    } finally {
      this.inFlight--;
    }
  }

  /** Checks now and then: every `retryMs` until a member answers, then every `intervalMs`. */
  start(): void {
    this.cancel?.();
    this.stopping = new AbortController();
    if (this.deps.mode !== "auto") return;
    const { clock } = this.deps;
    const retry = this.deps.retryMs ?? 2000;
    const tick = () => {
      if (this.running || clock.now() < this.nextCheck) return;
      const before = this.checkedAt;
      this.running = this.check()
        .catch((err) => this.log.warn(`reachability check failed: ${(err as Error).message}`))
        .finally(() => {
          this.running = undefined;
          const answered = this.checkedAt !== before;
          this.nextCheck = clock.now() + (answered ? (this.deps.intervalMs ?? 60_000) : retry);
        });
    };
    this.cancel = clock.setInterval(tick, retry);
    tick();
  }

  /** No more checks; a check in progress is aborted, and this resolves once it has ended. Idempotent. */
  async stop(): Promise<void> {
    this.cancel?.();
    this.cancel = undefined;
    this.stopping.abort(new Error("stopping"));
    await this.running;
  }
}
