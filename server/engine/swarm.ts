// A ContainerEngine over a Docker Swarm (config `engine: swarm`): the configured Docker host is a swarm
// manager, and each p2prc container is a one-replica service the swarm places on one of its machines.
// The service's id is the container's id. Exec, logs and files go to the engine of the machine that runs
// the task (its `p2prc.engine` node label, or the manager's own engine for its own tasks). Images stay on
// the manager's engine (a loaded image is copied to every machine). swarm-spec.ts holds the pure mapping.
import { existsSync } from "node:fs";
import type Dockerode from "dockerode";
import { P2prcError } from "../../core/index.ts";
import {
  createDockerEngine,
  DEFAULT_ENGINE_TIMEOUT_MS,
  dial,
  engineCaller,
  lazyDockerode,
} from "./docker.ts";
import {
  clusterOf,
  ENGINE_LABEL,
  isRunning,
  isTerminal,
  latestTask,
  machineAddress,
  noNewPrivsOf,
  type SwarmNode,
  type SwarmPorts,
  type SwarmService,
  type SwarmTask,
  serviceInfo,
  serviceSpec,
} from "./swarm-spec.ts";
import type { ClusterInfo, ContainerEngine, ContainerInfo, NetworkInfo } from "./types.ts";

export interface SwarmEngineOptions {
  /** The manager's engine: `unix:///var/run/docker.sock` or `tcp://host:port`. */
  host: string;
  /** As the docker engine's (config `engineTimeoutMs`). */
  timeoutMs?: number | undefined;
  /** How often a start or stop looks at the task's state (ms, default 100). */
  pollMs?: number | undefined;
  /**
   * Reserve each container's cpus and memory on its machine (default false: as on one engine, they are
   * limits only, and the swarm spreads containers by count). With it the swarm places a container only
   * where that much is free, and a start with no machine free fails with E_RATE_LIMIT.
   */
  reserve?: boolean | undefined;
  /**
   * How published ports are offered (config `swarmPorts`; default and "auto": `mesh` where this host's kernel has IPVS, which the routing
   * mesh needs — `/proc/net/ip_vs` exists once the kernel module is loaded, as dockerd does when a swarm
   * starts — else `host`: on the task's machine, at its address).
   */
  ports?: SwarmPorts | "auto" | undefined;
}

/** How long the machine list is reused (offers and specs ask often; a start needs it fresh-ish). */
const NODES_TTL_MS = 2000;
/** A task the swarm keeps pending for want of room this long fails the start (E_RATE_LIMIT). */
const NO_ROOM_MS = 5000;
/** Most bytes put into a container before it first starts (held here until it runs: an SSH key). */
const MAX_EARLY_ARCHIVE = 16 * 1024 * 1024;
/** Most time a remove waits for the swarm to take the service's containers away. */
const REMOVE_WAIT_MS = 15_000;
/**
 * How often the machine list is read while a call runs on a machine (an exec, a task agent): a machine the
 * swarm finds not ready ends them at once, as a machine whose connections are cut but never closed (a
 * power cut, a partition) would otherwise hold them until their own timeout.
 */
export const MACHINE_WATCH_MS = 1000;

type Err = { statusCode?: number; json?: { message?: string } | null };
const status = (err: unknown) => (err as Err).statusCode;
const message = (err: unknown) => String((err as Err).json?.message ?? (err as Error).message ?? "");

function notFound(id: string): P2prcError {
  return new P2prcError("E_NOT_FOUND", `no such container: ${id}`);
}

/** A ContainerEngine over the swarm the engine at `host` manages. Connects lazily on first use. */
/** How ports are published: as asked, or (`auto`, unset) by whether this host's kernel has IPVS. */
export function publishMode(
  ports: SwarmEngineOptions["ports"],
  hasIpvs = () => existsSync("/proc/net/ip_vs"),
): SwarmPorts {
  return ports === undefined || ports === "auto" ? (hasIpvs() ? "mesh" : "host") : ports;
}

/** Where a running container is: its machine (swarm node id and name), that machine's engine, the task's container. */
interface Located {
  engine: ContainerEngine;
  nodeId: string;
  name: string;
  container: string;
}

/** Why a call on a machine the swarm finds not ready failed (lostOn's `why`). */
const NOT_READY = "is not ready in the swarm (down or disconnected)";

/** The error of a call on a machine that is gone: the container is lost, the node and the swarm are not. */
function lostOn(at: Located, id: string, why: string, cause?: unknown): P2prcError {
  return new P2prcError("E_ENGINE_UNAVAILABLE", `swarm machine ${at.name} running container ${id} ${why}`, {
    field: "container",
    retryable: true,
    cause,
  });
}

export function createSwarmEngine(options: SwarmEngineOptions): ContainerEngine {
  const { host } = options;
  const timeoutMs = options.timeoutMs ?? DEFAULT_ENGINE_TIMEOUT_MS;
  const pollMs = options.pollMs ?? 100;
  const publish = publishMode(options.ports);
  const manager = createDockerEngine({ host, timeoutMs });
  const call = engineCaller(host, timeoutMs, lazyDockerode(host));
  /** Machine engines by address (the manager's own is `manager`). */
  const machines = new Map<string, ContainerEngine>([[host, manager]]);
  /** Where each running container is (its machine's engine and container id), learnt by locate. */
  const located = new Map<string, Located>();
  /** Archives put before a container's first start, extracted into it once it runs. */
  const early = new Map<string, { path: string; tar: Uint8Array }[]>();
  let known: { at: number; nodes: SwarmNode[]; self: string } | undefined;
  let selfId: string | undefined;
  /** Services this engine made and has not started yet: the first start needs no look at their tasks. */
  const fresh = new Set<string>();
  /** Networks known to exist (ensureNetwork asks the manager once per owner; removeNetwork forgets). */
  const networks = new Set<string>();
  /**
   * Each machine's no-new-privileges as seen in a task container of its (by swarm node id): the swarm
   * cannot ask for it per service on Engine API 1.41, so it rests on the machine's dockerd running with
   * `--no-new-privileges`. A machine seen without it is avoided (a placement constraint) and not ready.
   */
  const noNewPrivs = new Map<string, boolean>();
  const checking = new Map<string, Promise<boolean | undefined>>();

  const swarmNodes = async (fresh = false) => {
    if (!fresh && known && Date.now() - known.at < NODES_TTL_MS) return known;
    known = await call("list swarm nodes", async (d, signal) => {
      // the manager's own node id does not change: /info (a slow call on a busy engine) is asked once
      const [nodes, self] = await Promise.all([
        d.listNodes({ abortSignal: signal } as Dockerode.NodeListOptions) as Promise<SwarmNode[]>,
        selfId ??
          (d.info() as Promise<{ Swarm?: { NodeID?: string } }>).then(
            (info) => info.Swarm?.NodeID || undefined,
          ),
      ]);
      selfId = self;
      if (!Array.isArray(nodes))
        throw new P2prcError("E_ENGINE", `the engine at ${host} listed no swarm nodes`);
      // a machine that goes away may come back with another engine configuration: seen again then
      for (const n of nodes) if (n.Status?.State !== "ready") noNewPrivs.delete(n.ID);
      return { at: Date.now(), nodes, self: self ?? "" };
    });
    return known;
  };
  /** A network removed behind this node's back is made again by the next ensureNetwork. */
  const forgetGoneNetworks = (err: unknown) => {
    if (/network \S+ not found|no such network/i.test(typeof err === "string" ? err : message(err)))
      networks.clear();
  };
  /** A machine's address, from the machine list last read (inspect and list read it first). */
  const addressOf = (nodeId: string) => {
    const n = known?.nodes.find((m) => m.ID === nodeId);
    return n ? machineAddress(n) : undefined;
  };
  const avoided = () => [...noNewPrivs].filter(([, on]) => !on).map(([id]) => id);

  /**
   * Checks, once per machine, that the task container `id` (running on machine `nodeId`) has
   * no-new-privileges, by reading its init's /proc/1/status. A machine without it fails the start: the
   * node removes the container and places nothing more there. An image that cannot show the file (no
   * `cat`) leaves the machine unchecked until a later container on it can.
   */
  const checkNoNewPrivs = async (id: string, nodeId: string) => {
    if (noNewPrivs.get(nodeId) === true) return;
    let pending = checking.get(nodeId);
    if (!pending) {
      pending = onMachine(id, true, (e, c) => e.exec(c, ["cat", "/proc/1/status"], { timeoutMs: timeoutMs }))
        .then(
          (r) => noNewPrivsOf(r.exitCode === 0 ? r.stdout : undefined),
          () => undefined,
        )
        .then((seen) => {
          if (seen !== undefined) noNewPrivs.set(nodeId, seen);
          return seen;
        })
        .finally(() => checking.delete(nodeId));
      checking.set(nodeId, pending);
    }
    if ((await pending) === false) {
      const { name } = await machineEngine(nodeId);
      throw new P2prcError(
        "E_ENGINE_UNAVAILABLE",
        `start container ${id}: swarm machine ${name} runs containers without no-new-privileges; p2prc places nothing more there`,
        {
          retryable: true,
          hint: 'start that machine\'s dockerd with --no-new-privileges (or "no-new-privileges": true in daemon.json)',
        },
      );
    }
  };
  /**
   * Machines not ready: down, and also disconnected (what a machine whose engine died is first, until its
   * heartbeats run out) or unknown. A task there is lost to p2prc: nothing can reach its container.
   */
  const downNodes = async (fresh = false) =>
    new Set((await swarmNodes(fresh)).nodes.filter((n) => n.Status?.State !== "ready").map((n) => n.ID));

  /** The engine of one machine: its `p2prc.engine` label, or the manager's engine for the manager itself. */
  const machineEngine = async (nodeId: string): Promise<{ engine: ContainerEngine; name: string }> => {
    let { nodes, self } = await swarmNodes();
    if (!nodes.some((n) => n.ID === nodeId)) ({ nodes, self } = await swarmNodes(true));
    const node = nodes.find((n) => n.ID === nodeId);
    const name = node?.Description?.Hostname
      ? `${node.Description.Hostname} (${nodeId.slice(0, 12)})`
      : nodeId;
    const address = node?.Spec.Labels?.[ENGINE_LABEL] ?? (nodeId === self ? host : undefined);
    if (!address) {
      throw new P2prcError("E_NOT_AVAILABLE", `swarm machine ${name} has no engine address p2prc can reach`, {
        hint: `docker node update --label-add ${ENGINE_LABEL}=tcp://ADDRESS:2375 ${nodeId}`,
      });
    }
    let engine = machines.get(address);
    if (!engine) {
      engine = createDockerEngine({ host: address, timeoutMs });
      machines.set(address, engine);
    }
    return { engine, name };
  };

  const inspectService = (id: string) =>
    call(`inspect container ${id}`, async (d, signal) => {
      try {
        return (await d.getService(id).inspect({ abortSignal: signal } as object)) as SwarmService;
      } catch (err) {
        if (status(err) === 404) return undefined;
        throw err;
      }
    });
  const tasksOf = (serviceIds: string[]) =>
    serviceIds.length === 0
      ? Promise.resolve([] as SwarmTask[])
      : call("list swarm tasks", async (d, signal) => {
          try {
            return (await d.listTasks({
              filters: { service: serviceIds },
              abortSignal: signal,
            })) as SwarmTask[];
          } catch (err) {
            // one of them was removed meanwhile (the engine then refuses the whole filter): all, then ours
            if (!/service \S+ not found/i.test(message(err))) throw err;
            const ids = new Set(serviceIds);
            const all = (await d.listTasks({ abortSignal: signal })) as SwarmTask[];
            return all.filter((t) => ids.has(t.ServiceID));
          }
        });
  /**
   * Changes a service's spec: `change` maps the current spec to the new one. The engine refuses an update
   * against a stale version ("update out of sequence": the swarm's allocator bumps a service's version
   * right after it is made), so a refused update is read again and retried.
   */
  const update = async (id: string, change: (svc: SwarmService) => Dockerode.ServiceSpec | undefined) => {
    for (let attempt = 0; ; attempt++) {
      const svc = await inspectService(id);
      if (!svc) throw notFound(id);
      const spec = change(svc);
      if (!spec) return;
      try {
        await call(`update container ${id}`, (d, signal) =>
          dial(d, {
            path: `/services/${svc.ID}/update?`,
            method: "POST",
            options: { _query: { version: svc.Version.Index }, _body: spec },
            abortSignal: signal,
            statusCodes: { 200: true, 400: "bad parameter", 404: "no such service", 500: "server error" },
          }),
        );
        return;
      } catch (err) {
        if (attempt >= 10 || !/out of sequence/i.test(err instanceof Error ? err.message : "")) throw err;
        await Bun.sleep(Math.min(pollMs, 20));
      }
    }
  };

  /**
   * Where a container's task runs: its machine's engine and the task's container id. `running`: only a
   * running task will do (exec); else the newest task that had a container (logs and files of one ended).
   */
  const locate = async (id: string, running: boolean) => {
    // a task's container stays where it is until the service is started, stopped or removed again
    // (the swarm never restarts it): a batch's exec after exec asks the manager once
    const cached = located.get(id);
    if (cached) return cached;
    const svc = await inspectService(id);
    if (!svc) throw notFound(id);
    const tasks = (await tasksOf([svc.ID])).filter((t) => t.Status.ContainerStatus?.ContainerID && t.NodeID);
    const task = latestTask(tasks);
    if (!task || (running && !isRunning(task)))
      throw new P2prcError("E_CONFLICT", `container ${id} is not running`);
    const nodeId = task.NodeID as string;
    const { engine, name } = await machineEngine(nodeId);
    const at: Located = {
      engine,
      nodeId,
      name,
      container: task.Status.ContainerStatus?.ContainerID as string,
    };
    if (isRunning(task)) located.set(id, at);
    return at;
  };

  /**
   * Calls in flight on each machine (by swarm node id), each told once when the swarm finds its machine not
   * ready. While there are any, the machine list is read every MACHINE_WATCH_MS (one manager call for all).
   */
  const watched = new Map<string, Set<() => void>>();
  let watchTimer: ReturnType<typeof setTimeout> | undefined;
  const scheduleWatch = () => {
    if (watchTimer || watched.size === 0) return;
    watchTimer = setTimeout(async () => {
      try {
        const down = await downNodes(true);
        for (const [nodeId, told] of watched) {
          if (!down.has(nodeId)) continue;
          watched.delete(nodeId);
          for (const tell of told) tell();
        }
      } catch {
        // the manager does not answer: nothing is known of the machines; asked again next time
      }
      watchTimer = undefined;
      scheduleWatch();
    }, MACHINE_WATCH_MS);
    watchTimer.unref?.();
  };
  /** Tells `lost` once if machine `nodeId` is found not ready before the returned function is called. */
  const watch = (nodeId: string, lost: () => void): (() => void) => {
    const told = watched.get(nodeId) ?? new Set<() => void>();
    watched.set(nodeId, told);
    let once = false;
    const tell = () => {
      if (once) return;
      once = true;
      lost();
    };
    told.add(tell);
    scheduleWatch();
    return () => {
      once = true;
      const set = watched.get(nodeId);
      set?.delete(tell);
      if (set?.size === 0) watched.delete(nodeId);
    };
  };

  /**
   * A call on the machine that runs container `id`. A machine that does not answer, or that the swarm
   * finds not ready while the call runs, has lost the container for this call (E_ENGINE_UNAVAILABLE on
   * field `container`): the swarm itself still answers, so a batch runs the task again in a fresh
   * container instead of giving the whole node up.
   */
  const onMachine = async <T>(
    id: string,
    running: boolean,
    fn: (engine: ContainerEngine, container: string, at: Located) => Promise<T>,
  ): Promise<T> => {
    const at = await locate(id, running);
    let unwatch = () => {};
    const lost = new Promise<never>((_, reject) => {
      unwatch = watch(at.nodeId, () => reject(lostOn(at, id, NOT_READY)));
    });
    const call = fn(at.engine, at.container, at);
    call.catch(() => undefined); // a call left behind by a lost machine ends (or fails) on its own
    try {
      return await Promise.race([call, lost]);
    } catch (err) {
      located.delete(id);
      if (err instanceof P2prcError && err.code === "E_ENGINE_UNAVAILABLE" && err.field !== "container")
        throw lostOn(at, id, `does not answer (${err.message})`, err);
      throw err;
    } finally {
      unwatch();
    }
  };

  /**
   * Waits until the service's newest task (one not in `before`) runs, or ran and ended (a command that
   * exits at once); fails when the swarm rejects it or has no machine with room for it.
   */
  const startedTask = async (id: string, before: Set<string>): Promise<SwarmTask> => {
    const context = `start container ${id}`;
    const deadline = Date.now() + 3 * timeoutMs;
    let noRoomSince: number | undefined;
    // a task runs within a second or two: looked at every 20 ms at first, then every 50 ms (a list of one
    // service's tasks is a cheap call; pollMs when that is shorter)
    let wait = Math.min(pollMs, 20);
    for (;;) {
      const task = latestTask((await tasksOf([id])).filter((t) => !before.has(t.ID)));
      const s = task?.Status;
      if (task && s && (isRunning(task) || (isTerminal(task) && s.ContainerStatus?.ContainerID))) return task;
      // placed on a machine that died since (the swarm does not move a task of a service that never
      // restarts): lost, as an exec there would be (asked again: the swarm placed it on a ready machine,
      // so a cached list that says otherwise may be older than the machine's return)
      if (task?.NodeID && (await downNodes()).has(task.NodeID) && (await downNodes(true)).has(task.NodeID)) {
        throw new P2prcError(
          "E_ENGINE_UNAVAILABLE",
          `${context}: the swarm machine it was placed on is not ready (down or disconnected)`,
          {
            field: "container",
            retryable: true,
          },
        );
      }
      if (task && s && isTerminal(task)) {
        const why = s.Err || s.Message || s.State;
        forgetGoneNetworks(why);
        if (/no such image|not found/i.test(why))
          throw new P2prcError("E_NOT_FOUND", `${context}: ${why}`, { field: "image" });
        throw new P2prcError("E_ENGINE", `${context}: the swarm could not run it (${why})`, {
          retryable: true,
        });
      }
      if (s?.State === "pending" && /insufficient resources|no suitable node/i.test(s.Err ?? "")) {
        noRoomSince ??= Date.now();
        if (Date.now() - noRoomSince > NO_ROOM_MS)
          throw new P2prcError("E_RATE_LIMIT", `${context}: no swarm machine has room for it (${s.Err})`, {
            retryable: true,
          });
      } else noRoomSince = undefined;
      if (Date.now() > deadline) {
        throw new P2prcError(
          "E_ENGINE_UNAVAILABLE",
          `${context}: the swarm did not run it within ${3 * timeoutMs} ms (task ${s?.State ?? "not made"})`,
          { retryable: true },
        );
      }
      await Bun.sleep(wait);
      wait = Math.min(pollMs, 50, wait * 1.25);
    }
  };

  const readAll = async (tar: Uint8Array | ReadableStream<Uint8Array>): Promise<Uint8Array> => {
    if (tar instanceof Uint8Array) return tar;
    const bytes = new Uint8Array(await new Response(tar).arrayBuffer());
    if (bytes.length > MAX_EARLY_ARCHIVE)
      throw new P2prcError("E_TOO_LARGE", "body: too large to copy into a container before it starts", {
        field: "body",
      });
    return bytes;
  };

  const engine: ContainerEngine = {
    ping: async () => {
      const [info, swarm] = await Promise.all([
        manager.ping(),
        call(
          "engine info",
          async (d) =>
            (await d.info()) as { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } },
        ),
      ]);
      if (swarm.Swarm?.LocalNodeState !== "active" || !swarm.Swarm.ControlAvailable) {
        throw new P2prcError("E_ENGINE_UNAVAILABLE", `the engine at ${host} is not a swarm manager`, {
          retryable: true,
          hint: "docker swarm init on it (or point dockerHost at a manager), or set engine: docker",
        });
      }
      return info;
    },

    cluster: async (): Promise<ClusterInfo> => clusterOf((await swarmNodes()).nodes, noNewPrivs),

    create: async (spec) => {
      const context = `create container ${spec.name}`;
      if (!(await manager.inspectImage(spec.image))) {
        throw new P2prcError("E_NOT_FOUND", `${context}: image ${spec.image} is not on the swarm's manager`, {
          field: "image",
        });
      }
      try {
        const made = await call(
          context,
          (d, signal) =>
            d.createService({
              ...serviceSpec(spec, options.reserve ?? false, avoided(), publish),
              abortSignal: signal,
            } as never),
          3 * timeoutMs,
        );
        if (typeof made?.id !== "string" || made.id === "")
          throw new P2prcError("E_ENGINE", `${context}: the swarm answered without a service id`);
        fresh.add(made.id);
        return made.id;
      } catch (err) {
        if (err instanceof P2prcError && err.code === "E_CONFLICT")
          throw new P2prcError("E_CONFLICT", `a container named ${spec.name} already exists on this swarm`, {
            field: "name",
          });
        forgetGoneNetworks(err);
        throw err;
      }
    },

    start: async (id) => {
      located.delete(id);
      let replicas = 0;
      let before = new Set<string>();
      let svcId = id;
      if (!fresh.delete(id)) {
        // started before (or made by an earlier run): what it has now decides
        const svc = await inspectService(id);
        if (!svc) throw notFound(id);
        svcId = svc.ID;
        const tasks = await tasksOf([svc.ID]);
        const last = latestTask(tasks);
        replicas = svc.Spec.Mode?.Replicated?.Replicas ?? 0;
        if (replicas > 0 && last && !isTerminal(last)) {
          await startedTask(svc.ID, new Set());
          return;
        }
        before = new Set(tasks.map((t) => t.ID));
      }
      // one replica again; a service whose one task ended gets a new task by a forced update
      await update(svcId, (now) => {
        const template = now.Spec.TaskTemplate as Dockerode.ContainerTaskSpec;
        return {
          ...now.Spec,
          Mode: { Replicated: { Replicas: 1 } },
          TaskTemplate:
            replicas > 0 ? { ...template, ForceUpdate: (template.ForceUpdate ?? 0) + 1 } : template,
        };
      });
      const task = await startedTask(svcId, before);
      if (isRunning(task) && task.NodeID) await checkNoNewPrivs(svcId, task.NodeID);
      const pending = early.get(svcId);
      early.delete(svcId);
      if (pending && isRunning(task)) {
        for (const a of pending) await onMachine(svcId, true, (e, c) => e.putArchive(c, a.path, a.tar));
      }
    },

    stop: async (id, timeoutSeconds) => {
      located.delete(id);
      const svc = await inspectService(id);
      if (!svc) throw notFound(id);
      await update(svc.ID, (now) => {
        if ((now.Spec.Mode?.Replicated?.Replicas ?? 0) === 0) return undefined;
        const template = now.Spec.TaskTemplate as Dockerode.ContainerTaskSpec;
        return {
          ...now.Spec,
          Mode: { Replicated: { Replicas: 0 } },
          TaskTemplate: {
            ...template,
            ContainerSpec: { ...template.ContainerSpec, StopGracePeriod: timeoutSeconds * 1e9 },
          },
        };
      });
      // as `docker stop`: returns once the container has ended
      const deadline = Date.now() + 3 * timeoutMs + timeoutSeconds * 1000;
      for (;;) {
        const last = latestTask(await tasksOf([svc.ID]));
        if (!last || isTerminal(last) || (await downNodes()).has(last.NodeID ?? "")) return;
        if (Date.now() > deadline)
          throw new P2prcError("E_ENGINE_UNAVAILABLE", `stop container ${id}: its task did not end`, {
            retryable: true,
          });
        await Bun.sleep(pollMs);
      }
    },

    inspect: async (id) => {
      // the service and its tasks at once (a create asks right after its start)
      const [svc, tasks, down] = await Promise.all([
        inspectService(id),
        tasksOf([id]).catch(() => undefined),
        downNodes(),
      ]);
      if (!svc) return undefined;
      return serviceInfo(svc, svc.ID === id && tasks ? tasks : await tasksOf([svc.ID]), down, addressOf);
    },

    exec: (id, command, opts) => onMachine(id, true, (e, c) => e.exec(c, command, opts)),
    openExec: async (id, command, opts) => {
      const { session, at } = await onMachine(id, true, async (e, c, at) => ({
        session: await e.openExec(c, command, opts),
        at,
      }));
      // a session outlives the call that opened it: a machine lost while it is open closes it (its output
      // ends), and its exit code is then that machine's loss, not a question to an engine that is gone
      let lost: P2prcError | undefined;
      const unwatch = watch(at.nodeId, () => {
        lost = lostOn(at, id, NOT_READY);
        located.delete(id);
        session.close();
      });
      return {
        ...session,
        exitCode: async () => {
          if (lost) throw lost;
          const code = await onMachine(id, true, () => session.exitCode());
          if (code !== undefined) unwatch();
          return code;
        },
        close: () => {
          unwatch();
          session.close();
        },
      };
    },
    logs: (id, opts) => onMachine(id, false, (e, c) => e.logs(c, opts)),
    getArchive: (id, path) => onMachine(id, false, (e, c) => e.getArchive(c, path)),

    putArchive: async (id, path, tar) => {
      let serviceId = id;
      let neverStarted = fresh.has(id);
      if (!neverStarted) {
        const svc = await inspectService(id);
        if (!svc) throw notFound(id);
        serviceId = svc.ID;
        neverStarted =
          (svc.Spec.Mode?.Replicated?.Replicas ?? 0) === 0 && (await tasksOf([svc.ID])).length === 0;
      }
      if (neverStarted) {
        // no container yet: it gets the files when it first runs
        const list = early.get(serviceId) ?? [];
        list.push({ path, tar: await readAll(tar) });
        early.set(serviceId, list);
        return;
      }
      await onMachine(id, false, (e, c) => e.putArchive(c, path, tar));
    },

    remove: async (id) => {
      early.delete(id);
      located.delete(id);
      fresh.delete(id);
      const gone = await call(
        `remove container ${id}`,
        async (d, signal) => {
          try {
            await d.getService(id).remove({ abortSignal: signal } as never);
            return false;
          } catch (err) {
            if (status(err) === 404) return true;
            throw err;
          }
        },
        3 * timeoutMs,
      );
      if (gone) return;
      // the swarm takes the task's container away after the service: wait for it (its network is then free)
      const deadline = Date.now() + REMOVE_WAIT_MS;
      while (Date.now() < deadline) {
        const tasks = await tasksOf([id]).catch(() => []);
        // a task on a machine that is not ready goes only when the machine comes back: not waited for
        const down = await downNodes();
        if (tasks.every((t) => down.has(t.NodeID ?? ""))) return;
        await Bun.sleep(pollMs);
      }
    },

    listByLabel: async (label) => {
      const services = (await call("list containers", (d, signal) =>
        d.listServices({ filters: { label: [label] }, abortSignal: signal } as Dockerode.ServiceListOptions),
      )) as unknown as SwarmService[];
      const tasks = await tasksOf(services.map((s) => s.ID));
      const down = await downNodes();
      return services.map(
        (s): ContainerInfo =>
          serviceInfo(
            s,
            tasks.filter((t) => t.ServiceID === s.ID),
            down,
            addressOf,
          ),
      );
    },

    listImages: () => manager.listImages(),
    inspectImage: (ref) => manager.inspectImage(ref),
    pull: (ref) => manager.pull(ref),
    saveImage: (ref) => manager.saveImage(ref),
    removeImage: (ref) => manager.removeImage(ref),

    // No registry is needed: what the manager loads is copied to every other ready machine with an engine
    // address (best effort: a machine that missed it rejects the tasks placed there, and the swarm moves them).
    loadImage: async (archive) => {
      const loaded = await manager.loadImage(archive);
      const { nodes, self } = await swarmNodes(true);
      for (const n of nodes) {
        const address = n.Spec.Labels?.[ENGINE_LABEL];
        if (n.ID === self || !address || address === host || n.Status?.State !== "ready") continue;
        const { engine: other } = await machineEngine(n.ID);
        for (const tag of loaded) await other.loadImage(await manager.saveImage(tag)).catch(() => undefined);
      }
      return loaded;
    },

    ensureNetwork: (() => {
      const making = new Map<string, Promise<void>>();
      return (name: string, labels: Record<string, string>) => {
        // known: no call (one removed behind this node's back fails the create, which makes it again)
        if (networks.has(name)) return Promise.resolve();
        let pending = making.get(name);
        if (!pending) {
          pending = call(`create network ${name}`, async (d) => {
            const existing = await d.listNetworks({ filters: { name: [name] } });
            if (!existing.some((n) => n.Name === name)) {
              try {
                // overlay: a member's containers reach each other on whatever machine they run
                await d.createNetwork({ Name: name, Driver: "overlay", Attachable: true, Labels: labels });
              } catch (err) {
                if (status(err) !== 409) throw err;
              }
            }
            networks.add(name);
          }).finally(() => making.delete(name));
          making.set(name, pending);
        }
        return pending;
      };
    })(),

    removeNetwork: (name) =>
      call(`remove network ${name}`, async (d) => {
        networks.delete(name);
        try {
          await d.getNetwork(name).remove();
          // the swarm deletes it a moment later: answer once it is gone from the list
          for (let i = 0; i < 50; i++) {
            const left = await d.listNetworks({ filters: { name: [name] } });
            if (!left.some((n) => n.Name === name)) break;
            await Bun.sleep(pollMs);
          }
          return true;
        } catch (err) {
          // a network the swarm is still deleting answers 500 "network <id> not found"
          if (status(err) === 404 || /network \S+ not found/i.test(message(err))) return true;
          if (/in use|active endpoints/i.test(message(err)) || status(err) === 403 || status(err) === 409)
            return false;
          throw err;
        }
      }),

    // a network's members are the services attached to it (the manager sees no other machine's containers)
    listNetworks: (label) =>
      call("list networks", async (d) => {
        const [nets, services] = await Promise.all([
          d.listNetworks({ filters: { label: [label] } }),
          d.listServices({}) as unknown as Promise<SwarmService[]>,
        ]);
        return nets.map((n): NetworkInfo => {
          const attached = services.filter((s) =>
            ((s.Spec.TaskTemplate as Dockerode.ContainerTaskSpec | undefined)?.Networks ?? []).some(
              (a) => a.Target === n.Id || a.Target === n.Name,
            ),
          );
          return { id: n.Id, name: n.Name, labels: n.Labels ?? {}, containers: attached.length };
        });
      }),

    // what each task's container wrote, asked of the machine that holds it, by service
    diskUsage: async (label) => {
      const usage = new Map<string, number>();
      const { nodes } = await swarmNodes();
      await Promise.all(
        nodes
          .filter((n) => n.Status?.State === "ready")
          .map(async (n) => {
            try {
              const { engine: e } = await machineEngine(n.ID);
              const [sizes, containers] = await Promise.all([e.diskUsage(label), e.listByLabel(label)]);
              for (const c of containers) {
                const service = c.labels["com.docker.swarm.service.id"];
                if (service) usage.set(service, (usage.get(service) ?? 0) + (sizes.get(c.id) ?? 0));
              }
            } catch {
              // a machine p2prc cannot reach: its containers are not measured this round
            }
          }),
      );
      return usage;
    },

    diskQuota: () => false,
    diskQuotaRefusal: () => "a Swarm service cannot carry a writable-layer quota (no StorageOpt in its spec)",
  };
  return engine;
}
