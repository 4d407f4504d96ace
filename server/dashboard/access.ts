// The two other doors: `POST /v1/ui/token` (signed, the node's own key only) hands `p2prc ui` a login
// link, and `GET /metrics` answers a Prometheus scrape that brings the configured token, or any loopback
// caller when no token is configured.
import { type Context, Hono } from "hono";
import { P2prcError } from "../../core/index.ts";
import type { AuthEnv } from "../http/auth.ts";
import { sameSecret, type UiAuth } from "./auth.ts";
import type { NodeMetrics } from "./metrics.ts";

/** The login link for a token, at the origin the request came to. */
export function loginUrl(origin: string, token: string): string {
  return `${origin.replace(/\/$/, "")}/ui/login?token=${token}`;
}

/** `POST /token` under `/v1/ui`, behind the signed-request middleware: the operator's CLI gets a login link. */
export function tokenRoutes(auth: UiAuth) {
  return new Hono<AuthEnv>().post("/token", (c) => {
    if (!c.get("caller")?.operator) {
      throw new P2prcError("E_FORBIDDEN", "only this node's own key may open its dashboard");
    }
    const { token, expiresAt } = auth.mintToken();
    return c.json({ url: loginUrl(new URL(c.req.url).origin, token), expiresAt });
  });
}

/** 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.replace(/^::ffff:/i, "");
  return v4 === "::1" || /^127\.\d+\.\d+\.\d+$/.test(v4);
}

export interface MetricsRouteOptions {
  metrics: NodeMetrics;
  /** Config `metricsToken`; empty: loopback only. */
  token: string;
  /** The caller's address (the server's `remoteAddress`). */
  remoteAddress: (c: Context) => string | undefined;
}

/** `GET /` under `/metrics`, outside the signed-request middleware. */
export function metricsRoutes(o: MetricsRouteOptions) {
  return new Hono<AuthEnv>().get("/", async (c) => {
    if (o.token) {
      const given = /^Bearer (.+)$/.exec(c.req.header("authorization") ?? "")?.[1] ?? "";
      if (!sameSecret(given, o.token)) {
        throw new P2prcError("E_UNAUTHORIZED", "/metrics needs the scrape token (Authorization: Bearer …)");
      }
    } else if (!isLoopback(o.remoteAddress(c))) {
      throw new P2prcError(
        "E_FORBIDDEN",
        "/metrics answers loopback only; set metricsToken to scrape from elsewhere",
      );
    }
    const { body, contentType } = await o.metrics.text();
    return c.body(body, 200, { "Content-Type": contentType });
  });
}
