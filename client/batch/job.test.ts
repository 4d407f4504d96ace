// Job files (JSON and YAML), their validation errors, task parameters and per-node slots.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { P2prcError } from "../../core/index.ts";
import type { NodeTarget } from "../resolve.ts";
import { type Job, JobSchema, loadJob, taskParams } from "./job.ts";
import { slotsFor } from "./scheduler.ts";

const dir = mkdtempSync(join(tmpdir(), "p2prc-job-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function file(ext: string, text: string): string {
  const path = join(dir, `job-${n++}.${ext}`);
  writeFileSync(path, text);
  return path;
}

function thrown(fn: () => unknown): P2prcError {
  try {
    fn();
  } catch (err) {
    if (err instanceof P2prcError) return err;
    throw err;
  }
  throw new Error("expected a P2prcError, nothing was thrown");
}

const MINIMAL = { image: "p2prc-test/busybox", command: ["sh", "-c", "echo hi"], tasks: 3 };

describe("loadJob", () => {
  test("a minimal JSON job gets the documented defaults; the text is returned as read", () => {
    const text = JSON.stringify(MINIMAL);
    const { job, text: read } = loadJob(file("json", text));
    expect(read).toBe(text);
    expect(job).toEqual({
      ...MINIMAL,
      timeoutSeconds: 600,
      retries: 2,
      retryOnFailure: false,
      freshContainer: false,
      maxPerNode: 4,
    });
  });

  test("YAML (.yaml and .yml) gives the same job as the equivalent JSON", () => {
    const yaml = [
      "image: p2prc-test/busybox",
      'command: ["sh", "-c", "echo $SCENE"]',
      "tasks:",
      '  - { SCENE: "a", FRAMES: 10 }',
      "  - SCENE: b",
      "    FRAMES: 20",
      "    DRAFT: true",
      "env: { QUALITY: high }",
      "inputs: [render.py]",
      "outputs: [frames/]",
      "cpus: 0.5",
      "memoryMb: 256",
      "retries: 1",
      "maxPerNode: 2",
      "",
    ].join("\n");
    const fromYaml = loadJob(file("yaml", yaml)).job;
    const fromYml = loadJob(file("yml", yaml)).job;
    const fromJson = loadJob(
      file(
        "json",
        JSON.stringify({
          image: "p2prc-test/busybox",
          command: ["sh", "-c", "echo $SCENE"],
          tasks: [
            { SCENE: "a", FRAMES: 10 },
            { SCENE: "b", FRAMES: 20, DRAFT: true },
          ],
          env: { QUALITY: "high" },
          inputs: ["render.py"],
          outputs: ["frames/"],
          cpus: 0.5,
          memoryMb: 256,
          retries: 1,
          maxPerNode: 2,
        }),
      ),
    ).job;
    expect(fromYaml).toEqual(fromJson);
    expect(fromYml).toEqual(fromJson);
    expect(fromYaml.tasks).toEqual([
      { SCENE: "a", FRAMES: 10 },
      { SCENE: "b", FRAMES: 20, DRAFT: true },
    ]);
  });

  test("an unknown field → E_INVALID whose message names it", () => {
    const err = thrown(() => loadJob(file("json", JSON.stringify({ ...MINIMAL, colour: "red" }))));
    expect(err.code).toBe("E_INVALID");
    expect(err.message).toContain("colour");
  });

  test("an unknown field → the error's field is that field (as config and the server API do)", () => {
    // config/load.ts reports { field: key } and the server { field: "body.bogus" } for unknown keys
    const err = thrown(() => loadJob(file("json", JSON.stringify({ ...MINIMAL, colour: "red" }))));
    expect(err.field).toBe("colour");
  });

  test("an unknown field in YAML is refused too", () => {
    const err = thrown(() =>
      loadJob(file("yaml", 'image: p2prc-test/busybox\ncommand: ["true"]\ntasks: 1\nretry: 3\n')),
    );
    expect(err.code).toBe("E_INVALID");
    expect(err.message).toContain("retry");
  });

  test.each([
    ["cpus", { cpus: "two" }],
    ["retries", { retries: 1.5 }],
    ["tasks", { tasks: "many" }],
    ["tasks", { tasks: 0 }],
    ["command", { command: "echo hi" }],
    ["command", { command: [] }],
    ["image", { image: "Not A Valid Image" }],
    ["timeoutSeconds", { timeoutSeconds: 0 }],
    ["retryOnFailure", { retryOnFailure: "yes" }],
    ["memoryMb", { memoryMb: 1 }],
  ])("a wrong %s → E_INVALID naming the field", (field, over) => {
    const err = thrown(() => loadJob(file("json", JSON.stringify({ ...MINIMAL, ...over }))));
    expect(err.code).toBe("E_INVALID");
    expect(err.field).toBe(field);
    expect(err.message).toContain(field);
  });

  test("a task parameter that is not an environment variable name → E_INVALID under tasks", () => {
    const err = thrown(() =>
      loadJob(file("json", JSON.stringify({ ...MINIMAL, tasks: [{ "BAD-NAME": 1 }] }))),
    );
    expect(err.code).toBe("E_INVALID");
    expect(err.field).toStartWith("tasks");
  });

  test("a missing field → E_INVALID naming it", () => {
    const { image: _image, ...rest } = MINIMAL;
    const err = thrown(() => loadJob(file("json", JSON.stringify(rest))));
    expect(err.code).toBe("E_INVALID");
    expect(err.field).toBe("image");
  });

  test("a file that does not parse, or does not exist → E_INVALID on field job", () => {
    const bad = thrown(() => loadJob(file("json", "{ not json")));
    expect(bad.code).toBe("E_INVALID");
    expect(bad.field).toBe("job");
    const badYaml = thrown(() => loadJob(file("yaml", "image: [unclosed\n")));
    expect(badYaml.code).toBe("E_INVALID");
    const missing = thrown(() => loadJob(join(dir, "nope.json")));
    expect(missing.code).toBe("E_INVALID");
    expect(missing.field).toBe("job");
  });
});

describe("taskParams", () => {
  test("a count gives that many empty parameter sets", () => {
    expect(taskParams(JobSchema.parse({ ...MINIMAL, tasks: 3 }))).toEqual([{}, {}, {}]);
  });

  test("a list gives one set per task, every value as a string, in order", () => {
    const job = JobSchema.parse({
      ...MINIMAL,
      tasks: [{ SCENE: "a", FRAMES: 10 }, { SCENE: "b", DRAFT: true, RATIO: 1.5 }, {}],
    });
    expect(taskParams(job)).toEqual([
      { SCENE: "a", FRAMES: "10" },
      { SCENE: "b", DRAFT: "true", RATIO: "1.5" },
      {},
    ]);
  });
});

describe("slotsFor", () => {
  const job = (over: Partial<Job> = {}): Job => JobSchema.parse({ ...MINIMAL, ...over });
  const offer = (over: Partial<NonNullable<NodeTarget["offer"]>> = {}): NodeTarget => ({
    url: "http://127.0.0.1:9000",
    offer: {
      cpus: 16,
      memoryMb: 65536,
      gpus: 0,
      freeContainers: 10,
      maxCpusPerContainer: 4,
      maxMemoryMbPerContainer: 8192,
      ...over,
    },
  });

  test("a node without a known offer (host:port) gets maxPerNode", () => {
    expect(slotsFor({ url: "http://127.0.0.1:9000" }, job())).toBe(4);
    expect(slotsFor({ url: "http://127.0.0.1:9000" }, job({ maxPerNode: 7 }))).toBe(7);
  });

  test("capped by maxPerNode and by the node's free containers", () => {
    expect(slotsFor(offer(), job())).toBe(4);
    expect(slotsFor(offer(), job({ maxPerNode: 9 }))).toBe(9);
    expect(slotsFor(offer({ freeContainers: 2 }), job({ maxPerNode: 9 }))).toBe(2);
  });

  test("capped by free CPUs / cpus and free memory / memoryMb", () => {
    expect(slotsFor(offer({ cpus: 3 }), job({ cpus: 1, maxPerNode: 8 }))).toBe(3);
    expect(slotsFor(offer({ cpus: 3 }), job({ cpus: 2, maxPerNode: 8 }))).toBe(1);
    expect(slotsFor(offer({ memoryMb: 1000 }), job({ memoryMb: 300, maxPerNode: 8 }))).toBe(3);
    expect(slotsFor(offer({ cpus: 8, memoryMb: 1000 }), job({ cpus: 1, memoryMb: 200, maxPerNode: 8 }))).toBe(
      5,
    );
  });
});
