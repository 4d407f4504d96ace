// The pure half of the swarm engine (swarm.ts does the calls): how a p2prc ContainerSpec becomes a Swarm
// service, and how a service with its tasks reads back as one p2prc container. One service = one container:
// one replica, never restarted by the swarm (a container that ends stays ended, as with `RestartPolicy: no`).
import type Dockerode from "dockerode";
import type { ClusterInfo, ClusterMachine, ContainerInfo, ContainerSpec, ContainerState } from "./types.ts";

/** The swarm node label that gives a machine's own engine address (exec, logs and files go there). */
export const ENGINE_LABEL = "p2prc.engine";
/** The env var that tells a container the swarm node id of the machine it runs on. */
export const MACHINE_ENV = "P2PRC_SWARM_NODE";
/** The generic resource a GPU container reserves (what `dockerd --node-generic-resource` advertises). */
export const GPU_RESOURCE = "NVIDIA-GPU";

/** A task as the engine lists it (the fields p2prc reads). */
export interface SwarmTask {
  ID: string;
  ServiceID: string;
  NodeID?: string;
  CreatedAt: string;
  DesiredState: string;
  Status: {
    State: string;
    Err?: string;
    Message?: string;
    ContainerStatus?: { ContainerID?: string; ExitCode?: number };
    /** Ports published on the task's machine (PublishMode host). */
    PortStatus?: { Ports?: { TargetPort?: number; PublishedPort?: number; Protocol?: string }[] };
  };
}

/**
 * How a swarm service's ports are published: `mesh`, the routing mesh (ingress: the port on every
 * machine's address; the kernel needs IPVS), or `host`, on the machine that runs the task only (its
 * address given with the port).
 */
export type SwarmPorts = "mesh" | "host";

/** A service as the engine inspects it. */
export interface SwarmService {
  ID: string;
  CreatedAt: string;
  Version: { Index: number };
  Spec: Dockerode.ServiceSpec & { Name: string; Labels?: Record<string, string> };
  Endpoint?: Dockerode.Endpoint;
}

/** A swarm node as the engine lists it. */
export interface SwarmNode {
  ID: string;
  Spec: { Labels?: Record<string, string>; Availability?: string; Role?: string };
  Description?: {
    Hostname?: string;
    Resources?: {
      NanoCPUs?: number;
      MemoryBytes?: number;
      GenericResources?: {
        DiscreteResourceSpec?: { Kind: string; Value: number };
        NamedResourceSpec?: { Kind: string; Value: string };
      }[];
    };
  };
  Status?: { State?: string; Addr?: string };
  ManagerStatus?: { Leader?: boolean; Addr?: string };
}

/** A machine's address: its Status.Addr, or for a manager that reports 0.0.0.0 there, its manager address. */
export function machineAddress(n: SwarmNode): string | undefined {
  const addr = n.Status?.Addr;
  if (addr && addr !== "0.0.0.0") return addr;
  const manager = n.ManagerStatus?.Addr?.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  return manager || undefined;
}

/**
 * The service that runs `spec`: created with no replica (p2prc's "created"); start makes it one. `avoid`:
 * swarm node ids it must not be placed on (machines found without no-new-privileges).
 */
export function serviceSpec(
  spec: ContainerSpec,
  reserve = false,
  avoid: readonly string[] = [],
  publish: SwarmPorts = "mesh",
): Dockerode.ServiceSpec {
  const nanoCpus = Math.round(spec.cpus * 1e9);
  const memoryBytes = spec.memoryMb * 1024 * 1024;
  // host mode with no published port: the machine's engine picks a free one
  const mode = publish === "host" ? ("host" as const) : ("ingress" as const);
  const ports: Dockerode.PortConfig[] = [
    ...spec.publish.map((p) => ({
      Protocol: "tcp" as const,
      TargetPort: p,
      PublishMode: mode,
    })),
    ...(spec.publishFixed ?? []).map((p) => ({
      Protocol: "tcp" as const,
      TargetPort: p.internal,
      PublishedPort: p.external,
      PublishMode: mode,
    })),
  ];
  return {
    Name: spec.name,
    Labels: spec.labels,
    TaskTemplate: {
      ContainerSpec: {
        Image: spec.image,
        Args: spec.command,
        // the swarm expands Go templates in env values: a member's `{{` is escaped, and every container
        // learns which machine runs it
        Env: [
          ...Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v.replaceAll("{{", '{{"{{"}}')}`),
          `${MACHINE_ENV}={{.Node.ID}}`,
        ],
        // on the task's container too: listByLabel and disk use find the containers on each machine by them
        Labels: spec.labels,
        Dir: spec.workingDir,
        Init: true,
        // API 1.41 (Docker 20.10): what `HostConfig.CapDrop/CapAdd` are to a container
        CapabilityDrop: ["ALL"],
        CapabilityAdd: spec.capAdd ?? [],
        Mounts: [],
        ReadOnly: false,
      },
      Resources: {
        Limits: { NanoCPUs: nanoCpus, MemoryBytes: memoryBytes, Pids: spec.pidsLimit },
        // with `reserve`, reserved as well as limited: the swarm places a container only where its share
        // is free (no overcommit; no room anywhere keeps it pending)
        Reservations: {
          ...(reserve ? { NanoCPUs: nanoCpus, MemoryBytes: memoryBytes } : {}),
          ...(spec.gpu
            ? { GenericResources: [{ DiscreteResourceSpec: { Kind: GPU_RESOURCE, Value: 1 } }] }
            : {}),
        },
      },
      RestartPolicy: { Condition: "none" },
      ...(avoid.length ? { Placement: { Constraints: avoid.map((id) => `node.id!=${id}`) } } : {}),
      ...(spec.log
        ? {
            LogDriver: {
              Name: "json-file",
              Options: { "max-size": `${spec.log.maxMb}m`, "max-file": String(spec.log.maxFiles) },
            },
          }
        : {}),
      ...(spec.network ? { Networks: [{ Target: spec.network }] } : {}),
    } as Dockerode.TaskSpec,
    Mode: { Replicated: { Replicas: 0 } },
    ...(ports.length ? { EndpointSpec: { Mode: "vip", Ports: ports } } : {}),
  };
}

const time = (t: SwarmTask) => Date.parse(t.CreatedAt) || 0;

/** The service's newest task (what `docker service ps` lists first); undefined before its first start. */
export function latestTask(tasks: SwarmTask[]): SwarmTask | undefined {
  let best: SwarmTask | undefined;
  for (const t of tasks)
    if (!best || time(t) > time(best) || (time(t) === time(best) && t.ID > best.ID)) best = t;
  return best;
}

/** Task states after which it never runs again. */
const TERMINAL = new Set(["complete", "failed", "shutdown", "rejected", "orphaned", "remove"]);

export function isTerminal(t: SwarmTask): boolean {
  return TERMINAL.has(t.Status.State);
}

/** Whether the task's container runs now (and exec, logs and files can reach it). */
export function isRunning(t: SwarmTask | undefined): t is SwarmTask {
  return t?.Status.State === "running";
}

/** A task's state in p2prc's terms; one on a machine the swarm reports down is dead (its container is lost). */
export function taskState(t: SwarmTask | undefined, machineDown: boolean): ContainerState {
  if (!t) return "created";
  const s = t.Status.State;
  if (machineDown && !TERMINAL.has(s)) return "dead";
  if (s === "running") return "running";
  if (s === "complete" || s === "failed" || s === "shutdown")
    return t.Status.ContainerStatus?.ContainerID ? "exited" : "dead";
  if (s === "rejected" || s === "orphaned") return "dead";
  if (s === "remove") return "removing";
  return "created"; // new, pending, assigned, accepted, ready, preparing, starting
}

/** One service with its tasks, as a p2prc container (the id is the service's). */
export function serviceInfo(
  svc: SwarmService,
  tasks: SwarmTask[],
  down: ReadonlySet<string>,
  /** A machine's address by its swarm node id (ports published in host mode are there). */
  addressOf: (nodeId: string) => string | undefined = () => undefined,
): ContainerInfo {
  const task = latestTask(tasks);
  const state = taskState(task, task?.NodeID !== undefined && down.has(task.NodeID));
  const onMachine = task?.Status.PortStatus?.Ports ?? [];
  const at = task?.NodeID ? addressOf(task.NodeID) : undefined;
  const ports = (
    onMachine.length
      ? onMachine
          // the engine lists a host-mode port once per address family (0.0.0.0 and ::): one mapping each
          .filter(
            (p, i) =>
              p.PublishedPort &&
              p.TargetPort &&
              onMachine.findIndex((q) => q.TargetPort === p.TargetPort) === i,
          )
          .map((p) => ({ internal: p.TargetPort as number, external: p.PublishedPort as number, host: at }))
      : (svc.Endpoint?.Ports ?? [])
          .filter((p) => p.PublishedPort && p.TargetPort && p.PublishMode !== "host")
          .map((p) => ({ internal: p.TargetPort as number, external: p.PublishedPort as number }))
  ).sort((a, b) => a.internal - b.internal);
  const image =
    (svc.Spec.TaskTemplate as Dockerode.ContainerTaskSpec | undefined)?.ContainerSpec?.Image ?? "";
  return {
    id: svc.ID,
    name: svc.Spec.Name,
    // the manager pins a digest when a registry has the image (`busybox:1@sha256:…`): p2prc shows the ref
    image: image.replace(/@sha256:[0-9a-f]+$/, ""),
    state,
    running: state === "running",
    exitCode: state === "exited" ? (task?.Status.ContainerStatus?.ExitCode ?? 0) : undefined,
    labels: svc.Spec.Labels ?? {},
    ports,
    createdAt: Date.parse(svc.CreatedAt),
  };
}

function gpusOf(n: SwarmNode): number {
  let count = 0;
  for (const r of n.Description?.Resources?.GenericResources ?? []) {
    if (r.DiscreteResourceSpec && /gpu/i.test(r.DiscreteResourceSpec.Kind))
      count += r.DiscreteResourceSpec.Value;
    if (r.NamedResourceSpec && /gpu/i.test(r.NamedResourceSpec.Kind)) count += 1;
  }
  return count;
}

/**
 * What `/proc/PID/status` says of no-new-privileges: true set, false not, undefined when the text is not
 * such a status (the command that read it failed).
 */
export function noNewPrivsOf(status: string | undefined): boolean | undefined {
  const m = /^NoNewPrivs:\s*([01])\s*$/m.exec(status ?? "");
  return m ? m[1] === "1" : undefined;
}

/**
 * The swarm's machines and what its ready ones add up to. `noNewPrivileges`: what was seen of each
 * machine's (one seen without it is not ready: p2prc places nothing there).
 */
export function clusterOf(
  nodes: SwarmNode[],
  noNewPrivileges: ReadonlyMap<string, boolean> = new Map(),
): ClusterInfo {
  const machines: ClusterMachine[] = nodes.map((n) => ({
    id: n.ID,
    hostname: n.Description?.Hostname ?? "",
    ready:
      n.Status?.State === "ready" &&
      (n.Spec.Availability ?? "active") === "active" &&
      noNewPrivileges.get(n.ID) !== false,
    manager: n.Spec.Role === "manager",
    cpus: Math.round((n.Description?.Resources?.NanoCPUs ?? 0) / 1e7) / 100,
    memoryMb: Math.round((n.Description?.Resources?.MemoryBytes ?? 0) / 1048576),
    gpus: gpusOf(n),
    engine: n.Spec.Labels?.[ENGINE_LABEL],
    noNewPrivileges: noNewPrivileges.get(n.ID),
  }));
  const ready = machines.filter((m) => m.ready);
  return {
    kind: "swarm",
    machines: ready.length,
    cpus: Math.round(ready.reduce((a, m) => a + m.cpus, 0) * 100) / 100,
    memoryMb: ready.reduce((a, m) => a + m.memoryMb, 0),
    gpus: ready.reduce((a, m) => a + m.gpus, 0),
    nodes: machines,
  };
}
