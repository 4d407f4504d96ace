import { Hono } from "hono";
import { P2prcError, zod } from "../../core/index.ts";
import type { ContainerService } from "../containers.ts";
import type { ExecSessions } from "../exec-sessions.ts";
import type { AuthEnv } from "../http/auth.ts";
import { type CallerResolver, requireCaller } from "../http/caller.ts";
import { parseJson } from "../http/errors.ts";
import { ExecSessionSchema, ResizeSchema } from "../types.ts";

/** The header an exec session's stream presents its one-time token in. */
export const EXEC_TOKEN_HEADER = "x-p2prc-exec-token";

const SessionIdSchema = zod()
  .string()
  .check(zod().regex(/^[0-9a-f]{32}$/, "a session id (32 hex digits)"));

export interface ExecRoutesOptions {
  service: ContainerService;
  sessions: ExecSessions;
  resolveCaller: CallerResolver;
}

/** `POST /v1/containers/:id/exec/sessions` (signed): opens an interactive exec. */
export function execOpenRoutes(o: ExecRoutesOptions) {
  return new Hono<AuthEnv>().post("/:id/exec/sessions", async (c) => {
    const caller = requireCaller(c, o.resolveCaller);
    const body = await parseJson(c, ExecSessionSchema);
    o.sessions.checkRoom(caller.id);
    const { container, session } = await o.service.openExec(c.req.param("id"), caller, body);
    const { id, token } = o.sessions.add(caller.id, container, body.tty === true, session);
    return c.json(
      { session: id, token, tty: body.tty === true, attachWithinSeconds: o.sessions.attachWithinMs / 1000 },
      201,
    );
  });
}

const sessionId = (raw: string) => {
  const r = SessionIdSchema.safeParse(raw);
  if (!r.success) throw new P2prcError("E_INVALID", "session: expected 32 hex digits", { field: "session" });
  return r.data;
};

/**
 * `/v1/exec/:session`: the stream (`POST …/io`: its body is the command's stdin, its answer the output;
 * authorised by the session's one-time token, not a signature), resize and the exit code (signed, by the
 * session's owner).
 */
export function execSessionRoutes(o: ExecRoutesOptions) {
  return new Hono<AuthEnv>()
    .post("/:session/io", async (c) => {
      const s = o.sessions.attach(sessionId(c.req.param("session")), c.req.header(EXEC_TOKEN_HEADER));
      // an interactive session may be quiet for long: Bun's idle timeout does not apply to it
      (c.env as { server?: { timeout?(r: Request, s: number): void } } | undefined)?.server?.timeout?.(
        c.req.raw,
        0,
      );
      const ended = () => o.sessions.ended(s.id);
      c.req.raw.signal.addEventListener("abort", ended, { once: true });
      const input = c.req.raw.body;
      void (async () => {
        try {
          if (input) for await (const chunk of input) await s.session.write(chunk);
        } catch {
          // the caller went away: the abort above ends the session
        } finally {
          s.session.endInput();
        }
      })();
      const output = s.session.output.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({ flush: ended }),
      );
      return new Response(output, {
        headers: {
          "content-type": s.tty ? "application/octet-stream" : "application/vnd.p2prc.frames",
          "cache-control": "no-store",
        },
      });
    })
    .post("/:session/resize", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const s = o.sessions.get(sessionId(c.req.param("session")), caller.id);
      const body = await parseJson(c, ResizeSchema);
      if (!s.tty) throw new P2prcError("E_CONFLICT", "this exec session has no terminal to resize");
      if (s.endedAt === undefined) await s.session.resize(body.cols, body.rows);
      return c.json({ cols: body.cols, rows: body.rows });
    })
    .get("/:session", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const s = o.sessions.get(sessionId(c.req.param("session")), caller.id);
      const exitCode = (await s.session.exitCode()) ?? null;
      return c.json({ session: s.id, running: exitCode === null, exitCode });
    });
}
