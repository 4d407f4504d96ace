import { signRequest } from "../config/index.ts";
import type { NodeContext } from "./node.ts";

/** A signed request from this node to another (or to its own running server). */
export async function nodeFetch(
  ctx: NodeContext,
  url: string,
  init: { method: string; json?: unknown; timeoutMs: number },
): Promise<Response> {
  const body = init.json === undefined ? "" : JSON.stringify(init.json);
  const headers: Record<string, string> = signRequest(ctx.identity, init.method, url, body);
  if (init.json !== undefined) headers["content-type"] = "application/json";
  return fetch(url, {
    method: init.method,
    headers,
    body: init.json === undefined ? undefined : body,
    signal: AbortSignal.timeout(init.timeoutMs),
  });
}
