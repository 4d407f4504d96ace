import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { type ErrorCode, P2prcError, type z } from "../../core/index.ts";

const STATUS: Record<ErrorCode, ContentfulStatusCode> = {
  E_CONFIG: 400,
  E_INVALID: 400,
  E_NOT_FOUND: 404,
  E_CONFLICT: 409,
  E_LIMIT: 409,
  E_RATE_LIMIT: 429,
  E_TOO_LARGE: 413,
  E_UNAUTHORIZED: 401,
  E_FORBIDDEN: 403,
  E_ENGINE_UNAVAILABLE: 503,
  E_ENGINE: 502,
  E_NODE_UNREACHABLE: 502,
  E_NOT_AVAILABLE: 501,
  E_IDENTITY: 400,
  E_STORE: 500,
  E_INTERNAL: 500,
};

/** The wire shape of every error: `{ error: { code, message, field? } }`. No stack traces. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; field?: string };
}

/** Maps any thrown value to a JSON error response; unknown errors become a logged 500 without details. */
export function errorResponse(c: Context, err: unknown, onInternal?: (err: unknown) => void): Response {
  if (err instanceof P2prcError) {
    const body: ErrorBody = { error: { code: err.code, message: err.message } };
    if (err.field) body.error.field = err.field;
    return c.json(body, STATUS[err.code]);
  }
  onInternal?.(err);
  return c.json({ error: { code: "E_INTERNAL", message: "internal error" } } satisfies ErrorBody, 500);
}

function issueToError(where: string, issues: z.core.$ZodIssue[]): P2prcError {
  const issue = issues[0];
  const path = issue?.path.map(String) ?? [];
  if (issue?.code === "unrecognized_keys") {
    const key = issue.keys[0] ?? "";
    return new P2prcError("E_INVALID", `${where}: unknown field "${[...path, key].join(".")}"`, {
      field: [where, ...path, key].join("."),
    });
  }
  const field = [where, ...path].join(".");
  return new P2prcError("E_INVALID", `${field}: ${issue?.message ?? "invalid"}`, { field });
}

/** Parses the JSON body with a zod schema; 400 naming the field on failure. */
export async function parseJson<S extends z.ZodMiniType>(c: Context, schema: S): Promise<z.infer<S>> {
  let raw: unknown;
  try {
    const text = await c.req.text();
    raw = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    throw new P2prcError("E_INVALID", "body: not valid JSON", { field: "body" });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw issueToError("body", parsed.error.issues);
  return parsed.data;
}

/** Validates one value (query parameter, path parameter) with a zod schema; 400 naming it. */
export function parseValue<S extends z.ZodMiniType>(name: string, schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const message = parsed.error.issues[0]?.message ?? "invalid";
    throw new P2prcError("E_INVALID", `${name}: ${message}`, { field: name });
  }
  return parsed.data;
}
