// The swarm engine's pure half, without a swarm: what service a ContainerSpec becomes, how a service and
// its tasks read back as a container, and what the machines add up to. test/swarm.test.ts runs the engine
// on a real swarm.
import { describe, expect, test } from "bun:test";
import type Dockerode from "dockerode";
import { publishMode } from "./swarm.ts";
import {
  clusterOf,
  latestTask,
  machineAddress,
  noNewPrivsOf,
  type SwarmNode,
  type SwarmTask,
  serviceInfo,
  serviceSpec,
} from "./swarm-spec.ts";
import type { ContainerSpec } from "./types.ts";

const spec: ContainerSpec = {
  name: "p2prc-a",
  image: "busybox",
  command: ["sleep", "300"],
  env: { A: "1", TRICK: "{{.Node.ID}}" },
  labels: { "p2prc.node": "n1" },
  cpus: 0.5,
  memoryMb: 64,
  pidsLimit: 128,
  publish: [22],
  publishFixed: [{ internal: 8080, external: 30080 }],
  gpu: false,
  capAdd: ["CHOWN"],
  network: "p2prc-net-x",
  log: { maxMb: 10, maxFiles: 3 },
};

const task = (o: Partial<SwarmTask> & { state: string; at: string }): SwarmTask => ({
  ID: `t-${o.at}`,
  ServiceID: "s1",
  NodeID: o.NodeID ?? "m1",
  CreatedAt: o.at,
  DesiredState: o.DesiredState ?? "running",
  Status: {
    State: o.state,
    ContainerStatus: o.Status?.ContainerStatus ?? { ContainerID: "c1", ExitCode: 0 },
  },
});

describe("serviceSpec", () => {
  test("one service with no replica yet; the isolation a service can carry; no reservation unless asked", () => {
    const s = serviceSpec(spec);
    const t = s.TaskTemplate as Dockerode.ContainerTaskSpec;
    expect(s.Mode).toEqual({ Replicated: { Replicas: 0 } });
    expect(t.ContainerSpec).toMatchObject({
      Image: "busybox",
      Args: ["sleep", "300"],
      Init: true,
      CapabilityDrop: ["ALL"],
      CapabilityAdd: ["CHOWN"],
      Mounts: [],
      Labels: { "p2prc.node": "n1" },
    });
    expect(t.Resources?.Limits).toEqual({ NanoCPUs: 0.5e9, MemoryBytes: 64 * 1048576, Pids: 128 });
    expect(t.Resources?.Reservations).toEqual({});
    expect(serviceSpec(spec, true).TaskTemplate).toMatchObject({
      Resources: { Reservations: { NanoCPUs: 0.5e9, MemoryBytes: 64 * 1048576 } },
    });
    expect(t.RestartPolicy).toEqual({ Condition: "none" });
    expect(t.Networks).toEqual([{ Target: "p2prc-net-x" }]);
    expect(t.LogDriver).toEqual({ Name: "json-file", Options: { "max-size": "10m", "max-file": "3" } });
    expect(s.EndpointSpec?.Ports).toEqual([
      { Protocol: "tcp", TargetPort: 22, PublishMode: "ingress" },
      { Protocol: "tcp", TargetPort: 8080, PublishedPort: 30080, PublishMode: "ingress" },
    ]);
  });

  test("a member's env is not a template; the machine's id is", () => {
    const env = (serviceSpec(spec).TaskTemplate as Dockerode.ContainerTaskSpec).ContainerSpec?.Env;
    expect(env).toEqual(["A=1", 'TRICK={{"{{"}}.Node.ID}}', "P2PRC_SWARM_NODE={{.Node.ID}}"]);
  });

  test("machines to avoid become placement constraints; none, no placement", () => {
    expect((serviceSpec(spec).TaskTemplate as Dockerode.ContainerTaskSpec).Placement).toBeUndefined();
    const t = serviceSpec(spec, false, ["w1", "w2"]).TaskTemplate as Dockerode.ContainerTaskSpec;
    expect(t.Placement).toEqual({ Constraints: ["node.id!=w1", "node.id!=w2"] });
  });

  test("a GPU is a generic resource reserved", () => {
    const t = serviceSpec({ ...spec, gpu: true }).TaskTemplate as Dockerode.ContainerTaskSpec;
    // the Engine API's shape (dockerode's types spell generic resources otherwise)
    expect(t.Resources?.Reservations as unknown).toEqual({
      GenericResources: [{ DiscreteResourceSpec: { Kind: "NVIDIA-GPU", Value: 1 } }],
    });
  });
});

describe("a service read back as a container", () => {
  const svc = {
    ID: "s1",
    CreatedAt: "2026-11-29T10:00:00Z",
    Version: { Index: 3 },
    Spec: {
      Name: "p2prc-a",
      Labels: { x: "y" },
      TaskTemplate: { ContainerSpec: { Image: "busybox:1@sha256:abc123" } },
    },
    Endpoint: { Ports: [{ TargetPort: 22, PublishedPort: 30001 }] },
  };

  test("no task yet: created; the newest task decides; a digest pinned by the manager is not shown", () => {
    expect(serviceInfo(svc, [], new Set())).toMatchObject({
      id: "s1",
      name: "p2prc-a",
      image: "busybox:1",
      state: "created",
      running: false,
      labels: { x: "y" },
      ports: [{ internal: 22, external: 30001 }],
    });
    const old = task({
      state: "failed",
      at: "2026-11-29T10:00:01Z",
      Status: { State: "failed", ContainerStatus: { ContainerID: "c0", ExitCode: 7 } },
    });
    const now = task({ state: "running", at: "2026-11-29T10:00:05Z" });
    expect(latestTask([now, old])).toBe(now);
    expect(serviceInfo(svc, [old, now], new Set())).toMatchObject({
      state: "running",
      running: true,
      exitCode: undefined,
    });
    expect(serviceInfo(svc, [old], new Set())).toMatchObject({ state: "exited", exitCode: 7 });
  });

  test("a task on a machine that is not ready is dead; one that never got a container is dead", () => {
    const now = task({ state: "running", at: "2026-11-29T10:00:05Z", NodeID: "w1" });
    expect(serviceInfo(svc, [now], new Set(["w1"])).state).toBe("dead");
    const rejected = task({
      state: "rejected",
      at: "2026-11-29T10:00:06Z",
      Status: { State: "rejected", ContainerStatus: {} },
    });
    expect(serviceInfo(svc, [rejected], new Set()).state).toBe("dead");
    expect(
      serviceInfo(svc, [task({ state: "preparing", at: "2026-11-29T10:00:07Z" })], new Set()).state,
    ).toBe("created");
  });
});

const node = (id: string, state: string, availability: string, gpus = 0): SwarmNode => ({
  ID: id,
  Spec: {
    Availability: availability,
    Role: id === "m" ? "manager" : "worker",
    Labels: { "p2prc.engine": `tcp://${id}:2375` },
  },
  Description: {
    Hostname: id,
    Resources: {
      NanoCPUs: 4e9,
      MemoryBytes: 8192 * 1048576,
      GenericResources: gpus ? [{ DiscreteResourceSpec: { Kind: "NVIDIA-GPU", Value: gpus } }] : [],
    },
  },
  Status: { State: state },
});
test("the swarm's capacity: ready and active machines only; GPUs from generic resources", () => {
  const c = clusterOf([
    node("m", "ready", "active"),
    node("w1", "ready", "active", 2),
    node("w2", "down", "active"),
    node("w3", "ready", "drain"),
  ]);
  expect(c).toMatchObject({ kind: "swarm", machines: 2, cpus: 8, memoryMb: 16384, gpus: 2 });
  expect(c.nodes.map((n) => [n.id, n.ready, n.manager, n.engine])).toEqual([
    ["m", true, true, "tcp://m:2375"],
    ["w1", true, false, "tcp://w1:2375"],
    ["w2", false, false, "tcp://w2:2375"],
    ["w3", false, false, "tcp://w3:2375"],
  ]);
});

test("a machine seen without no-new-privileges is not ready; one not yet seen is", () => {
  const c = clusterOf(
    [node("m", "ready", "active"), node("w1", "ready", "active"), node("w2", "ready", "active")],
    new Map([
      ["m", true],
      ["w1", false],
    ]),
  );
  expect(c.machines).toBe(2);
  expect(c.nodes.map((n) => [n.id, n.ready, n.noNewPrivileges])).toEqual([
    ["m", true, true],
    ["w1", false, false],
    ["w2", true, undefined],
  ]);
});

test("noNewPrivsOf reads /proc/PID/status; anything else is unknown", () => {
  const status = (v: string) =>
    `Name:\tdocker-init\nSeccomp:\t2\nNoNewPrivs:\t${v}\nSpeculation_Store_Bypass:\tthread vulnerable\n`;
  expect(noNewPrivsOf(status("1"))).toBe(true);
  expect(noNewPrivsOf(status("0"))).toBe(false);
  expect(noNewPrivsOf("cat: can't open '/proc/1/status': No such file or directory")).toBeUndefined();
  expect(noNewPrivsOf(undefined)).toBeUndefined();
});

describe("ports without the routing mesh (host mode: the kernel has no IPVS)", () => {
  test("config swarmPorts: auto (and unset) follows this host's IPVS; mesh and host are taken as they are", () => {
    expect(publishMode("auto", () => true)).toBe("mesh");
    expect(publishMode("auto", () => false)).toBe("host");
    expect(publishMode(undefined, () => false)).toBe("host");
    expect(publishMode("mesh", () => false)).toBe("mesh");
    expect(publishMode("host", () => true)).toBe("host");
  });

  test("the spec publishes on the task's machine, the engine there picking a free port for an unfixed one", () => {
    const ports = (serviceSpec(spec, false, [], "host").EndpointSpec?.Ports ?? []) as Dockerode.PortConfig[];
    expect(ports).toEqual([
      { Protocol: "tcp", TargetPort: 22, PublishMode: "host" },
      { Protocol: "tcp", TargetPort: 8080, PublishedPort: 30080, PublishMode: "host" },
    ]);
    expect((serviceSpec(spec).EndpointSpec?.Ports ?? []).every((p) => p.PublishMode === "ingress")).toBe(
      true,
    );
  });

  test("a task's ports are read from its machine, with that machine's address", () => {
    const svc = {
      ID: "s1",
      CreatedAt: "2026-11-29T10:00:00Z",
      Version: { Index: 3 },
      Spec: { Name: "p2prc-a", TaskTemplate: { ContainerSpec: { Image: "busybox" } } },
      Endpoint: { Ports: [{ TargetPort: 22, PublishMode: "host" as const }] },
    };
    const running: SwarmTask = {
      ...task({ state: "running", at: "2026-11-29T10:00:05Z", NodeID: "w1" }),
    };
    // listed once per address family, as Docker 20.10 does
    running.Status.PortStatus = {
      Ports: [
        { TargetPort: 22, PublishedPort: 31022, Protocol: "tcp" },
        { TargetPort: 22, PublishedPort: 31022, Protocol: "tcp" },
      ],
    };
    const addresses: Record<string, string> = { w1: "10.252.0.3" };
    expect(serviceInfo(svc, [running], new Set(), (id) => addresses[id]).ports).toEqual([
      { internal: 22, external: 31022, host: "10.252.0.3" },
    ]);
    // before it runs there is no port to give
    expect(serviceInfo(svc, [], new Set(), (id) => addresses[id]).ports).toEqual([]);
  });

  test("a manager reporting 0.0.0.0 as its address is found at its manager address", () => {
    const node = (addr: string, manager?: string): SwarmNode => ({
      ID: "m",
      Spec: {},
      Status: { State: "ready", Addr: addr },
      ...(manager ? { ManagerStatus: { Leader: true, Addr: manager } } : {}),
    });
    expect(machineAddress(node("10.252.0.2"))).toBe("10.252.0.2");
    expect(machineAddress(node("0.0.0.0", "10.252.0.2:2377"))).toBe("10.252.0.2");
    expect(machineAddress(node("0.0.0.0", "[fd00::2]:2377"))).toBe("fd00::2");
    expect(machineAddress(node(""))).toBeUndefined();
  });
});
