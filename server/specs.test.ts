// What a node offers and reports when its engine places containers on a cluster (engine: swarm): the
// ready machines' sum, not this host; and nothing while the cluster does not answer.
import { expect, test } from "bun:test";
import { defaultConfig } from "../config/index.ts";
import type { ContainerRecord, ContainerStore } from "../store/index.ts";
import { FakeEngine } from "./engine/fake.ts";
import type { ClusterInfo } from "./engine/index.ts";
import { collectSpecs, offerOf } from "./specs.ts";

const config = { ...defaultConfig("test"), maxContainers: 10 };
const running = [{ cpus: 1, memoryMb: 512 }] as ContainerRecord[];
const records = { list: () => running } as unknown as ContainerStore;
const gpus = async () => [];
const cluster: ClusterInfo = {
  kind: "swarm",
  machines: 2,
  cpus: 8,
  memoryMb: 16384,
  gpus: 1,
  nodes: [
    {
      id: "m",
      hostname: "m",
      ready: true,
      manager: true,
      cpus: 4,
      memoryMb: 8192,
      gpus: 0,
      engine: undefined,
    },
    {
      id: "w",
      hostname: "w",
      ready: true,
      manager: false,
      cpus: 4,
      memoryMb: 8192,
      gpus: 1,
      engine: "tcp://w:2375",
    },
  ],
};

test("offer: over the cluster's ready machines, with how many; none while the cluster does not answer", async () => {
  const engine = Object.assign(new FakeEngine(), { cluster: async () => cluster });
  expect(await offerOf({ config, records, engine, gpus })).toMatchObject({
    cpus: 7,
    memoryMb: 16384 - 512,
    gpus: 1,
    machines: 2,
    freeContainers: 9,
  });
  const down = Object.assign(new FakeEngine(), {
    cluster: async (): Promise<ClusterInfo> => {
      throw new Error("manager gone");
    },
  });
  expect(await offerOf({ config, records, engine: down, gpus })).toMatchObject({
    cpus: 0,
    memoryMb: 0,
    machines: 0,
  });
  // one engine: this host, and no machines field in the record
  expect(await offerOf({ config, records, engine: new FakeEngine(), gpus })).not.toHaveProperty("machines");
});

test("/v1/specs: free capacity over the cluster, and each machine", async () => {
  const engine = Object.assign(new FakeEngine(), { cluster: async () => cluster });
  const specs = await collectSpecs({ nodeId: "n", config, engine, records, gpus, dataDir: "/tmp" });
  expect(specs.free).toMatchObject({ cpus: 7, memoryMb: 16384 - 512, gpu: true });
  expect(specs.cluster).toMatchObject({ kind: "swarm", machines: 2, cpus: 8 });
  expect(specs.cluster?.nodes.map((n) => n.hostname)).toEqual(["m", "w"]);
  expect(specs.cluster?.nodes[1]).not.toHaveProperty("engine");
  const single = await collectSpecs({
    nodeId: "n",
    config,
    engine: new FakeEngine(),
    records,
    gpus,
    dataDir: "/tmp",
  });
  expect(single.cluster).toBeUndefined();
});
