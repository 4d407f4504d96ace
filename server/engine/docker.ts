// The only file that imports dockerode. It is loaded lazily (about 130 ms of start-up) so commands that
// never talk to the engine stay fast.

import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import type Dockerode from "dockerode";
import { P2prcError } from "../../core/index.ts";
import { demuxToWeb, FrameDemuxer } from "./demux.ts";
import { socketSession } from "./docker-session.ts";
import type {
  ContainerEngine,
  ContainerInfo,
  ContainerSpec,
  ContainerState,
  EngineInfo,
  ExecOptions,
  ExecResult,
  ExecSession,
  ImageDetails,
  ImageInfo,
  NetworkInfo,
} from "./types.ts";
import { MANAGED_LABEL } from "./types.ts";

/** Where the engine listens: `unix:///var/run/docker.sock`, `tcp://host:port`, or a bare socket path. */
export interface DockerEngineOptions {
  host: string;
  /**
   * Most ms one engine call may take before it fails with E_ENGINE_UNAVAILABLE (config `engineTimeoutMs`,
   * default 10000). Streams (follow-logs, exec, copy out) are bounded only until the engine answers.
   */
  timeoutMs?: number | undefined;
}

/** Default of config `engineTimeoutMs`. */
export const DEFAULT_ENGINE_TIMEOUT_MS = 10_000;
/** create, start and remove may take this many times engineTimeoutMs. */
const SLOW_FACTOR = 3;
/** Least time an upload may take to reach the engine: 256 MiB at about 2 MiB/s. */
const UPLOAD_LIMIT_MS = 120_000;
/** Most time a `docker load` may take (a 2 GB archive on a slow disk): its body streams from a file. */
const LOAD_LIMIT_MS = 30 * 60_000;
/**
 * Most time an image save may take to begin: Docker exports the image's layers before its first byte
 * (over 10 s for a 1 GB image on a busy machine).
 */
const SAVE_START_LIMIT_MS = 10 * 60_000;
/** Longest silence of the engine during an image pull (or engineTimeoutMs when that is longer). */
const PULL_IDLE_MS = 60_000;

export function connectOptions(host: string): Dockerode.DockerOptions {
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

/** An answer that is not what the engine's API says (not HTTP, not JSON, wrong shape). */
function unreadable(context: string, host: string, cause?: unknown): P2prcError {
  return new P2prcError(
    "E_ENGINE",
    `${context}: the container engine at ${host} gave an answer p2prc cannot read`,
    { cause, retryable: true },
  );
}

/**
 * dockerode hands back the raw body (a Buffer or string) when it is not JSON: these check the shape
 * before p2prc reads it, so garbage is a clean E_ENGINE and not a TypeError (or a Buffer read as a list).
 */
function jsonObject<T>(value: T, context: string, host: string): T {
  if (typeof value !== "object" || value === null || Array.isArray(value) || Buffer.isBuffer(value))
    throw unreadable(context, host);
  return value;
}
function jsonArray<T>(value: T[], context: string, host: string): T[] {
  if (!Array.isArray(value)) throw unreadable(context, host);
  return value;
}

/** Translates a dockerode error into p2prc's terms at the edge. */
export function engineError(err: unknown, context: string, host: string): P2prcError {
  if (err instanceof P2prcError) return err;
  // A JavaScript error from reading a malformed answer (`undefined is not an object`, bad JSON): its
  // text says nothing useful to a caller, so it stays in `cause`.
  if (err instanceof TypeError || err instanceof SyntaxError || err instanceof RangeError) {
    return unreadable(context, host, err);
  }
  const e = (err ?? {}) as DockerLikeError;
  if (typeof e.code === "string" && e.code.startsWith("HPE_")) return unreadable(context, host, err);
  const json = e.json as unknown;
  let detail =
    (json && typeof json === "object" && typeof (json as { message?: unknown }).message === "string"
      ? (json as { message: string }).message
      : undefined) ??
    e.reason ??
    e.message ??
    String(err);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
  detail = detail.replace(/[\x00-\x1f\x7f]+/g, " ").slice(0, 300);
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

/**
 * One request to the engine's API over Bun's fetch (a unix socket or tcp://host:port). A connection
 * that fails is E_ENGINE_UNAVAILABLE, as with dockerode.
 */
async function engineFetch(host: string, path: string, init: RequestInit): Promise<Response> {
  const o = connectOptions(host);
  const url = o.socketPath ? `http://docker${path}` : `http://${o.host}:${o.port}${path}`;
  try {
    return await fetch(url, { ...init, ...(o.socketPath ? { unix: o.socketPath } : {}) } as RequestInit);
  } catch (err) {
    if (init.signal?.aborted) throw err;
    throw new P2prcError("E_ENGINE_UNAVAILABLE", `container engine unreachable at ${host}`, {
      cause: err,
      retryable: true,
      hint: "start Docker (or Podman's socket) or set dockerHost / DOCKER_HOST",
    });
  }
}

/** An error answer of the engine to engineFetch, in p2prc's terms. */
async function engineAnswerError(res: Response, context: string, host: string): Promise<P2prcError> {
  const text = await res.text().catch(() => "");
  let message: string | undefined;
  try {
    message = (JSON.parse(text) as { message?: string }).message;
  } catch {
    // not JSON
  }
  return engineError(
    { statusCode: res.status, json: { message: message ?? text.slice(0, 300) } },
    context,
    host,
  );
}

/** The engine refused an archive to load: the caller's input (a push), not an engine fault. */
function badArchive(detail: string | undefined): P2prcError {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
  const clean = (detail ?? "").replace(/[\x00-\x1f\x7f]+/g, " ").slice(0, 300);
  return new P2prcError("E_INVALID", `body: the engine refused the image archive (${clean})`, {
    field: "body",
  });
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

/** Collects one output of an exec into a capped buffer (copies: the socket's chunks are not kept). */
function collector(max: number) {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  const add = (data: Uint8Array) => {
    const room = max - size;
    if (data.length > room) truncated = true;
    if (room <= 0) return;
    const piece = data.length > room ? data.subarray(0, room) : data;
    chunks.push(new Uint8Array(piece));
    size += piece.length;
  };
  return {
    add,
    text: () => Buffer.concat(chunks).toString("utf8"),
    truncated: () => truncated,
  };
}

/**
 * The networks carrying `label`, each with how many containers are attached (undefined when its inspect
 * failed): the list leaves attached containers out, so one inspect each tells (p2prc makes few networks).
 */
async function networksWithCounts(
  d: Dockerode,
  label: string,
): Promise<(Omit<NetworkInfo, "containers"> & { containers: number | undefined })[]> {
  const list = await d.listNetworks({ filters: { label: [label] } });
  return Promise.all(
    list.map(async (n) => {
      const full = await d
        .getNetwork(n.Id)
        .inspect()
        .catch(() => undefined);
      return {
        id: n.Id,
        name: n.Name,
        labels: n.Labels ?? {},
        containers: full ? Object.keys(full.Containers ?? {}).length : undefined,
      };
    }),
  );
}

/** Removes every p2prc network (any node's) that no container is attached to. */
async function pruneEmptyNetworks(d: Dockerode): Promise<void> {
  for (const n of await networksWithCounts(d, MANAGED_LABEL)) {
    if (n.containers === 0) {
      await d
        .getNetwork(n.id)
        .remove()
        .catch(() => undefined);
    }
  }
}

/** One raw engine request through dockerode's modem (for calls whose dockerode method takes no signal). */
export function dial<T>(d: Dockerode, options: Record<string, unknown>): Promise<T> {
  return new Promise<T>((resolve, reject) =>
    d.modem.dial(options as never, (err: unknown, data: unknown) => (err ? reject(err) : resolve(data as T))),
  );
}

/** One engine call as engineCaller makes it: `fn` gets the client and a signal aborted at the limit. */
export type EngineCall = <T>(
  context: string,
  fn: (d: Dockerode, signal: AbortSignal) => Promise<T>,
  limit?: number,
) => Promise<T>;

/**
 * One engine call, failed with a retryable E_ENGINE_UNAVAILABLE after `limit` ms (the request is
 * aborted through `signal`): an engine that accepts connections but never answers must not hold a
 * route, or the node, for longer than that. Errors come out in p2prc's terms (engineError).
 */
export function engineCaller(host: string, timeoutMs: number, client: () => Promise<Dockerode>): EngineCall {
  return async <T>(
    context: string,
    fn: (d: Dockerode, signal: AbortSignal) => Promise<T>,
    limit = timeoutMs,
  ): Promise<T> => {
    const d = await client();
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new P2prcError(
            "E_ENGINE_UNAVAILABLE",
            `${context}: the container engine at ${host} did not answer within ${limit} ms`,
            { retryable: true, hint: "check the engine (docker info); engineTimeoutMs sets this limit" },
          ),
        );
        abort.abort();
      }, limit);
    });
    try {
      return await Promise.race([fn(d, abort.signal), timeout]);
    } catch (err) {
      throw engineError(err, context, host);
    } finally {
      clearTimeout(timer);
    }
  };
}

/** A dockerode client for `host`, made (and dockerode loaded) on first use. */
export function lazyDockerode(host: string): () => Promise<Dockerode> {
  let docker: Dockerode | undefined;
  return async () => {
    if (!docker) {
      // require (evaluated on first use), not import(): Bun's minifier, splitting chunks, named the
      // dynamic import's interop helper and its callback parameter alike (`m(m.default,1)`), which
      // broke the compiled binary's engine client. test/binary.test.ts runs --doctor to catch it.
      const Docker = require("dockerode") as typeof import("dockerode");
      docker = new Docker(connectOptions(host));
    }
    return docker;
  };
}

/** A ContainerEngine over dockerode. Connects lazily on first use. */
export function createDockerEngine(options: DockerEngineOptions): ContainerEngine {
  const host = options.host;
  const timeoutMs = options.timeoutMs ?? DEFAULT_ENGINE_TIMEOUT_MS;
  const client = lazyDockerode(host);
  const call = engineCaller(host, timeoutMs, client);

  /** Creates an exec (stdout and stderr attached; stdin and a TTY as asked); E_ENGINE on an answer with no id. */
  const createExec = async (
    context: string,
    id: string,
    command: string[],
    opts: { env?: Record<string, string> | undefined; workingDir?: string | undefined },
    attach: { stdin: boolean; tty: boolean },
  ) => {
    const exec = await call(context, (d, signal) =>
      d.getContainer(id).exec({
        abortSignal: signal,
        Cmd: command,
        Env: Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`),
        WorkingDir: opts.workingDir,
        AttachStdin: attach.stdin,
        AttachStdout: true,
        AttachStderr: true,
        Tty: attach.tty,
      }),
    );
    if (typeof exec?.id !== "string" || exec.id === "") throw unreadable(context, host);
    return exec;
  };

  // Creating, starting and removing a container set up or tear down its network and file system: on a
  // loaded host they take seconds (2.4 s measured with ten test nodes on two cores), so they get more.
  const slowCall = <T>(context: string, fn: (d: Dockerode, signal: AbortSignal) => Promise<T>) =>
    call(context, fn, SLOW_FACTOR * timeoutMs);

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
      call("engine info", async (d, signal) => {
        // dockerode takes the signal here at run time; its types do not say so.
        type WithSignal<T> = (this: Dockerode, opts: { abortSignal: AbortSignal }) => Promise<T>;
        const [version, info] = await Promise.all([
          (d.version as unknown as WithSignal<Dockerode.DockerVersion>).call(d, { abortSignal: signal }),
          (d.info as unknown as WithSignal<{ Containers: number; Images: number }>).call(d, {
            abortSignal: signal,
          }),
        ]);
        jsonObject(info, "engine info", host);
        if (typeof jsonObject(version, "engine info", host).Version !== "string")
          throw unreadable("engine info", host);
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
      slowCall(`create container ${spec.name}`, async (d, signal) => {
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
            const container = await d.createContainer({ ...o, abortSignal: signal } as never);
            if (typeof container?.id !== "string" || container.id === "")
              throw unreadable(`create container ${spec.name}`, host);
            return container.id;
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
          if (status === 404 || status === 409 || err instanceof P2prcError) throw err;
          refused = err;
        }
        // Probe: the same create without the quota. When that works, this engine's storage has no
        // per-container quota (Docker: "--storage-opt is supported only for overlay over xfs with
        // 'pquota'"; Podman and other drivers word it otherwise), and the reconciler checks instead.
        const id = await create(options);
        quota = false;
        quotaRefusal = engineError(refused, "StorageOpt size", host).message;
        return id;
      }).catch((err: unknown) => {
        // The engine's text names the other container's full id; it may be another owner's (or another
        // node's), so the caller only learns that the name is taken.
        if (err instanceof P2prcError && err.code === "E_CONFLICT") {
          throw new P2prcError("E_CONFLICT", `a container named ${spec.name} already exists on this engine`, {
            field: "name",
          });
        }
        throw err;
      }),

    start: (id) =>
      slowCall(`start container ${id}`, async (d, signal) => {
        try {
          await d.getContainer(id).start({ abortSignal: signal });
        } catch (err) {
          if ((err as DockerLikeError).statusCode === 304) return; // already started
          if (/network \S+ not found|no such network/i.test((err as DockerLikeError).json?.message ?? ""))
            knownNetworks.clear();
          throw err;
        }
      }),

    stop: (id, timeoutSeconds) =>
      slowCall(`stop container ${id}`, async (d, signal) => {
        try {
          await d.getContainer(id).stop({ t: timeoutSeconds, abortSignal: signal });
        } catch (err) {
          if ((err as DockerLikeError).statusCode === 304) return; // already stopped
          throw err;
        }
      }),

    inspect: (id) =>
      call(`inspect container ${id}`, async (d, signal) => {
        try {
          const info = await d.getContainer(id).inspect({ abortSignal: signal });
          return toInfo(jsonObject(info, `inspect container ${id}`, host));
        } catch (err) {
          if ((err as DockerLikeError).statusCode === 404) return undefined;
          throw err;
        }
      }),

    exec: async (id, command, opts: ExecOptions = {}) => {
      const context = `exec in container ${id}`;
      const exec = await createExec(context, id, command, opts, { stdin: false, tty: false });
      const stream = (await call(context, (_d, signal) =>
        exec.start({ hijack: true, stdin: false, abortSignal: signal }),
      )) as NodeJS.ReadableStream & { destroy(): void };
      const max = opts.maxOutputBytes ?? 16 * 1024 * 1024;
      const out = collector(max);
      const err = collector(max);
      let timedOut = false;
      try {
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
          const demux = new FrameDemuxer();
          stream.on("data", (chunk: Buffer) => {
            try {
              for (const piece of demux.push(chunk)) (piece.stream === 2 ? err : out).add(piece.data);
            } catch (e) {
              stream.destroy();
              if (timer) clearTimeout(timer);
              reject(e);
              return;
            }
          });
          stream.on("end", done);
          stream.on("close", done);
          stream.on("error", (e) => {
            if (timer) clearTimeout(timer);
            if (timedOut) resolve();
            else reject(e);
          });
        });
      } catch (e) {
        throw engineError(e, context, host);
      }
      const info = timedOut
        ? undefined
        : await call(context, async (_d, signal) =>
            jsonObject(await exec.inspect({ abortSignal: signal }), context, host),
          );
      const result: ExecResult = {
        exitCode: typeof info?.ExitCode === "number" ? info.ExitCode : -1,
        stdout: out.text(),
        stderr: err.text(),
      };
      if (timedOut) result.timedOut = true;
      if (out.truncated() || err.truncated()) result.truncated = true;
      return result;
    },

    openExec: async (id, command, opts): Promise<ExecSession> => {
      const context = `exec in container ${id}`;
      const exec = await createExec(context, id, command, opts, { stdin: true, tty: opts.tty });
      const socket = (await call(context, (_d, signal) =>
        exec.start({ hijack: true, stdin: true, Tty: opts.tty, abortSignal: signal }),
      )) as import("node:stream").Duplex;
      const session = socketSession(socket, toWeb(socket), {
        resize: async (cols, rows) => {
          await call(context, (_d, signal) => exec.resize({ h: rows, w: cols, abortSignal: signal }));
        },
        inspect: () =>
          call(context, async (_d, signal) =>
            jsonObject(await exec.inspect({ abortSignal: signal }), context, host),
          ),
      });
      if (opts.tty && opts.cols && opts.rows)
        await session.resize(opts.cols, opts.rows).catch(() => undefined);
      return session;
    },

    logs: async (id, opts) => {
      const context = `logs of container ${id}`;
      const query: Record<string, unknown> = { stdout: true, stderr: true, follow: opts.follow };
      if (opts.tail !== undefined) query.tail = opts.tail;
      if (opts.since !== undefined) query.since = opts.since;
      // A stream even without follow (dockerode buffers the whole log then): read with bounded memory.
      const res = await call(context, (d, signal) => {
        const both = opts.signal ? AbortSignal.any([signal, opts.signal]) : signal;
        return dial<IncomingMessage>(d, {
          path: `/containers/${encodeURIComponent(id)}/logs?`,
          method: "GET",
          abortSignal: both,
          isStream: true,
          statusCodes: { 200: true, 404: "no such container", 500: "server error" },
          options: query,
        });
      });
      const close = () => res.destroy();
      opts.signal?.addEventListener("abort", close, { once: true });
      const chunks = (res as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
      let first: IteratorResult<Uint8Array> | undefined;
      if (!opts.follow) {
        // Read (and check) the first chunk before answering, so that an engine that answers garbage or
        // nothing gets an error status, not a 200 with an empty or cut body.
        try {
          first = await call(context, () => chunks.next());
          if (first.value) new FrameDemuxer().push(first.value.subarray(0, 8));
        } catch (err) {
          close();
          throw engineError(err, context, host);
        }
      }
      const source: AsyncIterator<Uint8Array> = {
        next: () => {
          if (first) {
            const value = first;
            first = undefined;
            return Promise.resolve(value);
          }
          return chunks.next();
        },
      };
      return demuxToWeb(source, {
        maxBytes: opts.maxBytes,
        idleMs: opts.follow ? undefined : timeoutMs,
        close,
      });
    },

    // An upload (up to 256 MiB, streamed from the spool file) gets at least UPLOAD_LIMIT_MS: the engine
    // extracts as it reads, so a big archive on a loaded host must not hit the short limit meant for a hang.
    putArchive: (id, path, tar) =>
      call(
        `copy files into container ${id}`,
        async (d) => {
          try {
            // A stream goes to the engine as it is read (uploads are spooled to a file, never held whole).
            const body = tar instanceof Uint8Array ? Buffer.from(tar) : Readable.fromWeb(tar as never);
            await d.getContainer(id).putArchive(body, { path });
          } catch (err) {
            // The engine answers 500 for a body that is not a tar: that is the caller's input, not an engine fault.
            const message = (err as DockerLikeError).json?.message ?? "";
            if (/archive\/tar|invalid tar|unexpected EOF/i.test(message)) {
              throw new P2prcError("E_INVALID", `body: not a valid tar archive (${message})`, {
                field: "body",
              });
            }
            if ((err as DockerLikeError).statusCode === 404 && /path|find the file/i.test(message)) {
              throw new P2prcError("E_NOT_FOUND", `path ${path} does not exist in the container`, {
                field: "path",
              });
            }
            if (/not a directory/i.test(message)) {
              throw new P2prcError("E_INVALID", `path: ${path} is not a directory in the container`, {
                field: "path",
              });
            }
            // Entries the engine will not extract (hard or symbolic links out of the tree, devices, ...).
            if (
              /link|invalid argument|permission denied|operation not permitted|no such file/i.test(message)
            ) {
              throw new P2prcError(
                "E_INVALID",
                `body: the engine refused an entry of the archive (${message})`,
                {
                  field: "body",
                },
              );
            }
            throw err;
          }
        },
        Math.max(SLOW_FACTOR * timeoutMs, UPLOAD_LIMIT_MS),
      ),

    getArchive: (id, path) =>
      call(`copy ${path} out of container ${id}`, async (d, signal) => {
        try {
          return toWeb(await d.getContainer(id).getArchive({ path, abortSignal: signal }));
        } catch (err) {
          // 404 is about the container or the path; only the engine's text tells which (callers read the field)
          // (dockerode's reason says "no such container" for both; the engine's own text follows it)
          const e = err as DockerLikeError;
          if (e.statusCode === 404 && !/no such container:/i.test(e.json?.message ?? e.message ?? "")) {
            throw new P2prcError("E_NOT_FOUND", `path ${path} does not exist in the container`, {
              field: "path",
              cause: err,
            });
          }
          throw err;
        }
      }),

    remove: (id) =>
      slowCall(`remove container ${id}`, async (d, signal) => {
        try {
          await d.getContainer(id).remove({ force: true, v: true, abortSignal: signal });
        } catch (err) {
          const status = (err as DockerLikeError).statusCode;
          if (status === 404 || status === 304) return;
          if (status === 409 && /already in progress/.test(String((err as DockerLikeError).json?.message)))
            return;
          throw err;
        }
      }),

    listByLabel: (label) =>
      call("list containers", async (d, signal) => {
        const list = jsonArray(
          await d.listContainers({ all: true, filters: { label: [label] }, abortSignal: signal }),
          "list containers",
          host,
        );
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
      call("list images", async (d, signal) => {
        const list = jsonArray(await d.listImages({ abortSignal: signal }), "list images", host);
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
      call(`inspect image ${ref}`, async (d, signal) => {
        try {
          // dial as dockerode's getImage(ref).inspect() does, but with the signal (it has none)
          const raw = await dial<Dockerode.ImageInspectInfo>(d, {
            path: `/images/${ref}/json`,
            method: "GET",
            abortSignal: signal,
            statusCodes: { 200: true, 404: "no such image", 500: "server error" },
          });
          const info = jsonObject(raw, `inspect image ${ref}`, host);
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

    // Image archives go over Bun's own fetch on the engine's socket, not dockerode's node:http stream:
    // a file body is sent by the kernel (sendfile) and a response body is read as it arrives, so memory
    // stays flat whatever the archive's size (bench/transfer.ts measures it).
    saveImage: (ref) =>
      call(
        `save image ${ref}`,
        async (_d, signal) => {
          const res = await engineFetch(host, `/images/${ref}/get`, { signal });
          if (res.status === 404) {
            await res.body?.cancel();
            throw new P2prcError("E_NOT_FOUND", `image ${ref} is not on this node`, { field: "image" });
          }
          if (!res.ok || !res.body) throw await engineAnswerError(res, `save image ${ref}`, host);
          return res.body;
        },
        Math.max(timeoutMs, SAVE_START_LIMIT_MS),
      ),

    loadImage: (archive) =>
      call(
        "load image",
        async (_d, signal) => {
          const res = await engineFetch(host, "/images/load?quiet=1", {
            method: "POST",
            body: archive,
            headers: { "content-type": "application/x-tar" },
            signal,
            duplex: "half",
          } as RequestInit);
          if (res.status === 400 || res.status === 500) {
            const detail = (await res.text().catch(() => "")).slice(0, 1000);
            let message = detail;
            try {
              message = (JSON.parse(detail) as { message?: string }).message ?? detail;
            } catch {
              // not JSON: the text as it is
            }
            throw badArchive(message);
          }
          if (!res.ok) throw await engineAnswerError(res, "load image", host);
          // a few lines of JSON: `{"stream":"Loaded image: x:1\n"}`, or an error of the archive
          const text = (await res.text()).slice(0, 1 << 20);
          const loaded: string[] = [];
          for (const line of text.split("\n")) {
            if (!line.trim()) continue;
            let event: { stream?: string; error?: string };
            try {
              event = JSON.parse(line);
            } catch {
              throw unreadable("load image", host);
            }
            if (event.error) throw badArchive(event.error);
            const m = /Loaded image(?: ID)?: (\S+)/.exec(event.stream ?? "");
            if (m?.[1]) loaded.push(m[1]);
          }
          if (loaded.length === 0) throw badArchive("the engine loaded no image from it");
          return loaded;
        },
        LOAD_LIMIT_MS,
      ),

    removeImage: (ref) =>
      call(`remove image ${ref}`, async (d, signal) => {
        try {
          await dial(d, {
            path: `/images/${ref}?`,
            method: "DELETE",
            options: { force: false, noprune: false },
            abortSignal: signal,
            statusCodes: { 200: true, 404: "no such image", 409: "conflict", 500: "server error" },
          });
        } catch (err) {
          if ((err as DockerLikeError).statusCode === 404) return;
          if ((err as DockerLikeError).statusCode === 409)
            throw new P2prcError("E_CONFLICT", `image ${ref} is in use by a container`, { field: "image" });
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
      call("list networks", async (d) =>
        (await networksWithCounts(d, label)).map(
          (n): NetworkInfo => ({ ...n, containers: n.containers ?? 0 }),
        ),
      ),

    diskUsage: (label) =>
      call("measure containers' disk use", async (d) => {
        const list = await d.listContainers({ all: true, size: true, filters: { label: [label] } });
        return new Map(list.map((c) => [c.Id, (c as { SizeRw?: number }).SizeRw ?? 0]));
      }),

    diskQuota: () => quota,

    diskQuotaRefusal: () => quotaRefusal,

    pull: async (ref) => {
      const context = `pull image ${ref}`;
      const stream = (await call(context, (d, signal) =>
        d.pull(ref, { abortSignal: signal }),
      )) as NodeJS.ReadableStream & { destroy(): void };
      const d = await client();
      // A pull may rightly take minutes; what must not last is silence: the engine reports progress
      // every few seconds while it downloads.
      const idleMs = Math.max(timeoutMs, PULL_IDLE_MS);
      try {
        await new Promise<void>((resolve, reject) => {
          let timer: ReturnType<typeof setTimeout> | undefined;
          const arm = () => {
            clearTimeout(timer);
            timer = setTimeout(() => {
              stream.destroy();
              reject(
                new P2prcError(
                  "E_ENGINE_UNAVAILABLE",
                  `${context}: the container engine reported no progress for ${idleMs} ms`,
                  { retryable: true },
                ),
              );
            }, idleMs);
          };
          arm();
          d.modem.followProgress(
            stream,
            (err: Error | null, events: { error?: string }[]) => {
              clearTimeout(timer);
              const failed = events?.find((e) => e.error);
              if (err || failed) reject(err ?? Object.assign(new Error(failed?.error), { statusCode: 404 }));
              // a pull always reports something ("Pulling from …", "Status: …"): none means it was not JSON
              else if (!events?.length) reject(unreadable(context, host));
              else resolve();
            },
            arm,
          );
        });
      } catch (err) {
        throw engineError(err, context, host);
      }
    },
  };
  return engine;
}
