import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { P2prcError, taskReplyText, unbracket, zod } from "../../core/index.ts";
import type { TaskResult, TaskService } from "../batch/tasks.ts";
import type { ContainerService } from "../containers.ts";
import type { FutureRuntimes } from "../future-runtimes.ts";
import type { AuthEnv } from "../http/auth.ts";
import { spoolBody } from "../http/body.ts";
import { type CallerResolver, requireCaller } from "../http/caller.ts";
import { parseJson, parseValue } from "../http/errors.ts";
import {
  ContainerPathSchema,
  CreateContainerSchema,
  ExecSchema,
  LeaseSchema,
  LOGS_DEFAULT_MAX_BYTES,
  LogsQuerySchema,
  StopSchema,
  TaskSchema,
} from "../types.ts";

const z = zod();
const IdSchema = z.string().check(z.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, "a container id or name"));
const FlagSchema = z.enum(["", "0", "1", "true", "false"], "1, 0, true or false");

const tooLarge = (limit: string) => () => {
  throw new P2prcError("E_INVALID", `body: larger than ${limit}`, { field: "body" });
};

export interface ContainerRoutesOptions {
  service: ContainerService;
  /** Batch tasks (`POST /:id/tasks`). */
  tasks: TaskService;
  /** Futures in the container's long-lived runtime (`POST /:id/futures/run`). */
  runtimes: FutureRuntimes;
  /** Signs a task's reply with the node's key (`signature`, over core's taskReplyText); unsigned without it. */
  sign?: ((text: string) => string) | undefined;
  resolveCaller: CallerResolver;
  /** Host name put into the `ssh` command: the advertised address, or the host the client used. */
  publicHost: (requestHost: string) => string;
  maxJsonBytes: number;
  maxUploadBytes: number;
  /** Where an upload is spooled when no auth middleware did it (the node's data dir). */
  spoolDir: string;
}

/** /v1/containers: create, list, inspect, remove, lease, stop, start, logs, exec, batch tasks, files. */
export function containerRoutes(o: ContainerRoutesOptions) {
  const { service } = o;
  const json = bodyLimit({ maxSize: o.maxJsonBytes, onError: tooLarge(`${o.maxJsonBytes} bytes`) });
  const id = (raw: string | undefined) => parseValue("id", IdSchema, raw);
  /** A task's (or a future's) answer with the node's signature over it, when the node has a key. */
  const signed = <R extends TaskResult>(containerId: string, r: R) => {
    const signature = o.sign?.(taskReplyText({ ...r, containerId }));
    return signature ? { ...r, signature } : r;
  };

  return new Hono<AuthEnv>()
    .get("/", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      return c.json({ containers: await service.list(caller) });
    })
    .post("/", json, async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const body = await parseJson(c, CreateContainerSchema);
      const result = await service.create(body, caller, o.publicHost(unbracket(new URL(c.req.url).hostname)));
      return c.json(result, 201);
    })
    .get("/:id", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      return c.json(await service.get(id(c.req.param("id")), caller));
    })
    .delete("/:id", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const target = id(c.req.param("id"));
      // ?background=1: answered once the lease has ended, removed behind (a node without it removes first)
      const background = parseValue("background", FlagSchema, c.req.query("background") ?? "0");
      if (background === "1" || background === "true") {
        await service.removeInBackground(target, caller);
        return c.json({ removing: target }, 202);
      }
      await service.remove(target, caller);
      return c.json({ removed: target });
    })
    .post("/:id/lease", json, async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const body = await parseJson(c, LeaseSchema);
      return c.json(await service.renew(id(c.req.param("id")), caller, body.ttlSeconds));
    })
    .post("/:id/stop", json, async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      // an empty body: the default grace period
      const body = await parseJson(c, StopSchema);
      return c.json(await service.stop(id(c.req.param("id")), caller, body.timeoutSeconds ?? 10));
    })
    .post("/:id/start", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      return c.json(await service.start(id(c.req.param("id")), caller));
    })
    .get("/:id/logs", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const follow = parseValue("follow", FlagSchema, c.req.query("follow") ?? "0");
      const following = follow === "1" || follow === "true";
      const q = LogsQuerySchema;
      const tail = parseValue("tail", q.tail, c.req.query("tail") ?? "all");
      const since = c.req.query("since");
      const maxBytes = c.req.query("maxBytes");
      const sinceS = since === undefined ? undefined : parseValue("since", q.since, since);
      const stream = await service.logs(
        id(c.req.param("id")),
        caller,
        {
          follow: following,
          tail: tail === "all" ? undefined : Number(tail),
          since:
            sinceS === undefined
              ? undefined
              : /^\d+$/.test(sinceS)
                ? Number(sinceS)
                : Math.floor(Date.parse(sinceS) / 1000),
          // without follow an answer is bounded by default; a follow stream is back-pressured instead
          maxBytes:
            maxBytes === undefined
              ? following
                ? undefined
                : LOGS_DEFAULT_MAX_BYTES
              : Number(parseValue("maxBytes", q.maxBytes, maxBytes)),
        },
        c.req.raw.signal,
      );
      return new Response(stream, {
        headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
      });
    })
    .post("/:id/exec", json, async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const body = await parseJson(c, ExecSchema);
      return c.json(await service.exec(id(c.req.param("id")), caller, body));
    })
    .post("/:id/tasks", json, async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const containerId = id(c.req.param("id"));
      return c.json(
        signed(containerId, await o.tasks.run(containerId, caller, await parseJson(c, TaskSchema))),
      );
    })
    .post("/:id/futures/run", json, async (c) => {
      // a task's body and a task's signed answer, without an exec: the container's runtime runs it
      const caller = requireCaller(c, o.resolveCaller);
      const containerId = id(c.req.param("id"));
      const body = await parseJson(c, TaskSchema);
      return c.json(signed(containerId, await o.runtimes.run(containerId, caller, body)));
    })
    .put("/:id/files", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const path = parseValue("path", ContainerPathSchema, c.req.query("path"));
      const target = id(c.req.param("id"));
      // Spooled to a file (by the auth middleware, which checked its hash, or here) and streamed to
      // the engine: memory stays flat whatever the size; 413 above maxUploadBytes.
      const given = c.get("upload");
      const spooled = given ?? (await spoolBody(c.req.raw, o.spoolDir, o.maxUploadBytes));
      try {
        if (spooled.bytes < 512)
          throw new P2prcError("E_INVALID", "body: expected a tar archive", { field: "body" });
        await service.putFiles(target, caller, path, Bun.file(spooled.file).stream());
      } finally {
        if (!given) await spooled.remove();
      }
      return c.json({ uploaded: path, bytes: spooled.bytes });
    })
    .get("/:id/files", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const path = parseValue("path", ContainerPathSchema, c.req.query("path"));
      const stream = await service.getFiles(id(c.req.param("id")), caller, path);
      return new Response(stream, { headers: { "content-type": "application/x-tar" } });
    });
}

/** `GET /v1/futures/stats`: the node's future runtimes' counters (runs without an exec, starts, deaths). */
export function futureStatsRoutes(o: { runtimes: FutureRuntimes; resolveCaller: CallerResolver }) {
  return new Hono<AuthEnv>().get("/stats", (c) => {
    requireCaller(c, o.resolveCaller);
    return c.json(o.runtimes.stats());
  });
}

/** `GET /v1/tasks/stats`: how the node's batch tasks ran (through task agents or plain execs). */
export function taskStatsRoutes(o: { tasks: TaskService; resolveCaller: CallerResolver }) {
  return new Hono<AuthEnv>().get("/stats", (c) => {
    requireCaller(c, o.resolveCaller);
    return c.json(o.tasks.stats());
  });
}
