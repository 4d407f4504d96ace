// The node's Prometheus metrics (prom-client): counters fed as things happen (requests, container starts,
// engine errors) and gauges read from the node's state at scrape time (peers, containers, batch tasks,
// gossip and relay counters kept by their own modules). No container or task ids as labels.
import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** What a scrape reads from the node (the composition root wires it). */
export interface MetricsSource {
  version: string;
  /** The IP table's other nodes, by state (alive, suspect, dead). */
  peerStates(): string[];
  /** This node's containers, by engine state (running, exited, created, …; "missing" when the engine lost one). */
  containerStates(): Promise<string[]>;
  /** The client's batch tasks, by state (pending, running, done, failed). */
  batchTaskStates(): string[];
  /** Gossip's own counters since start. */
  gossip(): { rounds: number; bytesSent: number; bytesReceived: number };
  /** The relay's counters, when this node is a relay. */
  relay?: () => { tunnels: number; streams: number; tunnelsOpened: number; bytes: number } | undefined;
}

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);

/** Counts of each value, with every `known` value present (so a gauge drops to 0 rather than vanishing). */
function tally(values: string[], known: string[]): Map<string, number> {
  const counts = new Map<string, number>(known.map((k) => [k, 0]));
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return counts;
}

/** Sets a counter to a total kept elsewhere (prom-client has no CounterFunc). */
function setTotal<T extends string>(counter: Counter<T>, value: number, labels?: Partial<Record<T, string>>) {
  if (labels) {
    counter.remove(labels);
    counter.inc(labels, value);
  } else {
    counter.reset();
    counter.inc(value);
  }
}

/** One node's metrics in their own registry (never prom-client's global one: tests start several nodes). */
export class NodeMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"method" | "route" | "status">;
  private readonly requestSeconds: Histogram<"route">;
  private readonly startSeconds: Histogram;
  private readonly engineErrors: Counter<"operation">;

  constructor(source: MetricsSource) {
    const registers = [this.registry];
    new Gauge({
      name: "p2prc_build_info",
      help: "The running p2prc version (always 1).",
      labelNames: ["version"],
      registers,
    }).set({ version: source.version }, 1);
    new Gauge({
      name: "p2prc_peers",
      help: "Other nodes in this node's IP table, by state.",
      labelNames: ["state"],
      registers,
      collect() {
        for (const [state, n] of tally(source.peerStates(), ["alive", "suspect", "dead"]))
          this.set({ state }, n);
      },
    });
    new Gauge({
      name: "p2prc_containers",
      help: "Containers p2prc runs on this node, by engine state.",
      labelNames: ["state"],
      registers,
      async collect() {
        this.reset();
        for (const [state, n] of tally(await source.containerStates(), ["running"])) this.set({ state }, n);
      },
    });
    new Gauge({
      name: "p2prc_batch_tasks",
      help: "Tasks of this node's client batches, by state.",
      labelNames: ["state"],
      registers,
      collect() {
        const known = ["pending", "running", "done", "failed"];
        for (const [state, n] of tally(source.batchTaskStates(), known)) this.set({ state }, n);
      },
    });
    new Counter({
      name: "p2prc_gossip_rounds_total",
      help: "Gossip rounds this node began.",
      registers,
      collect() {
        setTotal(this, source.gossip().rounds);
      },
    });
    new Counter({
      name: "p2prc_gossip_bytes_total",
      help: "Gossip bytes sent and received (JSON bodies).",
      labelNames: ["direction"],
      registers,
      collect() {
        const g = source.gossip();
        setTotal(this, g.bytesSent, { direction: "sent" });
        setTotal(this, g.bytesReceived, { direction: "received" });
      },
    });
    if (source.relay) this.relayMetrics(source.relay);
    this.requests = new Counter({
      name: "p2prc_http_requests_total",
      help: "HTTP requests answered, by method, route pattern and status.",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: "p2prc_http_request_duration_seconds",
      help: "Time to answer an HTTP request (to the first byte of a streamed one), by route pattern.",
      labelNames: ["route"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
    this.startSeconds = new Histogram({
      name: "p2prc_container_start_duration_seconds",
      help: "Time from the engine's create to a started container (image pulls not included).",
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    this.engineErrors = new Counter({
      name: "p2prc_engine_errors_total",
      help: "Engine calls that failed because of the engine (unreachable or an engine error), by operation.",
      labelNames: ["operation"],
      registers,
    });
  }

  private relayMetrics(relay: NonNullable<MetricsSource["relay"]>) {
    const registers = [this.registry];
    new Gauge({
      name: "p2prc_relay_tunnels",
      help: "Tunnels (relayed nodes) open on this relay now.",
      registers,
      collect() {
        this.set(relay()?.tunnels ?? 0);
      },
    });
    new Gauge({
      name: "p2prc_relay_streams",
      help: "Relayed connections open or pending now.",
      registers,
      collect() {
        this.set(relay()?.streams ?? 0);
      },
    });
    new Counter({
      name: "p2prc_relay_bytes_total",
      help: "Bytes the relay forwarded, both ways together.",
      registers,
      collect() {
        setTotal(this, relay()?.bytes ?? 0);
      },
    });
  }

  /** An answered HTTP request (server/app.ts calls this). */
  request(r: { method: string; route: string; status: number; seconds: number }): void {
    // any caller picks the method: a made-up one is "other", so labels stay a small, bounded set
    const method = METHODS.has(r.method) ? r.method : "other";
    this.requests.inc({ method, route: r.route, status: String(r.status) });
    this.requestSeconds.observe({ route: r.route }, r.seconds);
  }

  /** A container the engine created and started in `seconds`. */
  containerStarted(seconds: number): void {
    this.startSeconds.observe(seconds);
  }

  /** An engine call that failed because of the engine. */
  engineError(operation: string): void {
    this.engineErrors.inc({ operation });
  }

  /** The text exposition (`text/plain; version=0.0.4`). */
  async text(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
