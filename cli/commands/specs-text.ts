// `--specs` for people: the node's GET /v1/specs answer as aligned lines (`--json` prints the answer as is).
// The answer comes from another node, so every field is read defensively: a missing one prints "?".

type Json = Record<string, unknown>;

const obj = (v: unknown): Json => (v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {});
const num = (v: unknown): string => (typeof v === "number" && Number.isFinite(v) ? String(v) : "?");
const str = (v: unknown): string => (typeof v === "string" && v !== "" ? v : "?");
const round = (v: unknown, digits = 1): string =>
  typeof v === "number" && Number.isFinite(v) ? String(Number(v.toFixed(digits))) : "?";

/** The lines `p2prc --specs <node>` prints without `--json`. */
export function specsLines(specs: Json): string[] {
  const cpu = obj(specs.cpu);
  const memory = obj(specs.memory);
  const disk = obj(specs.disk);
  const engine = obj(specs.engine);
  const tasks = obj(specs.tasks);
  const free = obj(specs.free);
  const load = Array.isArray(specs.load) ? specs.load.map((l) => round(l, 2)).join(" ") : "?";
  const gpus = Array.isArray(specs.gpus) ? specs.gpus.map(obj) : [];
  const gpuText = gpus.length
    ? gpus
        .map((g) => `${str(g.name)} (${num(g.memoryTotalMb)} MB, ${num(g.utilizationPercent)}% busy)`)
        .join("; ")
    : "none";
  const engineText =
    engine.reachable === true
      ? `reachable${typeof engine.version === "string" ? `, version ${engine.version}` : ""}`
      : "not reachable (the node cannot run containers now)";
  return [
    `node:     ${str(specs.name)} ${str(specs.nodeId)}`,
    `host:     ${str(specs.hostname)} (${str(specs.platform)}/${str(specs.arch)}), load ${load}`,
    `cpu:      ${str(cpu.model)}, ${num(cpu.cores)} cores`,
    `memory:   ${num(memory.freeMb)} MB free of ${num(memory.totalMb)} MB`,
    `disk:     ${round(disk.freeGb)} GB free of ${round(disk.totalGb)} GB`,
    `gpus:     ${gpuText}`,
    `engine:   ${engineText}`,
    `tasks:    ${num(tasks.running)} running, ${num(tasks.total)} in all, at most ${num(tasks.max)}`,
    `free:     ${num(free.containers)} containers, ${round(free.cpus, 2)} CPUs, ${num(free.memoryMb)} MB, GPU ${free.gpu === true ? "yes" : "no"}`,
    `per container: at most ${round(free.maxCpusPerContainer, 2)} CPUs and ${num(free.maxMemoryMbPerContainer)} MB`,
  ];
}
