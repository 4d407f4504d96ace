// The dashboard's HTTP routes under /ui. Its own way in (the server's signed-request middleware does not
// run here): a one-time login link opens a session cookie; every other route needs that session, and a
// state-changing one also the session's CSRF token and a same-origin request.
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { csrf } from "hono/csrf";
import { streamSSE } from "hono/streaming";
import type { HtmlEscapedString } from "hono/utils/html";
import { type Clock, type Logger, P2prcError } from "../../core/index.ts";
import type { AuthEnv } from "../http/auth.ts";
import { CSS, ICON, SCRIPT } from "./assets.ts";
import { sameSecret, type UiAuth, type UiSession } from "./auth.ts";
import { page, refusedPage } from "./layout.ts";
import { PAGES, type PageName, type SectionContext, sections } from "./pages.ts";
import type { DashboardSource } from "./types.ts";

export interface DashboardOptions {
  source: DashboardSource;
  auth: UiAuth;
  clock: Clock;
  logger: Logger;
  /** Names the session cookie, so nodes on one host (cookies ignore ports) keep theirs apart. */
  nodeId: string;
  nodeName: string;
  /** How often a live page looks for changes (default 1000 ms). */
  pollMs?: number;
  /** Ends every live stream (the node is stopping: an open page must not hold its shutdown). */
  closing?: AbortSignal;
}

const SECURITY_HEADERS = {
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "Referrer-Policy": "no-referrer",
  "X-Content-Type-Options": "nosniff",
  "Cache-Control": "no-store",
};

const ID_RE = /^[A-Za-z0-9_.-]{1,128}$/;

/** The dashboard as a sub-app, to mount at `/ui` outside the signed-request middleware. */
export function dashboardRoutes(o: DashboardOptions) {
  const cookie = `p2prc_ui_${o.nodeId.slice(0, 12)}`;
  const pollMs = o.pollMs ?? 1000;
  const log = o.logger.withTag("ui");
  // the session rides beside the request, not in c.set: this app is mounted where the server's AuthEnv
  // types the context
  const sessions = new WeakMap<Request, UiSession>();
  const sessionOf = (c: Context) => sessions.get(c.req.raw) as UiSession;
  const ctxOf = (c: Context, id?: string): SectionContext => ({
    source: o.source,
    csrf: sessionOf(c).csrf,
    now: o.clock.now(),
    id,
  });

  const requireSession: MiddlewareHandler = async (c, next) => {
    const s = o.auth.session(getCookie(c, cookie));
    if (!s)
      throw new P2prcError(
        "E_UNAUTHORIZED",
        "the dashboard needs a session: open the link `p2prc ui` prints",
      );
    sessions.set(c.req.raw, s);
    await next();
  };
  // Same origin (hono's check of Origin and Sec-Fetch-Site), then the session's own token in the form.
  // (hono's csrf answers with its own HTTPException; the node's errors are P2prcErrors with codes)
  const honoCsrf = csrf();
  const sameOrigin: MiddlewareHandler = async (c, next) => {
    try {
      await honoCsrf(c, async () => {});
    } catch {
      throw new P2prcError(
        "E_FORBIDDEN",
        "cross-site request refused: the dashboard takes forms from its own pages only",
      );
    }
    await next();
  };
  const checkToken: MiddlewareHandler = async (c, next) => {
    const form = await c.req.parseBody();
    const token = typeof form._csrf === "string" ? form._csrf : c.req.header("x-csrf-token");
    if (!token || !sameSecret(token, sessionOf(c).csrf)) {
      throw new P2prcError(
        "E_FORBIDDEN",
        "this form is not from this dashboard (CSRF token missing or wrong)",
      );
    }
    await next();
  };

  const render = async (c: Context, name: PageName, id?: string) => {
    const ctx = ctxOf(c, id);
    const live = name === "container" ? `/ui/events/container/${id}` : `/ui/events/${name}`;
    return c.html(page(name, await sections(name, ctx), ctx, { live, nodeName: o.nodeName }));
  };

  const stream = (c: Context, name: PageName, id?: string) =>
    streamSSE(c, async (sse) => {
      const last = new Map<string, string>();
      const session = sessionOf(c);
      let sinceWrite = 0;
      while (!sse.aborted && !o.closing?.aborted && session.expiresAt > o.clock.now()) {
        const s = await sections(name, ctxOf(c, id)).catch((err: unknown) => {
          log.debug(`live ${name}: ${(err as Error).message}`);
          return {}; // sent again on the next look
        });
        for (const [key, value] of Object.entries(s)) {
          const text = String(await value);
          if (last.get(key) === text) continue;
          last.set(key, text);
          await sse.writeSSE({ event: "section", data: JSON.stringify({ id: key, html: text }) });
          sinceWrite = 0;
        }
        // a comment now and then keeps the connection from the server's idle timeout
        sinceWrite += pollMs;
        if (sinceWrite >= 15_000) {
          await sse.write(": keep-alive\n\n");
          sinceWrite = 0;
        }
        await sse.sleep(pollMs);
      }
    });

  const idParam = (c: Context) => {
    const id = c.req.param("id") ?? "";
    if (!ID_RE.test(id)) throw new P2prcError("E_INVALID", "not a container id", { field: "id" });
    return id;
  };

  return new Hono<AuthEnv>()
    .use("*", async (c, next) => {
      await next();
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(k, v);
    })
    .get("/login", (c) => {
      const s = o.auth.exchange(c.req.query("token") ?? "");
      if (!s) {
        // debug, not warn: anyone who reaches the port may try, and must not be able to fill the log
        log.debug("refused a dashboard login: the token is unknown, used or expired");
        return c.html(
          refusedPage("This login link is unknown, already used or expired.") as HtmlEscapedString,
          401,
        );
      }
      setCookie(c, cookie, s.id, {
        path: "/ui",
        httpOnly: true,
        sameSite: "Strict",
        secure: new URL(c.req.url).protocol === "https:",
        maxAge: Math.floor(o.auth.sessionTtlMs / 1000),
      });
      log.info("dashboard: a session began");
      return c.redirect("/ui", 303);
    })
    .use("*", requireSession)
    .post("/logout", sameOrigin, checkToken, (c) => {
      o.auth.end(sessionOf(c).id);
      deleteCookie(c, cookie, { path: "/ui" });
      return c.html(refusedPage("Logged out.") as HtmlEscapedString);
    })
    .get("/assets/app.css", (c) => c.body(CSS, 200, { "Content-Type": "text/css; charset=utf-8" }))
    .get("/assets/icon.svg", (c) => c.body(ICON, 200, { "Content-Type": "image/svg+xml" }))
    .get("/assets/app.js", (c) => c.body(SCRIPT, 200, { "Content-Type": "text/javascript; charset=utf-8" }))
    .get("/", (c) => render(c, "overview"))
    .get("/containers/:id", (c) => render(c, "container", idParam(c)))
    .get("/events/container/:id", (c) => stream(c, "container", idParam(c)))
    .get("/events/:page", (c) => {
      const name = c.req.param("page");
      if (!Object.hasOwn(PAGES, name)) throw new P2prcError("E_NOT_FOUND", `no page ${name.slice(0, 40)}`);
      return stream(c, name as PageName);
    })
    .get("/containers/:id/logs", async (c) => {
      // opened before the stream starts, so an unknown container is a plain 404
      const abort = new AbortController();
      o.closing?.addEventListener("abort", () => abort.abort(), { once: true, signal: abort.signal });
      const body = await o.source.logs(idParam(c), 200, abort.signal);
      return streamSSE(c, async (sse) => {
        sse.onAbort(() => abort.abort());
        const reader = body.getReader();
        const decoder = new TextDecoder();
        let rest = "";
        try {
          while (!sse.aborted) {
            const { done, value } = await reader.read();
            if (done) break;
            const lines = (rest + decoder.decode(value, { stream: true })).split("\n");
            rest = lines.pop() ?? "";
            for (const line of lines) await sse.writeSSE({ event: "line", data: line.replace(/\r$/, "") });
          }
          if (rest) await sse.writeSSE({ event: "line", data: rest });
          await sse.writeSSE({ event: "end", data: "" });
        } finally {
          abort.abort();
          reader.releaseLock();
        }
      });
    })
    .get("/batches/:id/image.png", async (c) => {
      const b = o.source.batches().find((x) => x.id === c.req.param("id"));
      if (!b?.imagePath) throw new P2prcError("E_NOT_FOUND", "no image for this batch");
      const file = Bun.file(b.imagePath);
      if (!(await file.exists())) throw new P2prcError("E_NOT_FOUND", "the batch's image is not written yet");
      return c.body(await file.arrayBuffer(), 200, { "Content-Type": "image/png" });
    })
    .post("/containers/:id/remove", sameOrigin, checkToken, async (c) => {
      const id = idParam(c);
      await o.source.removeContainer(id);
      log.info(`dashboard: removed container ${id.slice(0, 12)}`);
      return c.redirect("/ui/containers", 303);
    })
    .post("/containers/:id/lease", sameOrigin, checkToken, async (c) => {
      const id = idParam(c);
      const ttl = Number((await c.req.parseBody()).ttl);
      if (!Number.isInteger(ttl) || ttl < 1) {
        throw new P2prcError("E_INVALID", "ttl: a whole number of seconds", { field: "ttl" });
      }
      await o.source.renewLease(id, ttl);
      return c.redirect(`/ui/containers/${id}`, 303);
    })
    .post("/clusters/add", sameOrigin, checkToken, async (c) => {
      const f = await c.req.parseBody();
      const role = f.role === "admin" ? "admin" : "member";
      o.source.addMember(String(f.cluster ?? ""), String(f.id ?? "").trim(), role, String(f.label ?? ""));
      return c.redirect("/ui/clusters", 303);
    })
    .post("/clusters/:name/remove", sameOrigin, checkToken, async (c) => {
      const f = await c.req.parseBody();
      o.source.removeMember(c.req.param("name"), String(f.id ?? ""));
      return c.redirect("/ui/clusters", 303);
    })
    .get("/:page", (c) => {
      const name = c.req.param("page");
      if (!Object.hasOwn(PAGES, name) || name === "overview") {
        throw new P2prcError("E_NOT_FOUND", `no page ${name.slice(0, 40)}`);
      }
      return render(c, name as PageName);
    });
}
