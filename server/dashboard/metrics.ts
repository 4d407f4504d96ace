// The node's Prometheus metrics (prom-client): counters fed as things happen (requests, container starts,
// engine errors) and gauges read from the node's state at scrape time (peers, containers, batch tasks,
// gossip and relay counters kept by their own modules). No container or task ids as labels.
//
// prom-client (with @opentelemetry/api, which it imports) is loaded at the first scrape, not at start: it
// was ~7 MB of an idle node's RSS (a compiled binary importing it alone: 30.3 → 37.8 MB). What is fed
// as things happen is counted here in plain objects (FedCounter, FedHistogram) that the registry reads
// like its own metrics, in prom-client's format; the gauges read at scrape time are prom-client's.
import type { Counter, Registry } from "prom-client";

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

type Labels = Record<string, string>;
/** One exported value, as prom-client's own metrics hand it to the registry (`getForPromString`). */
type Value = {
  labels: Record<string, string | number>;
  sharedLabels: Labels;
  value: number;
  metricName?: string;
};

/** A counter fed as things happen, read by the registry like prom-client's (no prom-client needed to count). */
class FedCounter {
  private readonly counts = new Map<string, { labels: Labels; value: number }>();
  readonly type = "counter";
  readonly aggregator = "sum";
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels): void {
    const key = JSON.stringify(labels);
    const held = this.counts.get(key);
    if (held) held.value++;
    else this.counts.set(key, { labels, value: 1 });
  }

  getForPromString() {
    const values: Value[] = [...this.counts.values()].map((c) => ({
      labels: { ...c.labels },
      sharedLabels: {},
      value: c.value,
    }));
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  get() {
    return this.getForPromString();
  }

  reset(): void {
    this.counts.clear();
  }
}

/** A histogram fed as things happen (cumulative buckets, sum and count per label set), prom-client's format. */
class FedHistogram {
  private readonly data = new Map<
    string,
    { labels: Labels; buckets: number[]; sum: number; count: number }
  >();
  readonly type = "histogram";
  readonly aggregator = "sum";
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: number[],
  ) {}

  observe(labels: Labels, value: number): void {
    const key = JSON.stringify(labels);
    let d = this.data.get(key);
    if (!d) {
      d = { labels, buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.data.set(key, d);
    }
    const i = this.bounds.findIndex((b) => value <= b);
    if (i >= 0) d.buckets[i] = (d.buckets[i] as number) + 1;
    d.sum += value;
    d.count++;
  }

  getForPromString() {
    const values: Value[] = [];
    for (const d of this.data.values()) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += d.buckets[i] as number;
        values.push({
          labels: { le },
          sharedLabels: d.labels,
          value: acc,
          metricName: `${this.name}_bucket`,
        });
      });
      values.push(
        { labels: { le: "+Inf" }, sharedLabels: d.labels, value: d.count, metricName: `${this.name}_bucket` },
        { labels: {}, sharedLabels: d.labels, value: d.sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels: d.labels, value: d.count, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  get() {
    return this.getForPromString();
  }

  reset(): void {
    this.data.clear();
  }
}

/** One node's metrics in their own registry (never prom-client's global one: tests start several nodes). */
export class NodeMetrics {
  private readonly requests = new FedCounter(
    "p2prc_http_requests_total",
    "HTTP requests answered, by method, route pattern and status.",
  );
  private readonly requestSeconds = new FedHistogram(
    "p2prc_http_request_duration_seconds",
    "Time to answer an HTTP request (to the first byte of a streamed one), by route pattern.",
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
  );
  private readonly startSeconds = new FedHistogram(
    "p2prc_container_start_duration_seconds",
    "Time from the engine's create to a started container (image pulls not included).",
    [0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
  );
  private readonly engineErrors = new FedCounter(
    "p2prc_engine_errors_total",
    "Engine calls that failed because of the engine (unreachable or an engine error), by operation.",
  );
  private registry: Promise<Registry> | undefined;

  constructor(private readonly source: MetricsSource) {}

  /** The registry, made at the first scrape (prom-client loads then). */
  private load(): Promise<Registry> {
    this.registry ??= import("prom-client").then((prom) => this.build(prom));
    return this.registry;
  }

  private build(prom: typeof import("prom-client")): Registry {
    const { Counter, Gauge, Registry } = prom;
    const source = this.source;
    const registry = new Registry();
    const registers = [registry];
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
    if (source.relay) this.relayMetrics(prom, registry, source.relay);
    // in the order prom-client listed them when they were its own
    for (const fed of [this.requests, this.requestSeconds, this.startSeconds, this.engineErrors])
      registry.registerMetric(fed as unknown as Parameters<Registry["registerMetric"]>[0]);
    return registry;
  }

  private relayMetrics(
    { Counter, Gauge }: typeof import("prom-client"),
    registry: Registry,
    relay: NonNullable<MetricsSource["relay"]>,
  ) {
    const registers = [registry];
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
    this.startSeconds.observe({}, seconds);
  }

  /** An engine call that failed because of the engine. */
  engineError(operation: string): void {
    this.engineErrors.inc({ operation });
  }

  /** The text exposition (`text/plain; version=0.0.4`). */
  async text(): Promise<{ body: string; contentType: string }> {
    const registry = await this.load();
    return { body: await registry.metrics(), contentType: registry.contentType };
  }
}
