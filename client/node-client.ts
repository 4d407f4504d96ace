import { type ErrorCode, type Identity, P2prcError, signRequest } from "../core/index.ts";
import type { CreateContainerRequest, CreateResult } from "../server/index.ts";

/** What a node answers for a created container (the server's own type: siblings share types). */
export type CreatedContainer = CreateResult;

/** POST /v1/containers body. */
export type CreateContainerBody = CreateContainerRequest;

export interface ExecReply {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut?: boolean;
  truncated?: boolean;
}

/**
 * A node's HTTP API from the client side. Network failures and timeouts become E_NODE_UNREACHABLE
 * (retryable); error answers keep the node's code and message.
 */
export class NodeClient {
  /** `identity` signs every request (core/signing.ts); nodes answer unsigned ones only for health. */
  constructor(
    readonly url: string,
    private readonly identity: Identity | undefined,
    private readonly fetchFn: typeof fetch = fetch,
    private readonly timeoutMs = 30_000,
    /** The node's id, when known: signed into every request so no other node accepts it. */
    readonly nodeId?: string,
  ) {}

  private async request(
    method: string,
    path: string,
    init: { body?: Uint8Array | string; json?: unknown; timeoutMs?: number } = {},
  ) {
    const headers: Record<string, string> = {};
    let body = init.body;
    if (init.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(init.json);
    }
    if (this.identity)
      Object.assign(
        headers,
        signRequest(this.identity, method, `${this.url}${path}`, body ?? "", Date.now(), this.nodeId),
      );
    let res: Response;
    try {
      res = await this.fetchFn(`${this.url}${path}`, {
        method,
        headers,
        body,
        signal: AbortSignal.timeout(init.timeoutMs ?? this.timeoutMs),
      });
    } catch (err) {
      const reason = (err as Error).name === "TimeoutError" ? "no answer in time" : (err as Error).message;
      throw new P2prcError("E_NODE_UNREACHABLE", `cannot reach node ${this.url}: ${reason}`, {
        cause: err,
        retryable: true,
      });
    }
    if (!res.ok) {
      const text = await res.text().catch(() => "");
      let code: ErrorCode = res.status >= 500 ? "E_NODE_UNREACHABLE" : "E_INVALID";
      let message = `node ${this.url} answered ${res.status}`;
      let field: string | undefined;
      try {
        const parsed = JSON.parse(text) as { error?: { code?: ErrorCode; message?: string; field?: string } };
        if (parsed.error?.code) code = parsed.error.code;
        if (parsed.error?.message) message = `node ${this.url}: ${parsed.error.message}`;
        field = parsed.error?.field;
      } catch {
        // not JSON: keep the status line
      }
      const hint =
        res.status === 403 && /not a member/.test(message)
          ? `ask the node's operator to add this node's id (p2prc --whoami) to its trusted list`
          : undefined;
      throw new P2prcError(code, message, {
        field,
        hint,
        retryable: res.status >= 500 || res.status === 429,
      });
    }
    return res;
  }

  private async json<T>(method: string, path: string, json?: unknown, timeoutMs?: number): Promise<T> {
    const res = await this.request(method, path, { json, timeoutMs });
    return (await res.json()) as T;
  }

  health() {
    return this.json<{ ok: boolean; nodeId: string; name: string; version: string }>(
      "GET",
      "/v1/health",
      undefined,
      5000,
    );
  }
  specs() {
    return this.json<Record<string, unknown>>("GET", "/v1/specs");
  }
  images() {
    return this.json<{ images: { id: string; tags: string[]; sizeBytes: number; createdAt: string }[] }>(
      "GET",
      "/v1/images",
    );
  }
  createContainer(body: CreateContainerBody) {
    return this.json<CreatedContainer>("POST", "/v1/containers", body, 120_000);
  }
  getContainer(id: string) {
    return this.json<{ id: string; state: string; running: boolean; exitCode?: number }>(
      "GET",
      `/v1/containers/${encodeURIComponent(id)}`,
    );
  }
  async removeContainer(id: string): Promise<void> {
    await this.request("DELETE", `/v1/containers/${encodeURIComponent(id)}`);
  }
  exec(
    id: string,
    command: string[],
    opts: { env?: Record<string, string>; workingDir?: string; timeoutSeconds?: number } = {},
  ) {
    const timeoutMs = ((opts.timeoutSeconds ?? 600) + 10) * 1000;
    return this.json<ExecReply>(
      "POST",
      `/v1/containers/${encodeURIComponent(id)}/exec`,
      { command, ...opts },
      timeoutMs,
    );
  }
  async putFiles(id: string, path: string, tar: Uint8Array): Promise<void> {
    await this.request(
      "PUT",
      `/v1/containers/${encodeURIComponent(id)}/files?path=${encodeURIComponent(path)}`,
      {
        body: tar,
        timeoutMs: 300_000,
      },
    );
  }
  async getFiles(id: string, path: string): Promise<Uint8Array> {
    const res = await this.request(
      "GET",
      `/v1/containers/${encodeURIComponent(id)}/files?path=${encodeURIComponent(path)}`,
      {
        timeoutMs: 300_000,
      },
    );
    return new Uint8Array(await res.arrayBuffer());
  }
}
