import { createHash, randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { availableParallelism } from "node:os";
import type { Config } from "../config/index.ts";
import { type Clock, type Logger, P2prcError, RUNTIME_IMAGE, unbracket, wrapError } from "../core/index.ts";
import type { ContainerRecord, ContainerStore } from "../store/index.ts";
import type { Caller } from "./caller.ts";
import {
  type ContainerEngine,
  type ContainerInfo,
  type ContainerSpec,
  type LogsOptions,
  MANAGED_LABEL,
} from "./engine/index.ts";
import {
  checkImage,
  checkRegistryAddresses,
  type HostResolver,
  type ImageRef,
  systemResolver,
} from "./images.ts";
import { freePorts } from "./ports.ts";
import { createTar } from "./tar.ts";
import type {
  ContainerView,
  CreateContainerRequest,
  ExecRequest,
  ExecSessionRequest,
  GpuProbe,
} from "./types.ts";

/** What the container service needs; built by the composition root. */
export interface ContainerServiceDeps {
  nodeId: string;
  config: Config;
  engine: ContainerEngine;
  /** The container table: the slice of the store the server owns. */
  records: ContainerStore;
  clock: Clock;
  logger: Logger;
  gpus: GpuProbe;
  /** How a registry's name is looked up before a pull (default: the system resolver, 2 s). */
  resolveHost?: HostResolver | undefined;
  /**
   * Brings an image no registry has from a member that has it (node to node, ImageService); true once
   * the engine has it. Without it a failed pull is the end.
   */
  fetchImage?: ((image: string, caller: Caller) => Promise<boolean>) | undefined;
  /** The node's runtime image for futures (`image: "p2prc-runtime"`), built on first use; none without it. */
  runtimeImage?: (() => Promise<string>) | undefined;
}

/** Keeps an imported image (no CMD) running until its lease ends; works with busybox and coreutils. */
const KEEP_ALIVE = ["tail", "-f", "/dev/null"];
/** Capabilities sshd needs after everything else is dropped (privilege separation, login, chroot). */
const SSHD_CAPS = [
  "CHOWN",
  "SETUID",
  "SETGID",
  "SYS_CHROOT",
  "AUDIT_WRITE",
  "KILL",
  "NET_BIND_SERVICE",
  "DAC_OVERRIDE",
  "FOWNER",
];
/** Fixed start-up of sshd inside the container: no request data is part of this command. */
const SSHD_START = [
  "sh",
  "-c",
  "mkdir -p /run/sshd && chmod 0755 /run/sshd && (ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A >/dev/null) && exec /usr/sbin/sshd -e",
];

export const LABELS = {
  node: MANAGED_LABEL,
  owner: "p2prc.owner",
  created: "p2prc.created",
  expires: "p2prc.expires",
  ttl: "p2prc.ttl",
  cpus: "p2prc.cpus",
  memory: "p2prc.memory-mb",
  gpu: "p2prc.gpu",
  ssh: "p2prc.ssh",
} as const;

/** How the engine says a container's network is gone (at create or at start). */
const NETWORK_GONE = /network \S+ not found|no such network/i;

/**
 * The engine network of one owner's containers on one node: `p2prc-net-` and 12 hex of a hash of both,
 * so names stay short and do not reveal the owner's id to someone listing networks.
 */
export function ownerNetwork(nodeId: string, owner: string): string {
  return `p2prc-net-${createHash("sha256").update(`${nodeId}\n${owner}`).digest("hex").slice(0, 12)}`;
}

export interface CreateResult {
  id: string;
  name: string;
  image: string;
  ports: { internal: number; external: number }[];
  ssh?: { port: number; user: string; command: string } | undefined;
  expiresAt: string;
}

/** Creates, tracks and removes task containers under this node's limits and isolation defaults. */
export class ContainerService {
  private readonly inFlight = new Set<string>();
  /** What each create in progress will hold, by name: counted against its member's quota. */
  private readonly inFlightUse = new Map<string, { owner: string; cpus: number; memoryMb: number }>();
  private readonly log: Logger;
  private firstReconcile: Promise<unknown> = Promise.resolve();
  /** Whether the log said that the engine has no writable-layer quota. */
  private toldNoQuota = false;
  /** Removals answered already and still running (removeInBackground). */
  private readonly removing = new Set<Promise<void>>();
  /** Containers the node removed on its own (lease, disk), by id, oldest first. */
  private readonly removedReasons = new Map<string, { name: string; owner: string; reason: string }>();

  private readonly resolveHost: HostResolver;

  constructor(private readonly deps: ContainerServiceDeps) {
    this.log = deps.logger.withTag("containers");
    this.resolveHost = deps.resolveHost ?? systemResolver();
  }

  /**
   * The node serves before its first reconcile ends (a hung engine must not keep it silent); until
   * then, routes that read the store wait for that pass, at most config `engineTimeoutMs`, so a list
   * right after a restart already shows what the engine holds.
   */
  waitFor(firstReconcile: Promise<unknown>): void {
    this.firstReconcile = firstReconcile.catch(() => undefined);
  }

  private async ready(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.firstReconcile,
      new Promise((resolve) => {
        timer = setTimeout(resolve, this.deps.config.engineTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Names being created right now (the reconciler leaves them alone). */
  creating(): ReadonlySet<string> {
    return this.inFlight;
  }

  async create(req: CreateContainerRequest, caller: Caller, publicHost: string): Promise<CreateResult> {
    const { config, engine, records, clock } = this.deps;
    await this.ready();
    // the runtime image is the node's own executable: offered whatever allowedImages lists (Docs/Futures.md)
    const runtime = req.image === RUNTIME_IMAGE && this.deps.runtimeImage !== undefined;
    if (runtime && !config.futures)
      throw new P2prcError("E_FORBIDDEN", "this node does not offer its runtime image (futures=false)", {
        field: "image",
      });
    const image = runtime ? await this.runtimeImage() : (req.image ?? config.defaultImage);
    const ref = checkImage(image, runtime ? { ...config, allowedImages: [] } : config);
    const cpus = req.cpus ?? Math.min(config.defaultCpus, config.maxCpusPerContainer);
    if (cpus > config.maxCpusPerContainer) {
      throw new P2prcError(
        "E_LIMIT",
        `cpus ${cpus} is over this node's limit maxCpusPerContainer=${config.maxCpusPerContainer}`,
        {
          field: "cpus",
        },
      );
    }
    // behind a swarm one container runs on one machine: the largest ready one's cpus, and the swarm's GPUs
    const cluster = await engine.cluster?.().catch(() => undefined);
    const hostCpus = cluster
      ? Math.max(0, ...cluster.nodes.filter((n) => n.ready).map((n) => n.cpus))
      : availableParallelism();
    if (cpus > hostCpus) {
      throw new P2prcError("E_LIMIT", `cpus ${cpus} is more than this host has (${hostCpus})`, {
        field: "cpus",
      });
    }
    const memoryMb = req.memoryMb ?? Math.min(config.defaultMemoryMb, config.maxMemoryMbPerContainer);
    if (memoryMb > config.maxMemoryMbPerContainer) {
      throw new P2prcError(
        "E_LIMIT",
        `memoryMb ${memoryMb} is over this node's limit maxMemoryMbPerContainer=${config.maxMemoryMbPerContainer}`,
        { field: "memoryMb" },
      );
    }
    const ttlSeconds = req.ttlSeconds ?? Math.min(config.defaultTtlSeconds, config.maxTtlSeconds);
    if (ttlSeconds > config.maxTtlSeconds) {
      throw new P2prcError(
        "E_LIMIT",
        `ttlSeconds ${ttlSeconds} is over this node's limit maxTtlSeconds=${config.maxTtlSeconds}`,
        {
          field: "ttlSeconds",
        },
      );
    }
    if (records.count() + this.inFlight.size >= config.maxContainers) {
      throw new P2prcError(
        "E_RATE_LIMIT",
        `this node runs its limit of maxContainers=${config.maxContainers} containers`,
        {
          retryable: true,
        },
      );
    }
    if (!caller.operator) this.checkMemberQuota(caller.id, cpus, memoryMb);
    const gpu = req.gpu === true;
    if (gpu && (cluster ? cluster.gpus : (await this.deps.gpus()).length) === 0) {
      throw new P2prcError("E_CONFLICT", "this node has no GPUs", { field: "gpu" });
    }
    const name = `p2prc-${req.name ?? randomBytes(5).toString("hex")}`;
    if (records.get(name) || this.inFlight.has(name)) {
      throw new P2prcError("E_CONFLICT", `a container named ${name} already exists`, { field: "name" });
    }

    this.inFlight.add(name);
    this.inFlightUse.set(name, { owner: caller.id, cpus, memoryMb });
    let id: string | undefined;
    try {
      const details = await this.ensureImage(image, ref, caller);
      const publishHost = this.publishHost();
      const fixed = (await freePorts(req.ports ?? 0, publishHost ?? "0.0.0.0")).map((p) => ({
        internal: p,
        external: p,
      }));
      const publish = [...new Set([...(req.publish ?? []), ...(req.sshPublicKey ? [22] : [])])];
      const network = ownerNetwork(this.deps.nodeId, caller.id);
      const networkLabels = { [LABELS.node]: this.deps.nodeId, [LABELS.owner]: caller.id };
      await engine.ensureNetwork(network, networkLabels);
      const now = clock.now();
      const expiresAt = now + ttlSeconds * 1000;
      const spec: ContainerSpec = {
        name,
        image,
        command: req.command ?? (details.hasDefaultCommand ? undefined : KEEP_ALIVE),
        env: req.env,
        labels: {
          [LABELS.node]: this.deps.nodeId,
          [LABELS.owner]: caller.id,
          [LABELS.created]: String(now),
          [LABELS.expires]: String(expiresAt),
          [LABELS.ttl]: String(ttlSeconds),
          [LABELS.cpus]: String(cpus),
          [LABELS.memory]: String(memoryMb),
          [LABELS.gpu]: String(gpu),
          [LABELS.ssh]: String(Boolean(req.sshPublicKey)),
        },
        cpus,
        memoryMb,
        pidsLimit: config.pidsLimit,
        publish,
        publishFixed: fixed,
        publishHost,
        gpu,
        capAdd: req.sshPublicKey ? SSHD_CAPS : [],
        network,
        log: { maxMb: config.containerLogMaxMb, maxFiles: config.containerLogMaxFiles },
        diskMb: config.maxDiskMbPerContainer,
      };
      const createAndStart = async () => {
        id = await engine.create(spec);
        if (req.sshPublicKey) {
          const key = req.sshPublicKey.endsWith("\n") ? req.sshPublicKey : `${req.sshPublicKey}\n`;
          await engine.putArchive(
            id,
            "/",
            createTar([
              { path: "root", mode: 0o700 },
              { path: "root/.ssh", mode: 0o700 },
              { path: "root/.ssh/authorized_keys", mode: 0o600, content: key },
            ]),
          );
        }
        await engine.start(id);
      };
      try {
        await createAndStart();
      } catch (err) {
        // The reconciler removes an idle owner's network; a create racing that removal (the engine
        // finds the network missing at create or at start) makes the network again, once.
        if (!(err instanceof P2prcError && err.code === "E_NOT_FOUND" && NETWORK_GONE.test(err.message))) {
          throw err;
        }
        if (id) await engine.remove(id);
        id = undefined;
        await engine.ensureNetwork(network, networkLabels);
        await createAndStart();
      }
      if (!id) throw new P2prcError("E_ENGINE", `container ${name} was not created`, { retryable: true });
      if (req.sshPublicKey) {
        const started = await engine.exec(id, SSHD_START, { timeoutMs: 30_000 });
        if (started.exitCode !== 0) {
          throw new P2prcError(
            "E_CONFLICT",
            `image ${image} cannot serve SSH (sshd did not start: ${(started.stderr || started.stdout).trim().slice(0, 200) || `exit ${started.exitCode}`})`,
            { field: "sshPublicKey" },
          );
        }
      }
      const info = await engine.inspect(id);
      if (!info)
        throw new P2prcError("E_ENGINE", `container ${name} vanished right after start`, { retryable: true });
      const sshMapping = info.ports.find((p) => p.internal === 22 && req.sshPublicKey);
      const sshPort = sshMapping?.external;
      // a port published on one machine of a swarm (no routing mesh) is reached at that machine
      const sshAt = sshMapping?.host ?? publicHost;
      const ssh = sshPort
        ? { port: sshPort, user: "root", command: `ssh -p ${sshPort} root@${sshAt}` }
        : undefined;
      const record: ContainerRecord = {
        id,
        name,
        image,
        owner: caller.id,
        createdAt: now,
        expiresAt,
        cpus,
        memoryMb,
        gpu,
        ports: info.ports,
        ssh,
      };
      records.insert(record);
      if (engine.diskQuota() === false && !this.toldNoQuota) {
        this.toldNoQuota = true;
        this.log.info(
          `the engine applies no writable-layer quota (${engine.diskQuotaRefusal()}); the reconciler removes containers that write over maxDiskMbPerContainer=${config.maxDiskMbPerContainer} MiB`,
        );
      }
      this.log.info(
        `created ${name} (${id.slice(0, 12)}) image=${image} owner=${caller.id} ttl=${ttlSeconds}s`,
      );
      return { id, name, image, ports: info.ports, ssh, expiresAt: new Date(expiresAt).toISOString() };
    } catch (err) {
      if (id) await engine.remove(id).catch(() => undefined);
      throw err instanceof P2prcError ? err : wrapError(err, `create container ${name}`);
    } finally {
      this.inFlight.delete(name);
      this.inFlightUse.delete(name);
    }
  }

  /**
   * The host address published ports bind to: config `publishHost`, else the address the node serves on;
   * undefined (every interface) when that is a wildcard or a name rather than an address.
   */
  private publishHost(): string | undefined {
    const { publishHost, serverHost } = this.deps.config;
    const host = unbracket(publishHost || serverHost);
    if (host === "0.0.0.0" || host === "::" || isIP(host) === 0) return undefined;
    return host;
  }

  /** Per-member quotas (the node's own key is exempt): containers, CPUs and memory held at once. */
  private checkMemberQuota(owner: string, cpus: number, memoryMb: number): void {
    const { config, records } = this.deps;
    const held = [
      ...records.list().filter((r) => r.owner === owner),
      ...[...this.inFlightUse.values()].filter((u) => u.owner === owner),
    ];
    if (held.length >= config.memberMaxContainers) {
      throw new P2prcError(
        "E_RATE_LIMIT",
        `member limit memberMaxContainers=${config.memberMaxContainers} reached for this caller`,
        { retryable: true },
      );
    }
    const usedCpus = held.reduce((n, r) => n + r.cpus, 0);
    if (usedCpus + cpus > config.memberMaxCpus + 1e-9) {
      throw new P2prcError(
        "E_LIMIT",
        `cpus ${cpus} would take this caller over its member limit memberMaxCpus=${config.memberMaxCpus} (holds ${usedCpus})`,
        { field: "cpus" },
      );
    }
    const usedMem = held.reduce((n, r) => n + r.memoryMb, 0);
    if (usedMem + memoryMb > config.memberMaxMemoryMb) {
      throw new P2prcError(
        "E_LIMIT",
        `memoryMb ${memoryMb} would take this caller over its member limit memberMaxMemoryMb=${config.memberMaxMemoryMb} (holds ${usedMem})`,
        { field: "memoryMb" },
      );
    }
  }

  private async runtimeImage(): Promise<string> {
    try {
      return (await this.deps.runtimeImage?.()) ?? RUNTIME_IMAGE;
    } catch (err) {
      throw new P2prcError("E_ENGINE", `runtime image: ${(err as Error).message}`, {
        field: "image",
        cause: err,
      });
    }
  }

  private async ensureImage(image: string, ref: ImageRef, caller: Caller) {
    const { engine } = this.deps;
    const present = await engine.inspectImage(image);
    if (present) return present;
    let pullError: unknown;
    try {
      await checkRegistryAddresses(image, ref, this.deps.config, this.resolveHost);
      this.log.info(`pulling ${image} ...`);
      await engine.pull(image);
    } catch (err) {
      if (err instanceof P2prcError && (err.code === "E_ENGINE_UNAVAILABLE" || err.code === "E_FORBIDDEN"))
        throw err;
      pullError = err;
    }
    // no registry has it (or none answers): a member node may (ImageService.fetchFromMembers)
    if (pullError !== undefined && !(await this.deps.fetchImage?.(image, caller))) {
      // the pull's own reason when it has one (a registry that does not resolve), else the generic one
      const why =
        pullError instanceof P2prcError && pullError.message.startsWith(`image ${image}`)
          ? pullError.message
          : `image ${image} is not on this node, could not be pulled`;
      throw new P2prcError(
        "E_NOT_FOUND",
        `${why}${this.deps.fetchImage ? ", and no member node has it" : ""}`,
        {
          field: "image",
          cause: pullError,
        },
      );
    }
    const pulled = await engine.inspectImage(image);
    if (!pulled)
      throw new P2prcError("E_NOT_FOUND", `image ${image} is not on this node`, { field: "image" });
    return pulled;
  }

  /** Remembers why the node removed a container, so its owner's next request says so (last 1000 kept). */
  noteRemoved(rec: ContainerRecord, reason: string): void {
    this.removedReasons.delete(rec.id);
    this.removedReasons.set(rec.id, { name: rec.name, owner: rec.owner, reason });
    if (this.removedReasons.size > 1000) {
      const oldest = this.removedReasons.keys().next().value;
      if (oldest !== undefined) this.removedReasons.delete(oldest);
    }
  }

  /** The record of a container the caller may use; 404 for unknown ones and for other owners' (no probing). */
  record(idOrName: string, caller: Caller): ContainerRecord {
    // a name as the client gave it to create (`web1`) or as the node keeps it (`p2prc-web1`)
    const rec =
      this.deps.records.get(idOrName) ??
      this.deps.records.get(`p2prc-${idOrName}`) ??
      this.byPrefix(idOrName);
    if (!rec || (!caller.admin && rec.owner !== caller.id)) {
      for (const [id, gone] of this.removedReasons) {
        const named = gone.name === idOrName || gone.name === `p2prc-${idOrName}`;
        if ((id === idOrName || named) && (caller.admin || gone.owner === caller.id)) {
          throw new P2prcError(
            "E_NOT_FOUND",
            `container ${gone.name} was removed by this node: ${gone.reason}`,
            { field: "id" },
          );
        }
      }
      throw new P2prcError("E_NOT_FOUND", `no container ${idOrName} on this node`, { field: "id" });
    }
    return rec;
  }

  private byPrefix(prefix: string): ContainerRecord | undefined {
    if (!/^[0-9a-f]{6,64}$/.test(prefix)) return undefined;
    const matches = this.deps.records.list().filter((r) => r.id.startsWith(prefix));
    return matches.length === 1 ? matches[0] : undefined;
  }

  private view(rec: ContainerRecord, info: ContainerInfo | undefined): ContainerView {
    return {
      id: rec.id,
      name: rec.name,
      image: rec.image,
      owner: rec.owner,
      state: info?.state ?? "missing",
      running: info?.running ?? false,
      exitCode: info?.exitCode,
      createdAt: new Date(rec.createdAt).toISOString(),
      expiresAt: new Date(rec.expiresAt).toISOString(),
      cpus: rec.cpus,
      memoryMb: rec.memoryMb,
      gpu: rec.gpu,
      ports: rec.ports,
      ssh: rec.ssh,
    };
  }

  async list(caller: Caller): Promise<ContainerView[]> {
    await this.ready();
    const records = this.deps.records.list().filter((r) => caller.admin || r.owner === caller.id);
    const infos = await Promise.all(records.map((r) => this.deps.engine.inspect(r.id)));
    return records.map((r, i) => this.view(r, infos[i]));
  }

  async get(idOrName: string, caller: Caller): Promise<ContainerView> {
    await this.ready();
    const rec = this.record(idOrName, caller);
    return this.view(rec, await this.deps.engine.inspect(rec.id));
  }

  async remove(idOrName: string, caller: Caller): Promise<void> {
    await this.ready();
    const rec = this.record(idOrName, caller);
    await this.deps.engine.remove(rec.id);
    this.deps.records.remove(rec.id);
    this.log.info(`removed ${rec.name} (${rec.id.slice(0, 12)}) on request of ${caller.id}`);
  }

  /**
   * Removes a container after the caller is answered (`DELETE /:id?background=1`: a batch's pool at its
   * end). Its lease ends now, before the answer: if the removal fails, or the node stops before it is
   * done, the next reconcile pass removes it as an expired container. `settled()` waits for these.
   */
  async removeInBackground(idOrName: string, caller: Caller): Promise<void> {
    await this.ready();
    const { engine, records, clock } = this.deps;
    const rec = this.record(idOrName, caller);
    records.setExpiry(rec.id, clock.now());
    const removal: Promise<void> = engine
      .remove(rec.id)
      .then(
        () => {
          records.remove(rec.id);
          this.log.info(`removed ${rec.name} (${rec.id.slice(0, 12)}) on request of ${caller.id}`);
        },
        (err) => this.log.warn(`remove ${rec.name}: ${err} (its lease has ended: reconcile removes it)`),
      )
      .finally(() => this.removing.delete(removal));
    this.removing.add(removal);
  }

  /** Waits for the removals answered before they were done (a node's stop, before its store closes). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.removing]);
  }

  /**
   * Renews a container's lease: it now ends `ttlSeconds` from now (at most config `maxTtlSeconds`). The
   * engine's `p2prc.expires` label keeps the first lease: a node that lost its database adopts the
   * container with that one.
   */
  async renew(idOrName: string, caller: Caller, ttlSeconds: number): Promise<ContainerView> {
    await this.ready();
    const { config, records, clock } = this.deps;
    if (ttlSeconds > config.maxTtlSeconds) {
      throw new P2prcError(
        "E_LIMIT",
        `ttlSeconds ${ttlSeconds} is over this node's limit maxTtlSeconds=${config.maxTtlSeconds}`,
        { field: "ttlSeconds" },
      );
    }
    const rec = this.record(idOrName, caller);
    const expiresAt = clock.now() + ttlSeconds * 1000;
    records.setExpiry(rec.id, expiresAt);
    this.log.info(
      `renewed ${rec.name} (${rec.id.slice(0, 12)}) for ${ttlSeconds}s on request of ${caller.id}`,
    );
    return this.view({ ...rec, expiresAt }, await this.deps.engine.inspect(rec.id));
  }

  /** Stops a container without removing it: its lease, record and files stay; `start` runs it again. */
  async stop(idOrName: string, caller: Caller, timeoutSeconds: number): Promise<ContainerView> {
    await this.ready();
    const rec = this.record(idOrName, caller);
    await this.deps.engine.stop(rec.id, timeoutSeconds);
    this.log.info(`stopped ${rec.name} (${rec.id.slice(0, 12)}) on request of ${caller.id}`);
    return this.view(rec, await this.deps.engine.inspect(rec.id));
  }

  /** Starts a stopped container again. Its published ports may change: the record takes the new ones. */
  async start(idOrName: string, caller: Caller): Promise<ContainerView> {
    await this.ready();
    const { engine, records } = this.deps;
    const rec = this.record(idOrName, caller);
    await engine.start(rec.id);
    const info = await engine.inspect(rec.id);
    if (!info) throw new P2prcError("E_NOT_FOUND", `container ${rec.name} is gone`, { field: "id" });
    let current = rec;
    if (JSON.stringify(info.ports) !== JSON.stringify(rec.ports)) {
      const sshPort = rec.ssh ? info.ports.find((p) => p.internal === 22)?.external : undefined;
      const ssh =
        rec.ssh && sshPort
          ? { ...rec.ssh, port: sshPort, command: rec.ssh.command.replace(/-p \d+/, `-p ${sshPort}`) }
          : rec.ssh;
      current = { ...rec, ports: info.ports, ssh };
      // synchronous (SQLite): no request sees the record missing in between
      records.remove(rec.id);
      records.insert(current);
    }
    this.log.info(`started ${rec.name} (${rec.id.slice(0, 12)}) on request of ${caller.id}`);
    return this.view(current, info);
  }

  async exec(idOrName: string, caller: Caller, req: ExecRequest) {
    await this.ready();
    const rec = this.record(idOrName, caller);
    const info = await this.deps.engine.inspect(rec.id);
    if (!info?.running) throw new P2prcError("E_CONFLICT", `container ${rec.name} is not running`);
    return this.deps.engine.exec(rec.id, req.command, {
      env: req.env,
      workingDir: req.workingDir,
      timeoutMs: (req.timeoutSeconds ?? 600) * 1000,
      maxOutputBytes: 8 * 1024 * 1024,
    });
  }

  /** Starts an interactive exec (`p2prc exec -i/-t`): authorised as `exec`. */
  async openExec(idOrName: string, caller: Caller, req: ExecSessionRequest) {
    await this.ready();
    const rec = this.record(idOrName, caller);
    const info = await this.deps.engine.inspect(rec.id);
    if (!info?.running) throw new P2prcError("E_CONFLICT", `container ${rec.name} is not running`);
    const session = await this.deps.engine.openExec(rec.id, req.command, {
      env: req.env,
      workingDir: req.workingDir,
      tty: req.tty === true,
      cols: req.cols,
      rows: req.rows,
    });
    return { container: rec.id, session };
  }

  /** The container's output; `options` as in LogsOptions (tail, since, maxBytes). */
  async logs(idOrName: string, caller: Caller, options: Omit<LogsOptions, "signal">, signal?: AbortSignal) {
    await this.ready();
    const rec = this.record(idOrName, caller);
    return this.deps.engine.logs(rec.id, { ...options, signal });
  }

  /** Extracts a tar into `path`; a stream (an upload spooled to a file) reaches the engine as it is read. */
  async putFiles(
    idOrName: string,
    caller: Caller,
    path: string,
    tar: Uint8Array | ReadableStream<Uint8Array>,
  ): Promise<void> {
    const rec = this.record(idOrName, caller);
    await this.deps.engine.putArchive(rec.id, path, tar);
  }

  async getFiles(idOrName: string, caller: Caller, path: string) {
    const rec = this.record(idOrName, caller);
    return this.deps.engine.getArchive(rec.id, path);
  }
}
