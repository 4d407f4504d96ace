import { describe, expect, test } from "bun:test";
import { specsLines } from "./specs-text.ts";

describe("--specs without --json", () => {
  test("a node's specs as aligned lines a person reads", () => {
    const lines = specsLines({
      nodeId: "ab".repeat(32),
      name: "alpha",
      hostname: "box",
      platform: "linux",
      arch: "x64",
      cpu: { model: "EPYC", cores: 8 },
      memory: { totalMb: 16000, freeMb: 12000 },
      disk: { totalGb: 100.456, freeGb: 40.04 },
      gpus: [{ index: 0, name: "H200", memoryTotalMb: 141000, memoryUsedMb: 0, utilizationPercent: 3 }],
      load: [0.123, 0.1, 0],
      engine: { reachable: true, version: "27.1.1" },
      tasks: { running: 2, total: 3, max: 10 },
      free: {
        containers: 8,
        cpus: 6.5,
        memoryMb: 11000,
        maxCpusPerContainer: 4,
        maxMemoryMbPerContainer: 8192,
        gpu: true,
      },
    });
    expect(lines).toEqual([
      `node:     alpha ${"ab".repeat(32)}`,
      "host:     box (linux/x64), load 0.12 0.1 0",
      "cpu:      EPYC, 8 cores",
      "memory:   12000 MB free of 16000 MB",
      "disk:     40 GB free of 100.5 GB",
      "gpus:     H200 (141000 MB, 3% busy)",
      "engine:   reachable, version 27.1.1",
      "tasks:    2 running, 3 in all, at most 10",
      "free:     8 containers, 6.5 CPUs, 11000 MB, GPU yes",
      "per container: at most 4 CPUs and 8192 MB",
    ]);
  });

  test("fields a node left out read '?', never a crash; no GPU and no engine say so", () => {
    const lines = specsLines({ name: "beta", engine: { reachable: false }, gpus: [] });
    expect(lines[0]).toBe("node:     beta ?");
    expect(lines).toContain("gpus:     none");
    expect(lines).toContain("engine:   not reachable (the node cannot run containers now)");
    expect(lines).toContain("memory:   ? MB free of ? MB");
  });
});
