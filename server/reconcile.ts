import type { Cancel, Clock, Logger } from "../core/index.ts";
import type { ContainerRecord, ContainerStore } from "../store/index.ts";
import { LABELS } from "./containers.ts";
import type { ContainerEngine, ContainerInfo } from "./engine/index.ts";

export interface ReconcilerDeps {
  nodeId: string;
  engine: ContainerEngine;
  /** The container table: the slice of the store the server owns. */
  records: ContainerStore;
  clock: Clock;
  logger: Logger;
  /** Host named in the ssh command of an adopted container. */
  sshHost: string;
  /** Names being created right now; left alone. */
  creating: () => ReadonlySet<string>;
  /** Most bytes a container may write to its own file system, in MiB; undefined = no check. */
  maxDiskMb?: number | undefined;
  /**
   * How long an owner's network stays after its last container went (default 60 s), so a member that
   * runs one task after another does not pay for a new network (~0.5 s) each time.
   */
  networkIdleMs?: number | undefined;
  /** Told of each container the pass removes and why (the service answers its owner with the reason). */
  removed?: ((rec: ContainerRecord, reason: string) => void) | undefined;
}

/** What one pass changed. */
export interface ReconcileReport {
  /** Records whose container was removed behind the server's back. */
  forgotten: string[];
  /** Containers labelled as this node's that the store had lost, now tracked again. */
  adopted: string[];
  /** Containers labelled as this node's that could not be adopted, removed. */
  removedOrphans: string[];
  /** Containers whose lease ended, removed. */
  expired: string[];
  /** Containers that wrote more than maxDiskMb to their own file system, removed. */
  overDisk: string[];
  /** Networks of owners with no container left, removed. */
  networks: string[];
}

function adoptable(info: ContainerInfo, sshHost: string): ContainerRecord | undefined {
  const l = info.labels;
  const owner = l[LABELS.owner];
  const created = Number(l[LABELS.created]);
  const expires = Number(l[LABELS.expires]);
  const cpus = Number(l[LABELS.cpus]);
  const memoryMb = Number(l[LABELS.memory]);
  if (!owner || !Number.isFinite(created) || !Number.isFinite(expires) || !(cpus > 0) || !(memoryMb > 0)) {
    return undefined;
  }
  return {
    id: info.id,
    name: info.name,
    image: info.image,
    owner,
    createdAt: created,
    expiresAt: expires,
    cpus,
    memoryMb,
    gpu: l[LABELS.gpu] === "true",
    ports: info.ports,
    ssh: sshInfo(info, sshHost),
  };
}

function sshInfo(info: ContainerInfo, host: string): ContainerRecord["ssh"] {
  const port =
    info.labels[LABELS.ssh] === "true" ? info.ports.find((p) => p.internal === 22)?.external : undefined;
  const at = info.ports.find((p) => p.internal === 22)?.host ?? host;
  return port ? { port, user: "root", command: `ssh -p ${port} root@${at}` } : undefined;
}

/** A pass's report with nothing done yet. */
function emptyReport(): ReconcileReport {
  return { forgotten: [], adopted: [], removedOrphans: [], expired: [], overDisk: [], networks: [] };
}

/**
 * Makes the store and the engine agree (nomad's reconcile_dangling): runs at start and periodically.
 * Only containers labelled with this node's id are touched, so several nodes can share one engine.
 */
export class Reconciler {
  private cancel: Cancel | undefined;
  private running: Promise<ReconcileReport> | undefined;
  private readonly log: Logger;
  /** When each of this node's networks was first seen with no container of its owner. */
  private readonly idleSince = new Map<string, number>();

  constructor(private readonly deps: ReconcilerDeps) {
    this.log = deps.logger.withTag("reconcile");
  }

  /** One pass; concurrent calls share the pass in progress. */
  run(): Promise<ReconcileReport> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<ReconcileReport> {
    const { engine, records, clock, nodeId } = this.deps;
    const report = emptyReport();
    const creating = this.deps.creating();
    const live = await engine.listByLabel(`${LABELS.node}=${nodeId}`);
    const liveIds = new Set(live.map((c) => c.id));
    const known = new Map(records.list().map((r) => [r.id, r]));

    for (const rec of known.values()) {
      if (!liveIds.has(rec.id)) {
        records.remove(rec.id);
        report.forgotten.push(rec.name);
      }
    }
    for (const info of live) {
      if (known.has(info.id) || creating.has(info.name)) continue;
      const rec = adoptable(info, this.deps.sshHost);
      if (rec && rec.expiresAt > clock.now()) {
        records.insert(rec);
        report.adopted.push(info.name);
      } else {
        await engine.remove(info.id);
        report.removedOrphans.push(info.name);
      }
    }
    for (const rec of records.expired(clock.now())) {
      await engine.remove(rec.id);
      records.remove(rec.id);
      report.expired.push(rec.name);
      this.deps.removed?.(rec, "its lease ended");
    }
    await this.checkDisk(report);
    await this.removeUnusedNetworks(report, creating);
    const changed = Object.entries(report).filter(([, names]) => names.length > 0);
    for (const [what, names] of changed) this.log.info(`${what}: ${names.join(", ")}`);
    return report;
  }

  /**
   * Removes containers over maxDiskMb. Where the engine applies a quota (StorageOpt size) a container
   * cannot get there; elsewhere this is the limit, checked once a pass, so a container may pass it by
   * what it writes in one interval before it is removed.
   */
  private async checkDisk(report: ReconcileReport): Promise<void> {
    const { engine, records, nodeId, maxDiskMb } = this.deps;
    if (!maxDiskMb || engine.diskQuota() === true) return;
    const limit = maxDiskMb * 1024 * 1024;
    const usage = await engine.diskUsage(`${LABELS.node}=${nodeId}`);
    for (const [id, bytes] of usage) {
      if (bytes <= limit) continue;
      const rec = records.get(id);
      if (!rec) continue; // not yet recorded (being created) or an orphan handled above
      const reason = `it wrote ${Math.round(bytes / 1024 / 1024)} MiB to its file system, over maxDiskMbPerContainer=${maxDiskMb}`;
      this.log.warn(`removing ${rec.name} (${id.slice(0, 12)}) of ${rec.owner}: ${reason}`);
      await engine.remove(id);
      records.remove(id);
      report.overDisk.push(rec.name);
      this.deps.removed?.(rec, reason);
    }
  }

  /**
   * Removes the networks of owners that have had no container on this node for networkIdleMs (not while
   * a create runs; a create that races the removal makes the network again).
   */
  private async removeUnusedNetworks(
    report: ReconcileReport,
    creating: ReadonlySet<string>,
    idleMs = this.deps.networkIdleMs ?? 60_000,
  ): Promise<void> {
    const { engine, nodeId, clock } = this.deps;
    const networks = await engine.listNetworks(`${LABELS.node}=${nodeId}`);
    const owners = networks.some((n) => n.containers === 0)
      ? new Set((await engine.listByLabel(`${LABELS.node}=${nodeId}`)).map((c) => c.labels[LABELS.owner]))
      : new Set<string | undefined>();
    const now = clock.now();
    const seen = new Set<string>();
    for (const n of networks) {
      seen.add(n.name);
      if (n.containers > 0 || owners.has(n.labels[LABELS.owner])) {
        this.idleSince.delete(n.name);
        continue;
      }
      const since = this.idleSince.get(n.name) ?? now;
      this.idleSince.set(n.name, since);
      if (now - since < idleMs || creating.size > 0 || this.deps.creating().size > 0) continue;
      if (await engine.removeNetwork(n.name)) {
        report.networks.push(n.name);
        this.idleSince.delete(n.name);
      }
    }
    for (const name of this.idleSince.keys()) if (!seen.has(name)) this.idleSince.delete(name);
  }

  /**
   * At a node's stop: removes the networks of owners with no container on this node now, without waiting
   * for networkIdleMs (no later pass would: a node that stops for good, or comes back under another id,
   * would leave them, and the engine's address pools run out after a few dozen). Returns their names.
   */
  async releaseNetworks(): Promise<string[]> {
    const report = emptyReport();
    await this.removeUnusedNetworks(report, this.deps.creating(), 0);
    if (report.networks.length) this.log.info(`networks: ${report.networks.join(", ")}`);
    return report.networks;
  }

  /** Runs a pass every `intervalMs`; errors are logged, never thrown. */
  start(intervalMs: number): void {
    this.stop();
    this.cancel = this.deps.clock.setInterval(() => {
      this.run().catch((err) => this.log.warn(`reconcile failed: ${(err as Error).message}`));
    }, intervalMs);
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
  }

  /** Waits for a pass in progress (graceful stop). */
  async idle(): Promise<void> {
    await this.running?.catch(() => undefined);
  }
}
