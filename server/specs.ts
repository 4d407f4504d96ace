import { statfsSync } from "node:fs";
import { arch, cpus, freemem, hostname, loadavg, platform, totalmem } from "node:os";
import type { Config } from "../config/index.ts";
import type { Clock } from "../core/index.ts";
import type { ContainerStore } from "../store/index.ts";
import type { ClusterInfo, ContainerEngine } from "./engine/index.ts";
import type { GpuProbe, Specs } from "./types.ts";

export interface SpecsDeps {
  nodeId: string;
  config: Config;
  engine: ContainerEngine;
  /** The container table: the slice of the store the server owns. */
  records: ContainerStore;
  gpus: GpuProbe;
  /** Directory whose file system is reported as disk. */
  dataDir: string;
}

/** Longest /v1/specs waits for the engine's version. */
const SPECS_ENGINE_WAIT_MS = 2000;

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

/** What this node still offers under its limits: from the config and the store, no engine call. */
export function capacityOf(
  deps: Pick<SpecsDeps, "config" | "records">,
  gpus: number,
  cores = cpus().length,
  totalMb = Math.round(totalmem() / 1048576),
) {
  const { config } = deps;
  const running = deps.records.list();
  const usedCpus = running.reduce((n, r) => n + r.cpus, 0);
  const usedMem = running.reduce((n, r) => n + r.memoryMb, 0);
  return {
    running: running.length,
    cpus: round(Math.max(0, cores - usedCpus), 2),
    memoryMb: Math.max(0, totalMb - usedMem),
    gpus,
    freeContainers: Math.max(0, config.maxContainers - running.length),
    maxCpusPerContainer: config.maxCpusPerContainer,
    maxMemoryMbPerContainer: config.maxMemoryMbPerContainer,
  };
}

/**
 * The offer of the signed record: what capacityOf says of this host, or, when the engine places containers
 * on a cluster (a swarm), of the cluster's ready machines, with how many there are. A cluster that does
 * not answer offers nothing until it does.
 */
export async function offerOf(
  deps: Pick<SpecsDeps, "config" | "records" | "engine" | "gpus">,
): Promise<ReturnType<typeof capacityOf> & { machines?: number }> {
  if (deps.engine.cluster) {
    const c = await deps.engine.cluster().catch(() => undefined);
    return { ...capacityOf(deps, c?.gpus ?? 0, c?.cpus ?? 0, c?.memoryMb ?? 0), machines: c?.machines ?? 0 };
  }
  return capacityOf(deps, (await deps.gpus().catch(() => [])).length);
}

/**
 * The facts that cost a call outside the process (the engine, the GPU probe) or a read of /proc
 * (memory and load: a fifth of a cached answer's time when read per answer), or never change.
 */
interface Probed {
  gpus: Specs["gpus"];
  engine: Specs["engine"];
  disk: Specs["disk"];
  cpu: Specs["cpu"];
  memory: Specs["memory"];
  load: Specs["load"];
  hostname: string;
  /** The swarm behind the engine, when it is one (undefined too when it did not answer). */
  cluster: ClusterInfo | undefined;
}

/** Asks the engine, the GPU probe and the file system; never throws. */
async function probe(deps: SpecsDeps): Promise<Probed> {
  const { config } = deps;
  let disk = { totalGb: 0, freeGb: 0 };
  try {
    const s = statfsSync(deps.dataDir);
    disk = { totalGb: round((s.blocks * s.bsize) / 1e9), freeGb: round((s.bavail * s.bsize) / 1e9) };
  } catch {
    // a missing data dir reports zero rather than failing the whole call
  }
  // Specs are informational: an engine that is slow to answer is reported unreachable after at most
  // SPECS_ENGINE_WAIT_MS (or engineTimeoutMs when shorter) rather than holding the answer.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const slow = new Promise<{ reachable: boolean }>((resolve) => {
    timer = setTimeout(
      () => resolve({ reachable: false }),
      Math.min(SPECS_ENGINE_WAIT_MS, config.engineTimeoutMs),
    );
  });
  const [gpus, engine, cluster] = await Promise.all([
    deps.gpus().catch(() => []),
    Promise.race([
      deps.engine
        .ping()
        .then((i) => ({ reachable: true, version: i.version }))
        .catch(() => ({ reachable: false })),
      slow,
    ]).finally(() => clearTimeout(timer)),
    deps.engine.cluster?.().catch(() => undefined),
  ]);
  const cpuList = cpus();
  return {
    gpus,
    engine,
    disk,
    cpu: { model: cpuList[0]?.model.trim() ?? "unknown", cores: cpuList.length },
    memory: { totalMb: Math.round(totalmem() / 1048576), freeMb: Math.round(freemem() / 1048576) },
    load: loadavg().map((l) => round(l, 2)),
    hostname: hostname(),
    cluster,
  };
}

/** The specs from probed facts and what this node's own table says now (tasks, free capacity). */
function assemble(deps: SpecsDeps, p: Probed): Specs {
  const { config } = deps;
  const c = p.cluster;
  const cap = c
    ? capacityOf(deps, c.gpus, c.cpus, c.memoryMb)
    : capacityOf(deps, p.gpus.length, p.cpu.cores, p.memory.totalMb);
  return {
    nodeId: deps.nodeId,
    name: config.machineName,
    hostname: p.hostname,
    platform: platform(),
    arch: arch(),
    cpu: p.cpu,
    memory: p.memory,
    disk: p.disk,
    gpus: p.gpus,
    load: p.load,
    engine: p.engine,
    tasks: { running: cap.running, total: cap.running, max: config.maxContainers },
    free: {
      containers: cap.freeContainers,
      cpus: cap.cpus,
      memoryMb: cap.memoryMb,
      maxCpusPerContainer: config.maxCpusPerContainer,
      maxMemoryMbPerContainer: config.maxMemoryMbPerContainer,
      gpu: (c ? c.gpus : p.gpus.length) > 0,
    },
    ...(c
      ? {
          cluster: {
            kind: c.kind,
            machines: c.machines,
            cpus: c.cpus,
            memoryMb: c.memoryMb,
            gpus: c.gpus,
            nodes: c.nodes.map(({ hostname, ready, manager, cpus, memoryMb, gpus, noNewPrivileges }) => ({
              hostname,
              ready,
              manager,
              cpus,
              memoryMb,
              gpus,
              ...(noNewPrivileges === undefined ? {} : { noNewPrivileges }),
            })),
          },
        }
      : {}),
  };
}

/** This machine and what it still offers under its limits, every fact asked afresh. */
export async function collectSpecs(deps: SpecsDeps): Promise<Specs> {
  return assemble(deps, await probe(deps));
}

/**
 * `/v1/specs` from a cache: the engine, GPU, disk and CPU facts are probed at most once at a time, and
 * refreshed in the background once older than `maxAgeMs` (the answer does not wait: it carries the facts
 * probed last). Tasks and free capacity follow the container table at once (a created container shows in
 * the next answer): the answer is assembled again only when the facts were probed again or the table was
 * written since (`records.changes()`), so a steady stream of requests costs no read of the table. Free
 * memory and load are as probed (at most `maxAgeMs` old). Only the first answer waits for a probe, and an
 * answer whose last probe found the engine unreachable waits for a new one (so a node whose engine came
 * back says so at once). One engine ping per `maxAgeMs` at most, however many requests come.
 */
export function cachedSpecs(deps: SpecsDeps, clock: Clock, maxAgeMs = 2000): () => Promise<Specs> {
  let last: { facts: Probed; at: number } | undefined;
  let probing: Promise<Probed> | undefined;
  let answer: { facts: Probed; changes: number; specs: Specs } | undefined;
  const refresh = () => {
    probing ??= probe(deps)
      .then((facts) => {
        last = { facts, at: clock.now() };
        return facts;
      })
      .finally(() => {
        probing = undefined;
      });
    return probing;
  };
  const assembled = (facts: Probed) => {
    const changes = deps.records.changes();
    if (answer?.facts !== facts || answer.changes !== changes)
      answer = { facts, changes, specs: assemble(deps, facts) };
    return answer.specs;
  };
  return async () => {
    if (!last || !last.facts.engine.reachable) return assembled(await refresh());
    if (clock.now() - last.at >= maxAgeMs) void refresh();
    return assembled(last.facts);
  };
}

/** P2PRC's `SysInfo` shape for `GET /server_info`. */
export function toP2prcSysInfo(s: Specs) {
  const gpu = s.gpus[0];
  return {
    Hostname: s.hostname,
    Platform: s.platform,
    CPU: `${s.cpu.model} (${s.cpu.cores} cores)`,
    RAM: `${s.memory.totalMb} MB`,
    Disk: `${s.disk.totalGb} GB`,
    GPU: gpu
      ? {
          DriveVersion: gpu.driverVersion,
          Gpu: {
            GpuName: gpu.name,
            Utilization: { GpuUsage: `${gpu.utilizationPercent} %`, MemoryUsage: `${gpu.memoryUsedMb} MiB` },
          },
          All: s.gpus,
        }
      : null,
  };
}
