/** Error codes shared by every module; the HTTP layer and the CLI map them to statuses and exit codes. */
export type ErrorCode =
  | "E_CONFIG"
  | "E_INVALID"
  | "E_NOT_FOUND"
  | "E_CONFLICT"
  | "E_LIMIT"
  | "E_RATE_LIMIT"
  | "E_TOO_LARGE"
  | "E_UNAUTHORIZED"
  | "E_FORBIDDEN"
  | "E_ENGINE_UNAVAILABLE"
  | "E_ENGINE"
  | "E_NODE_UNREACHABLE"
  | "E_NOT_AVAILABLE"
  | "E_IDENTITY"
  | "E_STORE"
  | "E_INTERNAL";

export interface P2prcErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  /** The input field the error is about, when there is one (`serverPort`, `body.cpus`). */
  field?: string;
  /** A short suggestion shown to CLI users on a `hint:` line. */
  hint?: string;
}

/** The one error type of p2prc: a stable `code`, a human message, and whether retrying can help. */
export class P2prcError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly field: string | undefined;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: P2prcErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "P2prcError";
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.field = options.field;
    this.hint = options.hint;
  }
}

/** True for a P2prcError, optionally of one code. */
export function isP2prcError(err: unknown, code?: ErrorCode): err is P2prcError {
  return err instanceof P2prcError && (code === undefined || err.code === code);
}

/** Adds context on the way up (`start task 3: engine unreachable`) and keeps code, field and hint. */
export function wrapError(err: unknown, context: string): P2prcError {
  if (err instanceof P2prcError) {
    return new P2prcError(err.code, `${context}: ${err.message}`, {
      cause: err,
      retryable: err.retryable,
      field: err.field,
      hint: err.hint,
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new P2prcError("E_INTERNAL", `${context}: ${message}`, { cause: err });
}
