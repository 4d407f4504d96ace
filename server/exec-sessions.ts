// Interactive execs (`p2prc exec -i/-t`) between their signed opening and their streaming connection.
// Opening one is a signed request (the caller is authorised as for any exec); its byte stream is a second,
// long request whose body is the command's stdin and whose answer is its output, which cannot be hashed
// ahead to be signed. That request carries instead the one-time token the signed opening returned over
// the same pinned TLS (Kubernetes' kubelet streams exec the same way): 256 random bits, good for one
// attach within `attachWithinMs`, compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { type Clock, P2prcError } from "../core/index.ts";
import type { ExecSession } from "./engine/index.ts";

/** One open session. */
export interface OpenSession {
  id: string;
  /** The node id that opened it: the only caller that may resize it or read its exit code. */
  owner: string;
  container: string;
  tty: boolean;
  session: ExecSession;
  attached: boolean;
  /** When its output ended (it is forgotten `keepEndedMs` later). */
  endedAt: number | undefined;
}

export interface ExecSessionsOptions {
  clock: Clock;
  /** An unattached session is closed this long after it was opened. Default 30 s. */
  attachWithinMs?: number;
  /** An ended session's exit code stays readable this long. Default 60 s. */
  keepEndedMs?: number;
  /** Open sessions per caller (not counting ended ones). Default 16. */
  maxPerCaller?: number;
  /** Open sessions on the node. Default 256. */
  maxTotal?: number;
}

const hashOf = (token: string) => createHash("sha256").update(token).digest();

/** The node's interactive exec sessions. */
export class ExecSessions {
  private readonly open = new Map<string, OpenSession & { tokenHash: Buffer }>();
  /** How long an opened session waits for its stream before it is closed. */
  readonly attachWithinMs: number;
  private readonly keepEndedMs: number;

  constructor(private readonly o: ExecSessionsOptions) {
    this.attachWithinMs = o.attachWithinMs ?? 30_000;
    this.keepEndedMs = o.keepEndedMs ?? 60_000;
  }

  /** Room for one more session of `owner`, or E_RATE_LIMIT (ask before starting the command). */
  checkRoom(owner: string): void {
    this.sweep();
    const live = [...this.open.values()].filter((s) => s.endedAt === undefined);
    const max = this.o.maxPerCaller ?? 16;
    if (live.filter((s) => s.owner === owner).length >= max)
      throw new P2prcError("E_RATE_LIMIT", `at most ${max} interactive execs open at once per node`, {
        retryable: true,
      });
    if (live.length >= (this.o.maxTotal ?? 256))
      throw new P2prcError("E_RATE_LIMIT", "this node has too many interactive execs open", {
        retryable: true,
      });
  }

  /** Registers a started session; returns its id and the token its stream must present. */
  add(owner: string, container: string, tty: boolean, session: ExecSession): { id: string; token: string } {
    const id = randomBytes(16).toString("hex");
    const token = randomBytes(32).toString("base64url");
    this.open.set(id, {
      id,
      owner,
      container,
      tty,
      session,
      attached: false,
      endedAt: undefined,
      tokenHash: hashOf(token),
    });
    // never attached: its command is not left running with its connection held
    this.o.clock.setTimeout(() => {
      if (!this.open.get(id)?.attached) this.ended(id);
    }, this.attachWithinMs);
    return { id, token };
  }

  /** The session for its stream: the token must match and it must not be attached yet. */
  attach(id: string, token: string | undefined): OpenSession {
    this.sweep();
    const s = this.open.get(id);
    // one answer for an unknown session and a wrong token: a guess learns nothing
    if (!s || !token || !timingSafeEqual(hashOf(token), s.tokenHash))
      throw new P2prcError("E_UNAUTHORIZED", "unauthenticated: no such exec session, or a wrong token", {
        field: "x-p2prc-exec-token",
      });
    if (s.attached)
      throw new P2prcError("E_CONFLICT", "this exec session is already attached (its token is used)");
    if (s.endedAt !== undefined)
      throw new P2prcError(
        "E_CONFLICT",
        `this exec session has ended (it was not attached within ${this.attachWithinMs / 1000} s)`,
      );
    s.attached = true;
    return s;
  }

  /** The session `caller` opened (for resize and the exit code). */
  get(id: string, caller: string): OpenSession {
    this.sweep();
    const s = this.open.get(id);
    if (!s || s.owner !== caller)
      throw new P2prcError("E_NOT_FOUND", `no exec session ${id}`, { field: "session" });
    return s;
  }

  /** Its output ended (or its stream was dropped): the engine connection closes; the exit code stays a while. */
  ended(id: string): void {
    const s = this.open.get(id);
    if (!s || s.endedAt !== undefined) return;
    s.endedAt = this.o.clock.now();
    s.session.close();
  }

  /** Sessions open now (not ended), for stats and tests. */
  get size(): number {
    return [...this.open.values()].filter((s) => s.endedAt === undefined).length;
  }

  /** Closes every session (the node stops). */
  closeAll(): void {
    for (const s of this.open.values()) s.session.close();
    this.open.clear();
  }

  /** Forgets ended sessions after keepEndedMs. */
  private sweep(): void {
    const now = this.o.clock.now();
    for (const [id, s] of this.open) {
      if (s.endedAt !== undefined && now - s.endedAt > this.keepEndedMs) this.open.delete(id);
    }
  }
}
