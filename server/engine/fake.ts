// An in-memory ContainerEngine on a Clock, after Nomad's mock driver: per-container failure injection (a
// start error, the main process's run time and exit code) and per-exec faults, so scheduling, retry and
// server logic are tested fast and without Docker. contract.ts runs the same behavioural suite against
// this and the Docker engine, so the fake cannot drift from what Docker does. Test support: no index.ts
// exports it, so it is never loaded by a running node.
import { createHash } from "node:crypto";
import { createTar, parseTar } from "nanotar";
import { type Clock, P2prcError, systemClock } from "../../core/index.ts";
import { absPath, type FakeFs, parentOf, runCommand, type ShellContext } from "./fake-shell.ts";
import type * as E from "./types.ts";

/** How a container misbehaves (Nomad mock driver: start_error, run_for, exit_code, stdout_string). */
export interface FakeFaults {
  /** start fails with E_ENGINE and this message; the container stays "created". */
  startError?: string;
  /** Whether that start error is retryable (start_error_recoverable). */
  startErrorRetryable?: boolean;
  /** The main process runs this long and exits (instead of running its command). */
  runForMs?: number;
  /** Its exit code after runForMs (default 0). */
  exitCode?: number;
  /** Written to the container's log when it starts. */
  stdout?: string;
}

/** One exec as a fault hook sees it. */
export interface FakeExecCall {
  id: string;
  command: string[];
  env: Record<string, string>;
  workingDir: string;
}

/** How one exec misbehaves; fields left out run the command as usual. */
export interface FakeExecFaults {
  /** The exec fails with this error (an engine fault) instead of running. */
  error?: P2prcError;
  /** It runs this long on the clock (past the exec's timeoutMs, the result is timedOut). */
  runForMs?: number;
  exitCode?: number;
  stdout?: string;
  stderr?: string;
}

export interface FakeEngineOptions {
  clock?: Clock;
  /** Images present (default p2prc-test/busybox); a name without a tag means `:latest`. */
  images?: string[];
  /** Images `pull` can fetch. */
  registry?: string[];
  /** Faults of a container, chosen from its spec at create. */
  faults?: (spec: E.ContainerSpec) => FakeFaults | undefined;
  /** Faults of one exec. */
  execFaults?: (call: FakeExecCall) => FakeExecFaults | undefined;
  /** Whether creates with diskMb get a quota (default false: overlay2 without pquota). */
  quota?: boolean;
  gpuRuntime?: boolean;
}

interface FakeContainer {
  id: string;
  spec: E.ContainerSpec;
  state: E.ContainerState;
  exitCode?: number;
  ports: E.ContainerInfo["ports"];
  createdAt: number;
  fs: FakeFs;
  log: { at: number; data: Uint8Array }[];
  faults: FakeFaults;
  /** Ends the main process and every exec's sleep. */
  kill: AbortController;
  /** Follow streams waiting for log lines or the end. */
  watchers: Set<() => void>;
}

const enc = new TextEncoder();
const BASE_DIRS = ["/", "/tmp", "/etc", "/root", "/home", "/var", "/dev", "/proc", "/bin"];

const tagged = (ref: string) => (/:[^/]+$/.test(ref) || ref.includes("@") ? ref : `${ref}:latest`);
const hex = (n: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0")).join("");

/** Whether a label filter `key` or `key=value` matches. */
function matches(labels: Record<string, string>, filter: string): boolean {
  const eq = filter.indexOf("=");
  return eq < 0 ? filter in labels : labels[filter.slice(0, eq)] === filter.slice(eq + 1);
}

/** Whether the bytes are a tar archive: whole 512-byte blocks and a first header whose checksum holds. */
function isTar(tar: Uint8Array): boolean {
  if (tar.length < 512 || tar.length % 512 !== 0) return false;
  const h = tar.subarray(0, 512);
  if (h.every((b) => b === 0)) return true;
  const stored = Number.parseInt(new TextDecoder().decode(h.subarray(148, 156)).replace(/\0.*$/s, ""), 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : (h[i] as number);
  return sum === stored;
}

function streamOf(data: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      if (data.length) c.enqueue(data);
      c.close();
    },
  });
}

/** A ContainerEngine in memory; `down = true` makes every call fail as an unreachable engine. */
export class FakeEngine implements E.ContainerEngine {
  /** Every call fails E_ENGINE_UNAVAILABLE while true. */
  down = false;
  private readonly clock: Clock;
  private readonly containers = new Map<string, FakeContainer>();
  private readonly images = new Map<string, E.ImageInfo>();
  private readonly networks = new Map<string, Omit<E.NetworkInfo, "containers">>();
  private nextPort = 32768;
  private quota: boolean | undefined;

  constructor(private readonly options: FakeEngineOptions = {}) {
    this.clock = options.clock ?? systemClock;
    for (const ref of options.images ?? ["p2prc-test/busybox"]) this.addImage(ref);
  }

  private addImage(ref: string): void {
    const tag = tagged(ref);
    this.images.set(tag, {
      id: `sha256:${hex(32)}`,
      tags: [tag],
      sizeBytes: 4 << 20,
      createdAt: this.clock.now(),
    });
  }

  private check(): void {
    if (this.down)
      throw new P2prcError("E_ENGINE_UNAVAILABLE", "container engine unreachable at fake (ECONNREFUSED)", {
        retryable: true,
      });
  }

  private find(id: string): FakeContainer | undefined {
    return this.containers.get(id) ?? [...this.containers.values()].find((c) => c.spec.name === id);
  }

  private get(id: string, context: string): FakeContainer {
    const c = this.find(id);
    if (!c) throw new P2prcError("E_NOT_FOUND", `${context}: No such container: ${id}`);
    return c;
  }

  private sleeper(c: FakeContainer): (ms: number) => Promise<void> {
    return (ms) =>
      new Promise<void>((resolve, reject) => {
        const signal = c.kill.signal;
        if (signal.aborted) return reject(new Error("killed"));
        const cancel = Number.isFinite(ms) ? this.clock.setTimeout(done, ms) : () => {};
        function done() {
          signal.removeEventListener("abort", killed);
          resolve();
        }
        function killed() {
          cancel();
          reject(new Error("killed"));
        }
        signal.addEventListener("abort", killed, { once: true });
      });
  }

  private appendLog(c: FakeContainer, data: Uint8Array): void {
    c.log.push({ at: this.clock.now(), data: new Uint8Array(data) });
    for (const w of c.watchers) w();
  }

  async ping(): Promise<E.EngineInfo> {
    this.check();
    return {
      version: "fake",
      apiVersion: "1.43",
      os: "linux",
      arch: process.arch,
      containers: this.containers.size,
      images: this.images.size,
      gpuRuntime: this.options.gpuRuntime ?? false,
    };
  }

  async create(spec: E.ContainerSpec): Promise<string> {
    this.check();
    if (this.find(spec.name))
      throw new P2prcError("E_CONFLICT", `a container named ${spec.name} already exists on this engine`, {
        field: "name",
      });
    if (!this.images.has(tagged(spec.image)))
      throw new P2prcError("E_NOT_FOUND", `create container ${spec.name}: No such image: ${spec.image}`);
    if (spec.network && !this.networks.has(spec.network))
      throw new P2prcError("E_NOT_FOUND", `create container ${spec.name}: network ${spec.network} not found`);
    if (spec.diskMb) this.quota = this.options.quota ?? false;
    const id = hex(32);
    const ports = [
      ...spec.publish.map((internal) => ({ internal, external: this.nextPort++ })),
      ...(spec.publishFixed ?? []),
    ].sort((a, b) => a.internal - b.internal);
    const fs: FakeFs = new Map(BASE_DIRS.map((d) => [d, "dir"]));
    if (spec.workingDir) fs.set(absPath("/", spec.workingDir), "dir");
    this.containers.set(id, {
      id,
      spec,
      state: "created",
      ports,
      createdAt: this.clock.now(),
      fs,
      log: [],
      faults: this.options.faults?.(spec) ?? {},
      kill: new AbortController(),
      watchers: new Set(),
    });
    return id;
  }

  async start(id: string): Promise<void> {
    this.check();
    const c = this.get(id, `start container ${id}`);
    if (c.state === "running") return;
    if (c.faults.startError)
      throw new P2prcError("E_ENGINE", `start container ${id}: ${c.faults.startError}`, {
        retryable: c.faults.startErrorRetryable ?? false,
      });
    if (c.spec.network && !this.networks.has(c.spec.network))
      throw new P2prcError("E_NOT_FOUND", `start container ${id}: network ${c.spec.network} not found`);
    c.state = "running";
    c.exitCode = undefined;
    c.kill = new AbortController();
    void this.runMain(c);
  }

  async stop(id: string, _timeoutSeconds: number): Promise<void> {
    this.check();
    const c = this.get(id, `stop container ${id}`);
    if (c.state !== "running") return;
    // as a main process that SIGTERM ends (the engine's init passes it on)
    c.state = "exited";
    c.exitCode = 143;
    c.kill.abort();
    for (const w of c.watchers) w();
  }

  private async runMain(c: FakeContainer): Promise<void> {
    const f = c.faults;
    const sleep = this.sleeper(c);
    let status: number;
    try {
      if (f.stdout) this.appendLog(c, enc.encode(f.stdout));
      if (f.runForMs !== undefined) {
        await sleep(f.runForMs);
        status = f.exitCode ?? 0;
      } else {
        const sink = (data: Uint8Array) => this.appendLog(c, data);
        // no command: the image's own, a server that runs until stopped
        const argv = c.spec.command ?? ["tail", "-f", "/dev/null"];
        status = await runCommand(argv, this.context(c, c.spec.env ?? {}, c.spec.workingDir, sink, sink));
      }
    } catch {
      return; // killed (removed)
    }
    if (this.containers.get(c.id) !== c) return;
    c.state = "exited";
    c.exitCode = status;
    for (const w of c.watchers) w();
  }

  private context(
    c: FakeContainer,
    env: Record<string, string>,
    cwd: string | undefined,
    out: (d: Uint8Array) => void,
    err: (d: Uint8Array) => void,
  ): ShellContext {
    return {
      fs: c.fs,
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", ...c.spec.env, ...env },
      cwd: absPath("/", cwd ?? "/"),
      out,
      err,
      sleep: this.sleeper(c),
    };
  }

  async inspect(id: string): Promise<E.ContainerInfo | undefined> {
    this.check();
    const c = this.find(id);
    if (!c) return undefined;
    const running = c.state === "running";
    return {
      id: c.id,
      name: c.spec.name,
      image: c.spec.image,
      state: c.state,
      running,
      exitCode: running ? undefined : (c.exitCode ?? 0),
      labels: { ...c.spec.labels },
      ports: c.state === "created" ? [] : c.ports.map((p) => ({ ...p })),
      createdAt: c.createdAt,
    };
  }

  async exec(id: string, command: string[], options: E.ExecOptions = {}): Promise<E.ExecResult> {
    this.check();
    const context = `exec in container ${id}`;
    const c = this.get(id, context);
    if (c.state !== "running")
      throw new P2prcError("E_CONFLICT", `${context}: container ${id} is not running`);
    const env = options.env ?? {};
    const workingDir = absPath("/", options.workingDir ?? c.spec.workingDir ?? "/");
    const fault = this.options.execFaults?.({ id: c.id, command, env, workingDir }) ?? {};
    if (fault.error) throw fault.error;
    const max = options.maxOutputBytes ?? 16 * 1024 * 1024;
    let truncated = false;
    const collect = () => {
      const chunks: Uint8Array[] = [];
      let size = 0;
      const add = (d: Uint8Array) => {
        const room = max - size;
        if (d.length > room) truncated = true;
        if (room > 0) {
          chunks.push(d.subarray(0, room));
          size += Math.min(room, d.length);
        }
      };
      return { add, text: () => Buffer.concat(chunks).toString("utf8") };
    };
    const out = collect();
    const err = collect();
    const ctx = this.context(c, env, workingDir, out.add, err.add);
    const run = (async () => {
      if (fault.runForMs !== undefined) await ctx.sleep(fault.runForMs);
      if (fault.stdout !== undefined || fault.stderr !== undefined || fault.exitCode !== undefined) {
        if (fault.stdout) out.add(enc.encode(fault.stdout));
        if (fault.stderr) err.add(enc.encode(fault.stderr));
        return fault.exitCode ?? 0;
      }
      return runCommand(command, ctx);
    })();
    let exitCode: number | undefined;
    let timedOut = false;
    await new Promise<void>((resolve) => {
      const cancel = options.timeoutMs
        ? this.clock.setTimeout(() => {
            timedOut = true;
            resolve();
          }, options.timeoutMs)
        : () => {};
      run.then(
        (code) => {
          exitCode = code;
          cancel();
          resolve();
        },
        () => {
          exitCode = 137; // killed with its container
          cancel();
          resolve();
        },
      );
    });
    const result: E.ExecResult = {
      exitCode: timedOut ? -1 : (exitCode as number),
      stdout: out.text(),
      stderr: err.text(),
    };
    if (timedOut) result.timedOut = true;
    if (truncated) result.truncated = true;
    return result;
  }

  /**
   * An interactive exec on the fake: the command starts at once and its output streams (raw with a TTY,
   * else in the engine's frames); its commands read no stdin, so what is written is only counted
   * (`stdinBytes`).
   */
  async openExec(id: string, command: string[], options: E.ExecSessionOptions): Promise<E.ExecSession> {
    this.check();
    const context = `exec in container ${id}`;
    const c = this.get(id, context);
    if (c.state !== "running")
      throw new P2prcError("E_CONFLICT", `${context}: container ${id} is not running`);
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const output = new ReadableStream<Uint8Array>({
      start: (ctl) => {
        controller = ctl;
      },
    });
    let open = true;
    const emit = (stream: number) => (d: Uint8Array) => {
      if (!open) return;
      if (options.tty) return controller.enqueue(new Uint8Array(d));
      const frame = new Uint8Array(8 + d.length);
      frame[0] = stream;
      new DataView(frame.buffer).setUint32(4, d.length);
      frame.set(d, 8);
      controller.enqueue(frame);
    };
    const workingDir = absPath("/", options.workingDir ?? c.spec.workingDir ?? "/");
    const ctx = this.context(c, options.env ?? {}, workingDir, emit(1), emit(2));
    let exitCode: number | undefined;
    const finish = () => {
      if (!open) return;
      open = false;
      controller.close();
    };
    runCommand(command, ctx).then(
      (code) => {
        exitCode = code;
        finish();
      },
      () => {
        exitCode = 137; // killed with its container
        finish();
      },
    );
    return {
      output,
      write: async (data) => {
        this.stdinBytes += data.length;
      },
      endInput: () => {},
      resize: async () => {},
      exitCode: async () => exitCode,
      close: finish,
    };
  }

  /** Bytes written to interactive execs' stdin (their commands read none). */
  stdinBytes = 0;

  async logs(id: string, options: E.LogsOptions): Promise<ReadableStream<Uint8Array>> {
    this.check();
    const c = this.get(id, `logs of container ${id}`);
    const since = options.since !== undefined ? options.since * 1000 : undefined;
    let text = Buffer.concat(c.log.filter((l) => since === undefined || l.at >= since).map((l) => l.data));
    if (options.tail !== undefined) {
      const lines = text.toString("utf8").split(/(?<=\n)/);
      text = Buffer.from(options.tail > 0 ? lines.slice(-options.tail).join("") : "");
    }
    let budget = options.maxBytes ?? Number.POSITIVE_INFINITY;
    const cut = (d: Uint8Array) => {
      const piece = d.subarray(0, Math.max(0, budget));
      budget -= piece.length;
      return piece;
    };
    if (!options.follow) return streamOf(cut(text));
    let sent = c.log.length;
    let watcher: () => void = () => {};
    const stop = () => {
      c.watchers.delete(watcher);
      options.signal?.removeEventListener("abort", onAbort);
    };
    let onAbort: () => void = () => {};
    return new ReadableStream<Uint8Array>({
      start: (ctl) => {
        const first = cut(text);
        if (first.length) ctl.enqueue(first);
        watcher = () => {
          for (; sent < c.log.length; sent++) {
            const piece = cut((c.log[sent] as { data: Uint8Array }).data);
            if (piece.length) ctl.enqueue(piece);
          }
          if (c.state !== "running" || budget <= 0 || this.containers.get(c.id) !== c) {
            stop();
            ctl.close();
          }
        };
        onAbort = () => {
          stop();
          ctl.close();
        };
        if (options.signal?.aborted) return onAbort();
        options.signal?.addEventListener("abort", onAbort, { once: true });
        c.watchers.add(watcher);
        if (c.state !== "running" || budget <= 0) watcher();
      },
      cancel: stop,
    });
  }

  async putArchive(id: string, path: string, tar: Uint8Array | ReadableStream<Uint8Array>): Promise<void> {
    this.check();
    const c = this.get(id, `copy files into container ${id}`);
    const bytes = tar instanceof Uint8Array ? tar : new Uint8Array(await new Response(tar).arrayBuffer());
    const dir = absPath("/", path);
    const at = c.fs.get(dir);
    if (at === undefined)
      throw new P2prcError("E_NOT_FOUND", `path ${path} does not exist in the container`, { field: "path" });
    if (at !== "dir")
      throw new P2prcError("E_INVALID", `path: ${path} is not a directory in the container`, {
        field: "path",
      });
    if (!isTar(bytes))
      throw new P2prcError("E_INVALID", "body: not a valid tar archive (fake)", { field: "body" });
    const links = linkTargets(bytes);
    for (const e of parseTar(bytes.slice())) {
      const target = absPath(dir, e.name);
      for (let p = parentOf(target); p !== "/" && !c.fs.has(p); p = parentOf(p)) c.fs.set(p, "dir");
      if (e.type === "directory") c.fs.set(target, "dir");
      else if (e.type === "file") c.fs.set(target, new Uint8Array(e.data ?? new Uint8Array()));
      else if (e.type === "hardLink") {
        // a hard link to a file already there (in this archive or before): the fake copies its content
        const from = c.fs.get(absPath(dir, links.get(e.name) ?? ""));
        if (!(from instanceof Uint8Array))
          throw new P2prcError(
            "E_INVALID",
            `body: the engine refused an entry of the archive (link ${e.name})`,
            {
              field: "body",
            },
          );
        c.fs.set(target, from);
      }
    }
  }

  async getArchive(id: string, path: string): Promise<ReadableStream<Uint8Array>> {
    this.check();
    const c = this.get(id, `copy ${path} out of container ${id}`);
    const root = absPath("/", path);
    const at = c.fs.get(root);
    if (at === undefined)
      throw new P2prcError("E_NOT_FOUND", `path ${path} does not exist in the container`, { field: "path" });
    const base = root === "/" ? "" : root.slice(root.lastIndexOf("/") + 1);
    const entries: { name: string; data?: Uint8Array }[] = [];
    for (const [p, v] of [...c.fs].sort(([a], [b]) => a.localeCompare(b))) {
      if (p !== root && !p.startsWith(root === "/" ? "/" : `${root}/`)) continue;
      const rel = `${base}${p.slice(root.length)}`.replace(/^\//, "");
      if (!rel) continue;
      entries.push(v === "dir" ? { name: `${rel}/` } : { name: rel, data: v });
    }
    return streamOf(createTar(entries));
  }

  async remove(id: string): Promise<void> {
    this.check();
    const c = this.find(id);
    if (!c) return;
    this.containers.delete(c.id);
    c.state = "removing";
    c.kill.abort();
    for (const w of c.watchers) w();
  }

  async listByLabel(label: string): Promise<E.ContainerInfo[]> {
    this.check();
    const ids = [...this.containers.values()].filter((c) => matches(c.spec.labels, label)).map((c) => c.id);
    return (await Promise.all(ids.map((id) => this.inspect(id)))).filter((i) => i !== undefined);
  }

  async listImages(): Promise<E.ImageInfo[]> {
    this.check();
    return [...this.images.values()].map((i) => ({ ...i, tags: [...i.tags] }));
  }

  async inspectImage(ref: string): Promise<E.ImageDetails | undefined> {
    this.check();
    const i = this.images.get(tagged(ref)) ?? [...this.images.values()].find((i) => i.id === ref);
    return i && { id: i.id, tags: [...i.tags], hasDefaultCommand: true };
  }

  async pull(ref: string): Promise<void> {
    this.check();
    if (!(this.options.registry ?? []).some((r) => tagged(r) === tagged(ref)))
      throw new P2prcError(
        "E_NOT_FOUND",
        `pull ${ref}: repository does not exist or may require 'docker login'`,
      );
    this.addImage(ref);
  }

  /** A tar like `docker save`'s: manifest.json (tags, config), config.json (id, layer digest), layer.tar. */
  async saveImage(ref: string): Promise<ReadableStream<Uint8Array>> {
    this.check();
    const i = this.images.get(tagged(ref)) ?? [...this.images.values()].find((i) => i.id === ref);
    if (!i) throw new P2prcError("E_NOT_FOUND", `image ${ref} is not on this node`, { field: "image" });
    const layer = enc.encode(i.id.repeat(64));
    const config = {
      id: i.id,
      sizeBytes: i.sizeBytes,
      layerSha256: createHash("sha256").update(layer).digest("hex"),
    };
    const tar = createTar([
      {
        name: "manifest.json",
        data: JSON.stringify([{ Config: "config.json", RepoTags: i.tags, Layers: ["layer.tar"] }]),
      },
      { name: "config.json", data: JSON.stringify(config) },
      { name: "layer.tar", data: layer },
    ]);
    return streamOf(tar);
  }

  /** Loads what saveImage made; E_INVALID when it is not such a tar or its layer does not match its digest. */
  async loadImage(archive: ReadableStream<Uint8Array> | Blob): Promise<string[]> {
    this.check();
    const tar = new Uint8Array(await new Response(archive).arrayBuffer());
    const refuse = (why: string) =>
      new P2prcError("E_INVALID", `body: the engine refused the image archive (${why})`, { field: "body" });
    if (!isTar(tar)) throw refuse("not a tar archive");
    let files: Map<string, Uint8Array>;
    try {
      files = new Map(parseTar(tar).map((f) => [f.name, f.data ?? new Uint8Array()]));
    } catch {
      throw refuse("unexpected EOF");
    }
    const read = (name: string) => {
      const data = files.get(name);
      if (!data) throw refuse(`no ${name}`);
      try {
        return JSON.parse(new TextDecoder().decode(data));
      } catch {
        throw refuse(`${name} is not JSON`);
      }
    };
    const manifest = read("manifest.json") as { RepoTags?: string[] }[];
    const config = read("config.json") as { id: string; sizeBytes: number; layerSha256: string };
    const layer = files.get("layer.tar");
    if (!layer || createHash("sha256").update(layer).digest("hex") !== config.layerSha256)
      throw refuse("layer does not match its digest");
    const tags = manifest[0]?.RepoTags ?? [];
    for (const tag of tags) {
      for (const other of this.images.values()) other.tags = other.tags.filter((t) => t !== tag);
      this.images.set(tag, {
        id: config.id,
        tags: [tag],
        sizeBytes: config.sizeBytes,
        createdAt: this.clock.now(),
      });
    }
    return tags.length ? tags : [config.id];
  }

  async removeImage(ref: string): Promise<void> {
    this.check();
    const tag = tagged(ref);
    if (!this.images.has(tag)) return;
    if ([...this.containers.values()].some((c) => tagged(c.spec.image) === tag))
      throw new P2prcError("E_CONFLICT", `image ${ref} is in use by a container`, { field: "image" });
    this.images.delete(tag);
  }

  async ensureNetwork(name: string, labels: Record<string, string>): Promise<void> {
    this.check();
    if (!this.networks.has(name)) this.networks.set(name, { id: hex(32), name, labels: { ...labels } });
  }

  private attached(name: string): number {
    // as Docker counts endpoints: running containers only
    return [...this.containers.values()].filter((c) => c.spec.network === name && c.state === "running")
      .length;
  }

  async removeNetwork(name: string): Promise<boolean> {
    this.check();
    if (this.attached(name) > 0) return false;
    this.networks.delete(name);
    return true;
  }

  async listNetworks(label: string): Promise<E.NetworkInfo[]> {
    this.check();
    return [...this.networks.values()]
      .filter((n) => matches(n.labels, label))
      .map((n) => ({ ...n, labels: { ...n.labels }, containers: this.attached(n.name) }));
  }

  async diskUsage(label: string): Promise<Map<string, number>> {
    this.check();
    const out = new Map<string, number>();
    // the writable layer: every file written since create (the base directories hold none)
    for (const c of this.containers.values()) {
      if (!matches(c.spec.labels, label)) continue;
      let bytes = 0;
      for (const v of c.fs.values()) if (v !== "dir") bytes += v.length;
      out.set(c.id, bytes);
    }
    return out;
  }

  diskQuota(): boolean | undefined {
    return this.quota;
  }

  diskQuotaRefusal(): string {
    return this.quota === false ? "StorageOpt size: the fake engine has no storage-opt quota" : "";
  }
}

/** Hard-link entries' targets by entry name (nanotar parses the entries but not the link name). */
function linkTargets(tar: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  const str = (at: number, len: number) => {
    const b = tar.subarray(at, at + len);
    const end = b.indexOf(0);
    return new TextDecoder().decode(end === -1 ? b : b.subarray(0, end));
  };
  for (let at = 0; at + 512 <= tar.length; ) {
    if (tar.subarray(at, at + 512).every((b) => b === 0)) break;
    const size = Number.parseInt(str(at + 124, 12).trim() || "0", 8);
    if (str(at + 156, 1) === "1") {
      const prefix = str(at + 345, 155);
      const name = prefix ? `${prefix}/${str(at, 100)}` : str(at, 100);
      out.set(name, str(at + 157, 100));
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}
