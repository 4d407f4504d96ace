import { hc } from "hono/client";
import {
  type Clock,
  fetchTransport,
  type Identity,
  type NodeRef,
  type NodeTransport,
  nodeOfUrl,
  PeerClient,
} from "../core/index.ts";
import type {
  CreateContainerRequest,
  CreateResult,
  ExecSessionRequest,
  PushedImageView,
  PushResult,
  ServerApp,
} from "../server/index.ts";

/** What a node answers for a created container (the server's own type: siblings share types). */
export type CreatedContainer = CreateResult;

/** POST /v1/containers/:id/exec/sessions body (an interactive exec). */
export type ExecSessionBody = ExecSessionRequest;

/** The header an exec session's stream presents its one-time token in (server/routes/exec.ts). */
const EXEC_TOKEN_HEADER = "x-p2prc-exec-token";

/** POST /v1/containers body. */
export type CreateContainerBody = CreateContainerRequest;

export interface ExecReply {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut?: boolean;
  truncated?: boolean;
}

/** What a node answers for a batch task: the exec's result and the directory the task ran in. */
/** An output a task's reply carries (the node's TaskOutput): its tar in base64 when included. */
export type TaskReplyOutput =
  | { path: string; state: "included"; sha256: string; tar: string }
  | { path: string; state: "missing" | "tooLarge" };

export interface TaskReply extends ExecReply {
  workingDir: string;
  /** The outputs the request named, when the node carries them in its reply (older nodes do not). */
  outputs?: TaskReplyOutput[];
  /** The node's signature over core's taskReplyText of this reply (nodes that have a key sign). */
  signature?: string;
}

const id = (containerId: string) => ({ param: { id: encodeURIComponent(containerId) } });

/**
 * A node's HTTP API from the client side: hono's typed client (`hc<ServerApp>`) over core's PeerClient,
 * which signs, times out and codes every failure (E_NODE_UNREACHABLE when the node cannot be reached,
 * the node's own code and message for an error answer). File transfers use the PeerClient directly.
 */
export class NodeClient {
  private readonly api: ReturnType<typeof hc<ServerApp>>;

  /** `timeoutMs`: for the calls that name none (health has 5 s, create 2 min, files 5 min). */
  constructor(
    private readonly peer: PeerClient,
    readonly node: NodeRef,
    private readonly timeoutMs = peer.timeoutMs,
  ) {
    this.api = hc<ServerApp>("http://node", { fetch: peer.fetchFor(node, { timeoutMs }) });
  }

  /** Per-call options of `api` for a call with its own timeout. */
  private within(timeoutMs: number) {
    return { fetch: this.peer.fetchFor(this.node, { timeoutMs }) };
  }

  async health() {
    return (await this.api.v1.health.$get(undefined, this.within(5000))).json();
  }
  async specs(): Promise<Record<string, unknown>> {
    return (await this.api.v1.specs.$get()).json();
  }
  async images() {
    return (await this.api.v1.images.$get()).json();
  }
  async createContainer(body: CreateContainerBody): Promise<CreatedContainer> {
    return (await this.api.v1.containers.$post({ json: body }, this.within(120_000))).json();
  }
  async getContainer(containerId: string) {
    return (await this.api.v1.containers[":id"].$get(id(containerId))).json();
  }
  async removeContainer(containerId: string): Promise<void> {
    await this.api.v1.containers[":id"].$delete(id(containerId));
  }
  /**
   * Asks the node to remove a container behind its answer (its lease ends before the node answers 202,
   * so it goes even if the node stops first). True when the node took it so; false when it removed it
   * before answering (an older node ignores the query).
   */
  async removeContainerInBackground(containerId: string): Promise<boolean> {
    const path = `/v1/containers/${encodeURIComponent(containerId)}?background=1`;
    const res = await this.peer.request(this.node, path, { method: "DELETE" });
    await res.arrayBuffer();
    return res.status === 202;
  }
  /** The caller's containers on the node (a node's admin gets every container). */
  async listContainers() {
    return (await this.api.v1.containers.$get()).json();
  }
  /** Renews a container's lease: it ends `ttlSeconds` from now. */
  async renewLease(containerId: string, ttlSeconds: number) {
    const args = { ...id(containerId), json: { ttlSeconds } };
    return (await this.api.v1.containers[":id"].lease.$post(args)).json();
  }
  /** Stops a container without removing it (SIGKILL after `timeoutSeconds`, default 10). */
  async stopContainer(containerId: string, timeoutSeconds?: number) {
    const args = { ...id(containerId), json: timeoutSeconds === undefined ? {} : { timeoutSeconds } };
    return (await this.api.v1.containers[":id"].stop.$post(args, this.within(60_000))).json();
  }
  /** Starts a stopped container again. */
  async startContainer(containerId: string) {
    return (await this.api.v1.containers[":id"].start.$post(id(containerId), this.within(60_000))).json();
  }
  /**
   * The container's output as a stream (stdout and stderr interleaved). With `follow` it stays open
   * until the container stops or `signal` aborts; without, it ends after what is there now.
   */
  async logs(
    containerId: string,
    opts: { follow?: boolean; tail?: number; since?: string; signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const q = new URLSearchParams();
    if (opts.follow) q.set("follow", "1");
    if (opts.tail !== undefined) q.set("tail", String(opts.tail));
    if (opts.since !== undefined) q.set("since", opts.since);
    const res = await this.peer.request(
      this.node,
      `/v1/containers/${encodeURIComponent(containerId)}/logs${q.size ? `?${q}` : ""}`,
      // a followed log is open as long as the user watches: no timeout but the caller's signal
      { timeoutMs: opts.follow ? 2_147_483_647 : 120_000, signal: opts.signal },
    );
    return res.body ?? new ReadableStream({ start: (c) => c.close() });
  }
  async exec(
    containerId: string,
    command: string[],
    opts: { env?: Record<string, string>; workingDir?: string; timeoutSeconds?: number } = {},
  ): Promise<ExecReply> {
    const timeoutMs = ((opts.timeoutSeconds ?? 600) + 10) * 1000;
    // `json` is not in the route's typed input (the server parses the body with zod, not a hono
    // validator), so it is passed as a variable: hc sends it all the same
    const args = { ...id(containerId), json: { command, ...opts } };
    return (await this.api.v1.containers[":id"].exec.$post(args, this.within(timeoutMs))).json();
  }
  /** Opens an interactive exec (`exec -i/-t`): its session id and the one-time token of its stream. */
  async openExec(containerId: string, body: ExecSessionBody) {
    const args = { ...id(containerId), json: body };
    return (await this.api.v1.containers[":id"].exec.sessions.$post(args, this.within(60_000))).json();
  }
  /** The session's stream: `stdin` goes to the command as it comes; the answer's body is its output. */
  async attachExec(session: string, token: string, stdin: ReadableStream<Uint8Array>, signal?: AbortSignal) {
    const path = `/v1/exec/${encodeURIComponent(session)}/io`;
    const res = await this.peer.duplex(this.node, path, {
      headers: { [EXEC_TOKEN_HEADER]: token, "content-type": "application/octet-stream" },
      body: stdin,
      ...(signal ? { signal } : {}),
    });
    return res.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  }
  /** The session's terminal has a new size. */
  async resizeExec(session: string, cols: number, rows: number) {
    const args = { param: { session }, json: { cols, rows } };
    return (await this.api.v1.exec[":session"].resize.$post(args)).json();
  }
  /** Whether the session's command still runs, and its exit code once it ended. */
  async execStatus(session: string) {
    return (await this.api.v1.exec[":session"].$get({ param: { session } })).json();
  }
  /**
   * Runs one batch task in a fresh working directory made by the node, holding `inputs` (uploaded to its
   * input cache beforehand) by name; the answer names the directory.
   */
  async runTask(
    containerId: string,
    task: {
      command: string[];
      env?: Record<string, string>;
      timeoutSeconds?: number;
      inputs?: { name: string; digest: string }[];
      outputs?: string[];
    },
  ): Promise<TaskReply> {
    const timeoutMs = ((task.timeoutSeconds ?? 600) + 10) * 1000;
    const args = { ...id(containerId), json: task };
    return (await this.api.v1.containers[":id"].tasks.$post(args, this.within(timeoutMs))).json();
  }
  /**
   * Runs a future's program (`command` = [p2prc, "-e", program], no inputs) in the container's long-lived
   * runtime: no exec on the node. The answer is a task's, signed the same way. A node without the route
   * (an older p2prc) answers E_NOT_FOUND `no route …`.
   */
  async runFuture(
    containerId: string,
    task: { command: string[]; env?: Record<string, string>; timeoutSeconds?: number },
  ): Promise<TaskReply> {
    const timeoutMs = ((task.timeoutSeconds ?? 600) + 10) * 1000;
    const args = { ...id(containerId), json: task };
    return (await this.api.v1.containers[":id"].futures.run.$post(args, this.within(timeoutMs))).json();
  }
  /** The node's future runtimes' counters (futures run without an exec, runtimes started, ...). */
  async futureStats() {
    return (await this.api.v1.futures.stats.$get()).json();
  }
  /** How the node's batch tasks ran: through task agents (no engine call each) or plain execs. */
  async taskStats() {
    return (await this.api.v1.tasks.stats.$get()).json();
  }
  /** Which of `digests` this caller has not uploaded to the node's input cache. */
  async missingInputs(digests: string[]): Promise<string[]> {
    return (await (await this.api.v1.inputs.check.$post({ json: { digests } })).json()).missing;
  }
  /** Uploads a file to the node's input cache as `digest` (its SHA-256), read from disk as it is sent. */
  async putInput(digest: string, file: Blob): Promise<{ bytes: number; stored: boolean }> {
    const res = await this.peer.request(this.node, `/v1/inputs/${digest}`, {
      method: "PUT",
      body: file,
      bodySha256: digest,
      timeoutMs: 300_000,
    });
    return (await res.json()) as { bytes: number; stored: boolean };
  }
  /** The node's input cache counters (bytes received, bytes served to tasks, ...). */
  async inputStats() {
    return (await this.api.v1.inputs.stats.$get()).json();
  }
  async putFiles(containerId: string, path: string, tar: Uint8Array): Promise<void> {
    await this.peer.request(this.node, this.filesPath(containerId, path), {
      method: "PUT",
      body: tar,
      timeoutMs: 300_000,
    });
  }
  async getFiles(containerId: string, path: string): Promise<Uint8Array> {
    return new Uint8Array(await new Response(await this.getFilesStream(containerId, path)).arrayBuffer());
  }
  /** A tar archive of `path` in the container, as the node sends it (never held whole). */
  async getFilesStream(containerId: string, path: string): Promise<ReadableStream<Uint8Array>> {
    const res = await this.peer.request(this.node, this.filesPath(containerId, path), { timeoutMs: 300_000 });
    return res.body ?? new ReadableStream({ start: (c) => c.close() });
  }

  /** A signed request to a route outside ServerApp's types (one another module serves, e.g. /v1/plugins). */
  async request(path: string, init: { method?: string; timeoutMs?: number } = {}): Promise<Response> {
    return this.peer.request(this.node, path, { timeoutMs: this.timeoutMs, ...init });
  }

  /**
   * The first half of an image push: the archive, sent as it is read (no timeout but the caller's
   * signal: a big image takes what it takes). The node answers the upload's id.
   */
  async pushArchive(
    image: string,
    archive: ReadableStream<Uint8Array>,
    o: { sizeHint?: number | undefined; signal?: AbortSignal | undefined } = {},
  ): Promise<{ upload: string; bytes: number }> {
    const q = new URLSearchParams({ image });
    if (o.sizeHint !== undefined) q.set("size", String(o.sizeHint));
    const res = await this.peer.request(this.node, `/v1/images/push?${q}`, {
      method: "POST",
      body: archive,
      headers: { "content-type": "application/x-tar" },
      timeoutMs: 2_147_483_647,
      signal: o.signal,
    });
    return (await res.json()) as { upload: string; bytes: number };
  }
  /** The second half: the archive's digest and size; the node loads it when they match what it got. */
  async commitPush(upload: string, claim: { sha256: string; bytes: number }): Promise<PushResult> {
    // loading a big archive takes the engine a while
    return this.peer.json<PushResult>(this.node, `/v1/images/push/${upload}`, {
      method: "POST",
      json: claim,
      timeoutMs: 30 * 60_000,
    });
  }
  /** Images members pushed to the node, with their pushers. */
  async pushedImages(): Promise<PushedImageView[]> {
    return (await this.peer.json<{ images: PushedImageView[] }>(this.node, "/v1/images/pushed")).images;
  }
  /** Removes an image the caller pushed (an admin: any pushed image). */
  async removePushedImage(image: string): Promise<PushedImageView> {
    const path = `/v1/images/pushed?image=${encodeURIComponent(image)}`;
    return (await this.peer.json<{ removed: PushedImageView }>(this.node, path, { method: "DELETE" }))
      .removed;
  }
  private filesPath(containerId: string, path: string): string {
    return `/v1/containers/${encodeURIComponent(containerId)}/files?path=${encodeURIComponent(path)}`;
  }
}

/** What a NodeClient is built from (a part of ClientDeps). */
export interface PeerDeps {
  /** Signs every request. */
  identity: Identity;
  /** The signatures' time. */
  clock: Clock;
  /** How nodes are reached (p2p's PeerTransport: TLS pinned); default: plain fetch. */
  transport?: NodeTransport | undefined;
}

/**
 * A NodeClient for a node known by its URL (as the IP table or a tracked container gives it) and, when
 * known, its id: every request is then bound to that node.
 */
export function connect(
  deps: PeerDeps,
  target: { url: string; id?: string | undefined },
  timeoutMs?: number,
): NodeClient {
  const peer = new PeerClient({
    identity: deps.identity,
    clock: deps.clock,
    transport: deps.transport ?? fetchTransport(),
    timeoutMs,
  });
  return new NodeClient(peer, nodeOfUrl(target.url, { id: target.id }).node);
}
