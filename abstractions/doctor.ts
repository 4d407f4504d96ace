import { isP2prcError } from "../core/index.ts";
import { server } from "./lazy.ts";
import { loadConfig, type NodeOptions } from "./node.ts";

/** What `p2prc --doctor` found. */
export interface DoctorReport {
  ok: boolean;
  home: string;
  engine: {
    host: string;
    reachable: boolean;
    version?: string;
    apiVersion?: string;
    os?: string;
    arch?: string;
    gpuRuntime?: boolean;
    images?: string[];
    error?: string;
    hint?: string;
  };
}

/** Checks the container engine: reachable, version, images; or a clear reason why not. */
export async function doctor(options: NodeOptions = {}, timeoutMs = 5000): Promise<DoctorReport> {
  const { createDockerEngine, createSwarmEngine } = await server();
  const loaded = loadConfig(options);
  // The engine's own limit aborts a request that hangs (so the process can exit); the race below
  // bounds the whole check.
  const engine = (loaded.config.engine === "swarm" ? createSwarmEngine : createDockerEngine)({
    host: loaded.dockerHost,
    timeoutMs: Math.min(loaded.config.engineTimeoutMs, timeoutMs),
  });
  const report: DoctorReport = {
    ok: false,
    home: loaded.paths.home,
    engine: { host: loaded.dockerHost, reachable: false },
  };
  try {
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref(),
    );
    const info = await Promise.race([engine.ping(), timeout]);
    const images = await Promise.race([engine.listImages(), timeout]);
    report.engine = {
      ...report.engine,
      reachable: true,
      version: info.version,
      apiVersion: info.apiVersion,
      os: info.os,
      arch: info.arch,
      gpuRuntime: info.gpuRuntime,
      images: images.flatMap((i) => i.tags).sort(),
    };
    report.ok = true;
  } catch (err) {
    report.engine.error = err instanceof Error ? err.message : String(err);
    if (isP2prcError(err) && err.hint) report.engine.hint = err.hint;
  }
  return report;
}
