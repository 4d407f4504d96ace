// The dashboard's way in: one-time login tokens, exchanged for a session (an HttpOnly, SameSite=Strict
// cookie) with an expiry and its own CSRF token. Held in memory: a restart logs everyone out.
import type { Clock } from "../../core/index.ts";

/** How long a login token may wait to be used, and how long a session lasts. */
export interface UiAuthOptions {
  clock: Clock;
  /** Default 10 minutes. */
  tokenTtlMs?: number;
  /** Default 12 hours. */
  sessionTtlMs?: number;
  /** Most tokens and sessions held at once; the oldest goes first beyond (default 64 each). */
  max?: number;
}

/** A logged-in browser: `csrf` must come back with every state-changing request. */
export interface UiSession {
  id: string;
  csrf: string;
  expiresAt: number;
}

/** 32 random bytes, hex. */
export function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Compares two strings in time that depends only on their length. */
export function sameSecret(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** One-time tokens and the sessions they open. */
export class UiAuth {
  private readonly tokens = new Map<string, number>();
  private readonly sessions = new Map<string, UiSession>();
  readonly tokenTtlMs: number;
  readonly sessionTtlMs: number;
  private readonly max: number;

  constructor(private readonly o: UiAuthOptions) {
    this.tokenTtlMs = o.tokenTtlMs ?? 10 * 60_000;
    this.sessionTtlMs = o.sessionTtlMs ?? 12 * 3600_000;
    this.max = o.max ?? 64;
  }

  /** A new login token, good for one exchange within tokenTtlMs. */
  mintToken(): { token: string; expiresAt: number } {
    this.sweep();
    const token = randomToken();
    const expiresAt = this.o.clock.now() + this.tokenTtlMs;
    bounded(this.tokens, this.max).set(token, expiresAt);
    return { token, expiresAt };
  }

  /** Spends a login token: a new session, or undefined when the token is unknown, used or expired. */
  exchange(token: string): UiSession | undefined {
    const expiresAt = this.tokens.get(token);
    this.tokens.delete(token);
    if (expiresAt === undefined || expiresAt <= this.o.clock.now()) return undefined;
    const session = {
      id: randomToken(),
      csrf: randomToken(),
      expiresAt: this.o.clock.now() + this.sessionTtlMs,
    };
    bounded(this.sessions, this.max).set(session.id, session);
    return session;
  }

  /** The live session with this id, if any. */
  session(id: string | undefined): UiSession | undefined {
    if (!id) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (s.expiresAt <= this.o.clock.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    return s;
  }

  /** Ends a session (logout). */
  end(id: string): void {
    this.sessions.delete(id);
  }

  private sweep(): void {
    const now = this.o.clock.now();
    for (const [t, exp] of this.tokens) if (exp <= now) this.tokens.delete(t);
    for (const [id, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(id);
  }
}

/** Drops the oldest entries so that one more fits under `max`. */
function bounded<K, V>(map: Map<K, V>, max: number): Map<K, V> {
  for (const key of map.keys()) {
    if (map.size < max) break;
    map.delete(key);
  }
  return map;
}
