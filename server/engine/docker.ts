// The only file that imports dockerode. It is loaded lazily (about 130 ms of start-up) so commands that
// never talk to the engine stay fast.

import { PassThrough, Readable } from "node:stream";
import type Dockerode from "dockerode";
import { P2prcError } from "../../config/index.ts";
import type {
  ContainerEngine,
  ContainerInfo,
  ContainerSpec,
  ContainerState,
  EngineInfo,
  ExecOptions,
  ExecResult,
  ImageDetails,
  ImageInfo,
  NetworkInfo,
} from "./types.ts";
import { MANAGED_LABEL } from "./types.ts";

/** Where the engine listens: `unix:///var/run/docker.sock`, `tcp://host:port`, or a bare socket path. */
export interface DockerEngineOptions {
  host: string;
}

function connectOptions(host: string): Dockerode.DockerOptions {
  if (host.startsWith("unix://")) return { socketPath: host.slice("unix://".length) };
  if (host.startsWith("/")) return { socketPath: host };
  if (host.startsWith("tcp://") || host.startsWith("http://")) {
    const url = new URL(host.replace(/^tcp:/, "http:"));
    return { host: url.hostname, port: Number(url.port || 2375), protocol: "http" };
  }
  throw new P2prcError("E_CONFIG", `unsupported engine address "${host}"`, { field: "dockerHost" });
}

interface DockerLikeError {
  statusCode?: number;
  code?: string;
  json?: { message?: string } | null;
  reason?: string;
  message?: string;
}

/** Translates a dockerode error into p2prc's terms at the edge. */
function engineError(err: unknown, context: string, host: string): P2prcError {
  if (err instanceof P2prcError) return err;
  const e = (err ?? {}) as DockerLikeError;
  const detail = e.json?.message ?? e.reason ?? e.message ?? String(err);
  if (e.code && ["ECONNREFUSED", "ENOENT", "EACCES", "ECONNRESET", "EPIPE", "ETIMEDOUT"].includes(e.code)) {
    return new P2prcError("E_ENGINE_UNAVAILABLE", `container engine unreachable at ${host} (${e.code})`, {
      cause: err,
      retryable: true,
      hint: "start Docker (or Podman's socket) or set dockerHost / DOCKER_HOST",
    });
  }
  switch (e.statusCode) {
    case 404:
      return new P2prcError("E_NOT_FOUND", `${context}: ${detail}`, { cause: err });
    case 409:
      return new P2prcError("E_CONFLICT", `${context}: ${detail}`, { cause: err });
    case 400:
      return new P2prcError("E_INVALID", `${context}: ${detail}`, { cause: err });
    default:
      return new P2prcError("E_ENGINE", `${context}: ${detail}`, { cause: err, retryable: true });
  }
}

function toInfo(c: Dockerode.ContainerInspectInfo): ContainerInfo {
  const ports: ContainerInfo["ports"] = [];
  for (const [key, bindings] of Object.entries(c.NetworkSettings?.Ports ?? {})) {
    const internal = Number.parseInt(key, 10);
    const first = (bindings ?? []).find((b) => b.HostPort);
    if (first) ports.push({ internal, external: Number(first.HostPort) });
  }
  ports.sort((a, b) => a.internal - b.internal);
  return {
    id: c.Id,
    name: c.Name.replace(/^\//, ""),
    image: c.Config.Image,
    state: c.State.Status as ContainerState,
    running: c.State.Running,
    exitCode: c.State.Running ? undefined : c.State.ExitCode,
    labels: c.Config.Labels ?? {},
    ports,
    createdAt: Date.parse(c.Created),
  };
}

function toWeb(stream: NodeJS.ReadableStream): ReadableStream<Uint8Array> {
  return Readable.toWeb(stream as Readable) as unknown as ReadableStream<Uint8Array>;
}

/** Collects a demultiplexed stream into a capped buffer. */
function collector(max: number) {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  const sink = new PassThrough();
  sink.on("data", (chunk: Buffer) => {
    if (size >= max) {
      truncated = true;
      return;
    }
    const room = max - size;
    const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (chunk.length > room) truncated = true;
    chunks.push(piece);
    size += piece.length;
  });
  return { sink, text: () => Buffer.concat(chunks).toString("utf8"), truncated: () => truncated };
}

/** Removes every p2prc network (any node's) that no container is attached to. */
async function pruneEmptyNetworks(d: Dockerode): Promise<void> {
  const list = await d.listNetworks({ filters: { label: [MANAGED_LABEL] } });
  for (const n of list) {
    const full = await d
      .getNetwork(n.Id)
      .inspect()
      .catch(() => undefined);
    if (full && Object.keys(full.Containers ?? {}).length === 0) {
      await d
        .getNetwork(n.Id)
        .remove()
        .catch(() => undefined);
    }
  }
}

/** A ContainerEngine over dockerode. Connects lazily on first use. */
export function createDockerEngine(options: DockerEngineOptions): ContainerEngine {
  const host = options.host;
  let docker: Dockerode | undefined;
  const client = async (): Promise<Dockerode> => {
    if (!docker) {
      // require (evaluated on first use), not import(): Bun's minifier, splitting chunks, named the
      // dynamic import's interop helper and its callback parameter alike (`m(m.default,1)`), which
      // broke the compiled binary's engine client. test/binary.test.ts runs --doctor to catch it.
      const Docker = require("dockerode") as typeof import("dockerode");
      docker = new Docker(connectOptions(host));
    }
    return docker;
  };
  const call = async <T>(context: string, fn: (d: Dockerode) => Promise<T>): Promise<T> => {
    const d = await client();
    try {
      return await fn(d);
    } catch (err) {
      throw engineError(err, context, host);
    }
  };

  /** Whether the storage driver applies StorageOpt size: learnt from the first create that asks. */
  let quota: boolean | undefined;
  /** The engine's words when it refused the quota. */
  let quotaRefusal = "";
  /** Network creations in progress by name, so concurrent creates for one owner make one network. */
  const makingNetwork = new Map<string, Promise<void>>();
  /**
   * Networks known to exist, so a create does not ask the engine first. A create that finds one gone
   * (removed by a reconciler) forgets it and fails with E_NOT_FOUND; the caller ensures it again.
   */
  const knownNetworks = new Set<string>();

  const engine: ContainerEngine = {
    ping: () =>
      call("engine info", async (d) => {
        const [version, info] = await Promise.all([d.version(), d.info()]);
        const runtimes = Object.keys((info as { Runtimes?: Record<string, unknown> }).Runtimes ?? {});
        return {
          version: version.Version,
          apiVersion: version.ApiVersion,
          os: version.Os,
          arch: version.Arch,
          containers: info.Containers,
          images: info.Images,
          gpuRuntime: runtimes.includes("nvidia"),
        } satisfies EngineInfo;
      }),

    create: (spec: ContainerSpec) =>
      call(`create container ${spec.name}`, async (d) => {
        const exposed: Record<string, object> = {};
        const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
        for (const port of spec.publish) {
          exposed[`${port}/tcp`] = {};
          bindings[`${port}/tcp`] = [{ HostIp: spec.publishHost ?? "", HostPort: "" }];
        }
        for (const { internal, external } of spec.publishFixed ?? []) {
          exposed[`${internal}/tcp`] = {};
          bindings[`${internal}/tcp`] = [{ HostIp: spec.publishHost ?? "", HostPort: String(external) }];
        }
        const options: Dockerode.ContainerCreateOptions = {
          name: spec.name,
          Image: spec.image,
          Cmd: spec.command,
          Env: Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
          Labels: spec.labels,
          WorkingDir: spec.workingDir,
          ExposedPorts: exposed,
          AttachStdout: false,
          AttachStderr: false,
          Tty: false,
          HostConfig: {
            CapDrop: ["ALL"],
            CapAdd: spec.capAdd ?? [],
            SecurityOpt: ["no-new-privileges:true"],
            Privileged: false,
            PidsLimit: spec.pidsLimit,
            Memory: spec.memoryMb * 1024 * 1024,
            MemorySwap: spec.memoryMb * 1024 * 1024,
            NanoCpus: Math.round(spec.cpus * 1e9),
            PortBindings: bindings,
            RestartPolicy: { Name: "no" },
            Binds: [],
            Mounts: [],
            ReadonlyRootfs: false,
            Init: true,
            DeviceRequests: spec.gpu ? [{ Driver: "", Count: -1, Capabilities: [["gpu"]] }] : [],
            NetworkMode: spec.network,
            LogConfig: spec.log
              ? {
                  Type: "json-file",
                  Config: { "max-size": `${spec.log.maxMb}m`, "max-file": String(spec.log.maxFiles) },
                }
              : undefined,
          },
        };
        const create = async (o: Dockerode.ContainerCreateOptions) => {
          try {
            return (await d.createContainer(o)).id;
          } catch (err) {
            if (spec.network && (err as DockerLikeError).statusCode === 404)
              knownNetworks.delete(spec.network);
            throw err;
          }
        };
        if (!spec.diskMb || quota === false) return create(options);
        let refused: unknown;
        try {
          const id = await create({
            ...options,
            HostConfig: { ...options.HostConfig, StorageOpt: { size: `${spec.diskMb}M` } },
          });
          quota = true;
          return id;
        } catch (err) {
          const status = (err as DockerLikeError).statusCode;
          if (status === 404 || status === 409) throw err;
          refused = err;
        }
        // Probe: the same create without the quota. When that works, this engine's storage has no
        // per-container quota (Docker: "--storage-opt is supported only for overlay over xfs with
        // 'pquota'"; Podman and other drivers word it otherwise), and the reconciler checks instead.
        const id = await create(options);
        quota = false;
        quotaRefusal = engineError(refused, "StorageOpt size", host).message;
        return id;
      }),

    start: (id) =>
      call(`start container ${id}`, async (d) => {
        try {
          await d.getContainer(id).start();
        } catch (err) {
          if ((err as DockerLikeError).statusCode === 304) return; // already started
          if (/network \S+ not found|no such network/i.test((err as DockerLikeError).json?.message ?? ""))
            knownNetworks.clear();
          throw err;
        }
      }),

    inspect: (id) =>
      call(`inspect container ${id}`, async (d) => {
        try {
          return toInfo(await d.getContainer(id).inspect());
        } catch (err) {
          if ((err as DockerLikeError).statusCode === 404) return undefined;
          throw err;
        }
      }),

    exec: (id, command, opts: ExecOptions = {}) =>
      call(`exec in container ${id}`, async (d) => {
        const exec = await d.getContainer(id).exec({
          Cmd: command,
          Env: Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`),
          WorkingDir: opts.workingDir,
          AttachStdout: true,
          AttachStderr: true,
          Tty: false,
        });
        const stream = await exec.start({ hijack: true, stdin: false });
        const max = opts.maxOutputBytes ?? 16 * 1024 * 1024;
        const out = collector(max);
        const err = collector(max);
        d.modem.demuxStream(stream, out.sink, err.sink);
        let timedOut = false;
        await new Promise<void>((resolve, reject) => {
          const timer = opts.timeoutMs
            ? setTimeout(() => {
                timedOut = true;
                stream.destroy();
                resolve();
              }, opts.timeoutMs)
            : undefined;
          const done = () => {
            if (timer) clearTimeout(timer);
            resolve();
          };
          stream.on("end", done);
          stream.on("close", done);
          stream.on("error", (e) => {
            if (timer) clearTimeout(timer);
            if (timedOut) resolve();
            else reject(e);
          });
        });
        const info = timedOut ? undefined : await exec.inspect();
        const result: ExecResult = {
          exitCode: info?.ExitCode ?? -1,
          stdout: out.text(),
          stderr: err.text(),
        };
        if (timedOut) result.timedOut = true;
        if (out.truncated() || err.truncated()) result.truncated = true;
        return result;
      }),

    logs: (id, opts) =>
      call(`logs of container ${id}`, async (d) => {
        const container = d.getContainer(id);
        const base = { stdout: true, stderr: true, tail: opts.tail, abortSignal: opts.signal };
        const merged = new PassThrough();
        if (opts.follow) {
          const stream = await container.logs({ ...base, follow: true });
          d.modem.demuxStream(stream, merged, merged);
          stream.on("end", () => merged.end());
          stream.on("error", () => merged.end());
          opts.signal?.addEventListener("abort", () => merged.end());
        } else {
          const buf = await container.logs({ ...base, follow: false });
          const src = Readable.from([buf]);
          d.modem.demuxStream(src, merged, merged);
          src.on("end", () => merged.end());
        }
        return toWeb(merged);
      }),

    putArchive: (id, path, tar) =>
      call(`copy files into container ${id}`, async (d) => {
        try {
          await d.getContainer(id).putArchive(Buffer.from(tar), { path });
        } catch (err) {
          // The engine answers 500 for a body that is not a tar: that is the caller's input, not an engine fault.
          const message = (err as DockerLikeError).json?.message ?? "";
          if (/archive\/tar|invalid tar|unexpected EOF/i.test(message)) {
            throw new P2prcError("E_INVALID", `body: not a valid tar archive (${message})`, {
              field: "body",
            });
          }
          if ((err as DockerLikeError).statusCode === 404 && /path/i.test(message)) {
            throw new P2prcError("E_NOT_FOUND", `path ${path} does not exist in the container`, {
              field: "path",
            });
          }
          throw err;
        }
      }),

    getArchive: (id, path) =>
      call(`copy ${path} out of container ${id}`, async (d) => {
        const stream = await d.getContainer(id).getArchive({ path });
        return toWeb(stream);
      }),

    remove: (id) =>
      call(`remove container ${id}`, async (d) => {
        try {
          await d.getContainer(id).remove({ force: true, v: true });
        } catch (err) {
          const status = (err as DockerLikeError).statusCode;
          if (status === 404 || status === 304) return;
          if (status === 409 && /already in progress/.test(String((err as DockerLikeError).json?.message)))
            return;
          throw err;
        }
      }),

    listByLabel: (label) =>
      call("list containers", async (d) => {
        const list = await d.listContainers({ all: true, filters: { label: [label] } });
        return list.map((c) => ({
          id: c.Id,
          name: (c.Names[0] ?? "").replace(/^\//, ""),
          image: c.Image,
          state: c.State as ContainerState,
          running: c.State === "running",
          labels: c.Labels ?? {},
          ports: (c.Ports ?? [])
            .filter((p) => p.PublicPort)
            .map((p) => ({ internal: p.PrivatePort, external: p.PublicPort }))
            .filter((p, i, all) => all.findIndex((q) => q.internal === p.internal) === i),
          createdAt: c.Created * 1000,
        }));
      }),

    listImages: () =>
      call("list images", async (d) => {
        const list = await d.listImages();
        return list.map(
          (i): ImageInfo => ({
            id: i.Id,
            tags: (i.RepoTags ?? []).filter((t) => t !== "<none>:<none>"),
            sizeBytes: i.Size,
            createdAt: i.Created * 1000,
          }),
        );
      }),

    inspectImage: (ref) =>
      call(`inspect image ${ref}`, async (d) => {
        try {
          const info = await d.getImage(ref).inspect();
          const cmd = info.Config?.Cmd ?? [];
          const entry = info.Config?.Entrypoint ?? [];
          return {
            id: info.Id,
            tags: info.RepoTags ?? [],
            hasDefaultCommand:
              (cmd?.length ?? 0) > 0 || (Array.isArray(entry) ? entry.length > 0 : Boolean(entry)),
          } satisfies ImageDetails;
        } catch (err) {
          if ((err as DockerLikeError).statusCode === 404) return undefined;
          throw err;
        }
      }),

    ensureNetwork: (name, labels) => {
      if (knownNetworks.has(name)) return Promise.resolve();
      let pending = makingNetwork.get(name);
      if (!pending) {
        pending = call(`create network ${name}`, async (d) => {
          const existing = await d.listNetworks({ filters: { name: [name] } });
          if (existing.some((n) => n.Name === name)) {
            knownNetworks.add(name);
            return;
          }
          const make = () =>
            d.createNetwork({ Name: name, Driver: "bridge", CheckDuplicate: true, Labels: labels });
          const noPool = (err: unknown) =>
            /address pool|non-overlapping/i.test((err as DockerLikeError).json?.message ?? "");
          try {
            await make().catch(async (err) => {
              if (!noPool(err)) throw err;
              // The engine has a few dozen address pools. Networks p2prc left with no container (a
              // node killed, containers removed behind its back) hold them: free those, then retry.
              // A node whose empty network goes meanwhile makes it again on its next create.
              await pruneEmptyNetworks(d);
              await make();
            });
            knownNetworks.add(name);
          } catch (err) {
            const e = err as DockerLikeError;
            if (e.statusCode === 409) return; // made meanwhile by another node on this engine
            if (noPool(err)) {
              throw new P2prcError(
                "E_RATE_LIMIT",
                "the engine has no free address pool for another network (one per member with containers here)",
                { retryable: true, cause: err },
              );
            }
            throw err;
          }
        }).finally(() => makingNetwork.delete(name));
        makingNetwork.set(name, pending);
      }
      return pending;
    },

    removeNetwork: (name) =>
      call(`remove network ${name}`, async (d) => {
        knownNetworks.delete(name);
        try {
          await d.getNetwork(name).remove();
          return true;
        } catch (err) {
          const status = (err as DockerLikeError).statusCode;
          if (status === 404) return true;
          if (
            status === 403 ||
            status === 409 ||
            /active endpoints/i.test(String((err as DockerLikeError).json?.message))
          )
            return false;
          throw err;
        }
      }),

    listNetworks: (label) =>
      call("list networks", async (d) => {
        const list = await d.listNetworks({ filters: { label: [label] } });
        // The list leaves out attached containers; one inspect each tells (p2prc makes few networks).
        return Promise.all(
          list.map(async (n): Promise<NetworkInfo> => {
            const full = await d
              .getNetwork(n.Id)
              .inspect()
              .catch(() => undefined);
            return {
              id: n.Id,
              name: n.Name,
              labels: n.Labels ?? {},
              containers: Object.keys(full?.Containers ?? {}).length,
            };
          }),
        );
      }),

    diskUsage: (label) =>
      call("measure containers' disk use", async (d) => {
        const list = await d.listContainers({ all: true, size: true, filters: { label: [label] } });
        return new Map(list.map((c) => [c.Id, (c as { SizeRw?: number }).SizeRw ?? 0]));
      }),

    diskQuota: () => quota,

    diskQuotaRefusal: () => quotaRefusal,

    pull: (ref) =>
      call(`pull image ${ref}`, async (d) => {
        const stream = await d.pull(ref);
        await new Promise<void>((resolve, reject) => {
          d.modem.followProgress(stream, (err: Error | null, events: { error?: string }[]) => {
            const failed = events?.find((e) => e.error);
            if (err || failed) reject(err ?? Object.assign(new Error(failed?.error), { statusCode: 404 }));
            else resolve();
          });
        });
      }),
  };
  return engine;
}
