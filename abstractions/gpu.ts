import type { GpuInfo, GpuProbe } from "../server/index.ts";

const QUERY = "index,name,memory.total,memory.used,utilization.gpu,driver_version";

/** Parses `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`: one GPU a line, every GPU. */
export function parseNvidiaSmi(text: string): GpuInfo[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .map((line) => {
      const [index, name, total, used, util, driver] = line.split(",").map((s) => s.trim());
      const num = (s: string | undefined) => (s && /^\d+(\.\d+)?$/.test(s) ? Number(s) : 0);
      return {
        index: num(index),
        name: name ?? "unknown",
        memoryTotalMb: num(total),
        memoryUsedMb: num(used),
        utilizationPercent: num(util),
        driverVersion: driver ?? "",
      };
    });
}

/**
 * Runs `nvidia-smi` (fixed argv, no shell) when it is installed; no GPUs otherwise.
 * Results are cached for `ttlMs` because specs are asked for often.
 */
export function nvidiaSmiProbe(ttlMs = 30_000, binary = "nvidia-smi"): GpuProbe {
  let cached: { at: number; gpus: GpuInfo[] } | undefined;
  return async () => {
    if (cached && Date.now() - cached.at < ttlMs) return cached.gpus;
    let gpus: GpuInfo[] = [];
    try {
      const proc = Bun.spawn([binary, `--query-gpu=${QUERY}`, "--format=csv,noheader,nounits"], {
        stdout: "pipe",
        stderr: "ignore",
      });
      const timer = setTimeout(() => proc.kill(), 10_000);
      const text = await new Response(proc.stdout).text();
      clearTimeout(timer);
      if ((await proc.exited) === 0) gpus = parseNvidiaSmi(text);
    } catch {
      gpus = []; // not installed
    }
    cached = { at: Date.now(), gpus };
    return gpus;
  };
}
