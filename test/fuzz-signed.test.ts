// A fuzzer behind authentication: 10,000 requests, every one correctly signed by a member, over every
// route of a real node process: mutated valid bodies (wrong types, missing and unknown fields, NUL bytes,
// huge numbers, deep nesting, truncation), random query strings, ids, headers, body sizes and chunked
// bodies. No answer may be a 5xx or a dropped connection, none may hang, and at the end the node must
// still serve and its RSS stay bounded. Seeded: a failure prints its inputs and replays the same way.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import { createTar } from "nanotar";
import { generateIdentity, type Identity, signRequest } from "../core/index.ts";
import { nodeIdentity, removeTestNodes, rssBytes, seededRandom, signedFetch, spawnNode } from "./support.ts";

const TOTAL = 10_000;
const PARALLEL = 24;
/** RSS bound at the end, MiB. Measured 63 MiB before, 97-129 MiB after (bun cli/main.ts, loaded machine). */
const RSS_BOUND_MB = 300;
const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const BUSYBOX = "p2prc-test/busybox";
const root = mkdtempSync(join(tmpdir(), "p2prc-fuzz-signed-"));
const home = join(root, "node");
// several members: the per-member rate limit (6,000 a minute) would otherwise answer 429 to the rest
const members = Array.from({ length: 4 }, () => generateIdentity());
const procs: Subprocess[] = [];
let proc: Subprocess;
let url = "";
let nodeId = "";
let real = ""; // a running container of members[0]

// FUZZ_SEED=<n> replays another run (the default is fixed so CI is reproducible)
const { rand, pick } = seededRandom(Number(process.env.FUZZ_SEED ?? 0x51f15eed));
/** encodeURIComponent that also takes a lone surrogate (sent as %EF%BF%BD). */
const enc = (s: string) => encodeURIComponent(s.toWellFormed());
const chance = (p: number) => rand() < p;

/** CPU seconds (user + system) a process has used. */
const cpuSeconds = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(f[11]) + Number(f[12])) / 100;
};
const rssMb = (pid: number) => rssBytes(pid) / (1024 * 1024);

beforeAll(async () => {
  ({ proc, url, nodeId } = await spawnNode({
    home,
    procs,
    env: {
      P2PRC_TRUSTED: members.map((m) => m.nodeId).join(","),
      // only the local test image: a mutated image name must never make the engine pull from anywhere
      P2PRC_DEFAULT_IMAGE: BUSYBOX,
      P2PRC_ALLOWED_IMAGES: BUSYBOX,
      P2PRC_MEMBER_MAX_CONTAINERS: "2",
      P2PRC_MEMBER_MAX_MEMORY_MB: "256",
      P2PRC_DEFAULT_MEMORY_MB: "32",
      P2PRC_DEFAULT_CPUS: "0.2",
      P2PRC_MAX_TTL_SECONDS: "120",
    },
  }));
  const created = await signedFetch(members[0] as Identity, `${url}/v1/containers`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ command: ["sleep", "300"], name: "fuzz-real" }),
  });
  expect(created.status).toBe(201);
  real = ((await created.json()) as { id: string }).id;
}, 60_000);

afterAll(async () => {
  await removeTestNodes(docker, procs, [nodeId]);
  rmSync(root, { recursive: true, force: true });
});

// ---- values and mutations ----

const STRINGS = [
  "",
  "a",
  "\0",
  "a\0b",
  "..",
  "../../etc/passwd",
  "/",
  "/etc/passwd",
  "%00",
  "💥",
  "\u202e",
  "\ud800",
  "x".repeat(70_000),
  "127.0.0.1:1/probe",
  "a/../../b",
  "localhost/../x",
  "UPPER",
  "-rf",
  " ",
  "\n",
  '{"a":1}',
  "p2prc-test/busybox",
];
const NUMBERS = [0, -1, 1, 0.5, 1e308, -1e308, 2 ** 53 + 1, 4194305, 65536, 1e-9, 31536001];

function randomValue(depth = 0): unknown {
  switch (Math.floor(rand() * 9)) {
    case 0:
      return pick(STRINGS);
    case 1:
      return pick(NUMBERS);
    case 2:
      return chance(0.5);
    case 3:
      return null;
    case 4:
      return depth > 2 ? [] : Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(depth + 1));
    case 5:
      return depth > 2
        ? {}
        : { [pick(["a", "A_1", "", "__proto__", "constructor"])]: randomValue(depth + 1) };
    case 6: {
      // deep nesting
      let v: unknown = 1;
      for (let i = 0; i < 100 + Math.floor(rand() * 1000); i++) v = chance(0.5) ? [v] : { a: v };
      return v;
    }
    case 7:
      return Array.from({ length: 300 }, () => pick(STRINGS.slice(0, 6)));
    default:
      return Math.floor(rand() * 1e6).toString(36);
  }
}

/** Replaces, drops or adds one field somewhere in `v` (a copy). */
function mutate(v: unknown): unknown {
  if (Array.isArray(v)) {
    const a = [...v];
    if (a.length && chance(0.6))
      a[Math.floor(rand() * a.length)] = chance(0.5) ? mutate(a[0]) : randomValue();
    else if (chance(0.5)) a.push(randomValue());
    else a.length = 0;
    return a;
  }
  if (v && typeof v === "object") {
    const o: Record<string, unknown> = { ...(v as Record<string, unknown>) };
    const keys = Object.keys(o);
    const r = rand();
    if (keys.length && r < 0.55) {
      const k = pick(keys);
      o[k] = chance(0.4) ? mutate(o[k]) : randomValue();
    } else if (keys.length && r < 0.75) delete o[pick(keys)];
    else o[pick(["fuzz", "Image", "privileged", "HostConfig", "__proto__"])] = randomValue();
    return o;
  }
  return randomValue();
}

// ---- routes ----

const CREATE = {
  image: BUSYBOX,
  command: ["sleep", "5"],
  env: { A: "b" },
  memoryMb: 16,
  cpus: 0.1,
  ttlSeconds: 20,
  ports: 0,
  publish: [],
  gpu: false,
  name: "fz",
};
const EXEC = { command: ["echo", "hi"], env: { A: "1" }, workingDir: "/", timeoutSeconds: 5 };
const fakeRecord = () => ({
  record: { id: members[1]?.nodeId, addresses: ["127.0.0.1:1"], seq: 1, issuedAt: Date.now() },
  signature: "A".repeat(86),
});
const EXCHANGE = { from: fakeRecord(), records: [fakeRecord()], deaths: [], hash: "00", want: [] };
const CLUSTER = {
  cluster: {
    name: "fz",
    host: "",
    members: [{ id: "", label: "", role: "member" }],
    bootstrap: [],
    version: 1,
    issuedAt: 1,
  },
  signature: "x",
};

interface Route {
  /** How often it is picked, relative (routes that reach the engine are rarer: it is slow and shared). */
  weight?: number;
  method: string;
  path: (id: string) => string;
  body?: () => unknown;
  query?: () => string;
  tar?: boolean;
}

const PATH_VALUES = [
  "/tmp",
  "/",
  "/etc/passwd",
  "/tmp/x",
  "",
  "relative",
  "/a/../b",
  "/a%00b",
  "/proc/self/environ",
  `/${"d/".repeat(500)}`,
];
const q = (k: string, vs: string[]) =>
  chance(0.85) ? `${k}=${enc(pick(vs))}` : `${k}=${enc(String(randomValue()).slice(0, 200))}`;

const ROUTES: Route[] = [
  { method: "GET", path: () => "/v1/health" },
  { method: "GET", path: () => "/v1/identity" },
  { weight: 0.15, method: "GET", path: () => "/v1/specs" },
  { weight: 0.15, method: "GET", path: () => "/v1/images" },
  { weight: 0.15, method: "GET", path: () => "/server_info" },
  { weight: 0.15, method: "GET", path: () => "/ShowImages" },
  { method: "GET", path: () => "/v1/containers", query: () => q("all", ["1", "true", "x"]) },
  { method: "POST", path: () => "/v1/containers", body: () => CREATE },
  { method: "GET", path: (id) => `/v1/containers/${id}` },
  { method: "DELETE", path: (id) => `/v1/containers/${id}` },
  {
    method: "GET",
    path: (id) => `/v1/containers/${id}/logs`,
    query: () =>
      [
        q("tail", ["10", "0", "-1", "all", "abc", "1e99"]),
        q("since", ["0", "-5", "abc", "99999999999"]),
        q("timestamps", ["true", "1", "no"]),
        q("follow", ["false", "0", "maybe", "true"]),
      ]
        .filter(() => chance(0.6))
        .join("&"),
  },
  { method: "POST", path: (id) => `/v1/containers/${id}/exec`, body: () => EXEC },
  {
    method: "PUT",
    path: (id) => `/v1/containers/${id}/files`,
    query: () => q("path", PATH_VALUES),
    tar: true,
  },
  { method: "GET", path: (id) => `/v1/containers/${id}/files`, query: () => q("path", PATH_VALUES) },
  { method: "POST", path: () => "/v1/p2p/exchange", body: () => EXCHANGE },
  { method: "POST", path: () => "/v1/p2p/sync", body: () => EXCHANGE },
  { method: "POST", path: () => "/v1/p2p/cluster", body: () => CLUSTER },
  { method: "GET", path: () => "/v1/p2p/clusters" },
  { method: "GET", path: () => "/v1/p2p/table" },
  { method: "GET", path: () => "/v1/p2p/stats" },
  { method: "GET", path: () => "/v1/plugins" },
  {
    method: "GET",
    path: () => `/v1/plugins/${enc(pick(["web-hello", "..", "../../etc/passwd", ".incoming-x", "a/b", ""]))}`,
  },
];

const TOTAL_WEIGHT = ROUTES.reduce((a, r) => a + (r.weight ?? 1), 0);
function pickRoute(): Route {
  let x = rand() * TOTAL_WEIGHT;
  for (const r of ROUTES) {
    x -= r.weight ?? 1;
    if (x < 0) return r;
  }
  return ROUTES[0] as Route;
}

/** Mostly ids that do not exist (404 before the engine); the real container 1 in 6. */
function containerId(): string {
  const r = rand();
  if (r < 0.12) return real;
  if (r < 0.15) return real.slice(0, 12);
  if (r < 0.17) return "fuzz-real";
  if (r < 0.6)
    return Math.floor(rand() * 2 ** 48)
      .toString(16)
      .padStart(64, "0");
  return enc(pick(STRINGS).slice(0, 300)) || "x";
}

function tarBody(): Uint8Array {
  const valid = createTar([
    {
      name: pick(["a.txt", "../escape", "/abs", "d/", "x".repeat(200), "ok/b.txt"]),
      data: new TextEncoder().encode("hello"),
      attrs: { mode: pick(["644", "4755", "777"]), uid: 0, gid: 0 },
    },
  ]);
  if (chance(0.5)) return valid;
  const bad = valid.slice(0, chance(0.3) ? Math.floor(rand() * valid.length) : valid.length);
  for (let i = 0; i < 1 + Math.floor(rand() * 8); i++)
    bad[Math.floor(rand() * bad.length)] = Math.floor(rand() * 256);
  return bad;
}

interface Req {
  method: string;
  url: string;
  body?: string | Uint8Array;
  headers: Record<string, string>;
  chunked: boolean;
  who: Identity;
  route: Route;
}

function request(i: number): Req {
  const route = pickRoute();
  const method = chance(0.9) ? route.method : pick(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
  let path = route.path(containerId());
  if (chance(0.05)) path += pick(["/", "//", "/..", "/%2e%2e", "?", "#x", `/${"z".repeat(3000)}`]);
  const query = route.query?.() ?? (chance(0.1) ? q("x", ["1", "%", "\0"]) : "");
  const full = `${url}${path}${query && !path.includes("?") ? `?${query}` : ""}`;
  let body: string | Uint8Array | undefined;
  if (method !== "GET" && method !== "OPTIONS") {
    const r = rand();
    if (route.tar) body = chance(0.9) ? tarBody() : JSON.stringify(randomValue());
    else if (route.body && r < 0.15) body = JSON.stringify(route.body());
    else if (route.body && r < 0.8) {
      let v = route.body();
      for (let m = 0; m < 1 + Math.floor(rand() * 3); m++) v = mutate(v);
      body = JSON.stringify(v) ?? "";
      if (chance(0.1)) body = body.slice(0, Math.floor(rand() * body.length));
    } else if (r < 0.9) body = JSON.stringify(randomValue());
    else if (r < 0.995)
      body = new Uint8Array(
        Array.from({ length: Math.floor(rand() * 4096) }, () => Math.floor(rand() * 256)),
      );
    else body = pick(["[", " ", "x", "{"]).repeat(1 + Math.floor(rand() * 2_000_000)); // up to 2 MB
  }
  const headers: Record<string, string> = {};
  if (chance(0.9)) headers["content-type"] = route.tar ? "application/x-tar" : "application/json";
  else if (chance(0.5))
    headers["content-type"] = pick([
      "text/plain",
      "application/json; charset=latin1",
      "multipart/form-data",
      "x/y",
    ]);
  if (chance(0.03)) headers["x-fuzz"] = "v".repeat(pick([1, 1000, 7000]));
  if (chance(0.02)) headers["content-encoding"] = pick(["gzip", "br", "identity"]);
  if (chance(0.02)) headers.accept = pick(["text/event-stream", "*/*", "application/x-tar"]);
  const who = members[i % members.length] as Identity;
  Object.assign(headers, signRequest(who, method, full, body ?? ""));
  return { method, url: full, body, headers, chunked: body !== undefined && chance(0.03), who, route };
}

test(`${TOTAL} member-signed fuzzed requests over every route: no 5xx, no hang, node alive, RSS bounded`, async () => {
  const rssStart = rssMb(proc.pid);
  const cpuStart = [cpuSeconds(proc.pid), cpuSeconds(process.pid)];
  const statuses = new Map<number, number>();
  const bad: string[] = [];
  const took = new Map<string, number>(); // ms spent per route, to keep the run short
  const t0 = performance.now();
  for (let i = 0; i < TOTAL; i += PARALLEL) {
    if (process.env.FUZZ_PROGRESS && i % 1000 < PARALLEL)
      console.log(
        `${i} ${((performance.now() - t0) / 1000).toFixed(1)} s ${JSON.stringify(Object.fromEntries(statuses))}`,
        bad,
      );
    const batch = Array.from({ length: Math.min(PARALLEL, TOTAL - i) }, (_, k) => request(i + k));
    await Promise.all(
      batch.map(async (r) => {
        let status: number;
        const started = performance.now();
        const body =
          r.chunked && r.body !== undefined
            ? new Blob([r.body]).stream() // sent with Transfer-Encoding: chunked
            : r.body;
        try {
          const res = await fetch(r.url, {
            method: r.method,
            headers: r.headers,
            body,
            signal: AbortSignal.timeout(30_000), // generous: a loaded CI machine is slow, a hang is forever
          });
          status = res.status;
          // a followed log never ends: its status is what counts, not reading it to the end
          if (r.url.includes("follow=true")) await res.body?.cancel();
          else await res.arrayBuffer();
        } catch (err) {
          status = (err as Error).name === "TimeoutError" ? -1 : 0; // hang / dropped connection
        }
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        const key = `${r.route.method} ${r.route.path(":id")}`;
        took.set(key, (took.get(key) ?? 0) + performance.now() - started);
        if (status >= 500 || status <= 0) {
          const shown =
            typeof r.body === "string" ? r.body.slice(0, 160) : r.body ? `<${r.body.length} bytes>` : "";
          bad.push(
            `${status} ${r.method} ${r.url.slice(url.length, url.length + 160)}${r.chunked ? " (chunked)" : ""} ${shown}`,
          );
        }
      }),
    );
  }
  const seconds = (performance.now() - t0) / 1000;
  const rssEnd = rssMb(proc.pid);
  const cpu = [cpuSeconds(proc.pid), cpuSeconds(process.pid)].map((c, k) =>
    (c - (cpuStart[k] ?? 0)).toFixed(1),
  );
  console.log(
    `fuzz-signed: ${TOTAL} requests in ${seconds.toFixed(1)} s, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}, RSS ${rssStart.toFixed(0)} → ${rssEnd.toFixed(0)} MiB, CPU s node ${cpu[0]} / fuzzer ${cpu[1]}`,
  );
  if (process.env.FUZZ_PROGRESS)
    console.log([...took].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${Math.round(v / 1000)} s`));
  if (bad.length)
    console.log(`fuzz-signed: ${bad.length} bad answers, first:\n  ${bad.slice(0, 25).join("\n  ")}`);
  expect(bad.slice(0, 10)).toEqual([]);
  // they were all signed by members: authentication refused none (403 is a right, e.g. cluster admin)
  expect(statuses.get(401) ?? 0).toBe(0);
  // still alive and serving, the real container still listed to its owner
  expect(proc.exitCode).toBeNull();
  expect((await fetch(`${url}/v1/health`)).status).toBe(200);
  expect((await signedFetch(nodeIdentity(home), `${url}/v1/specs`)).status).toBe(200);
  expect(rssEnd).toBeLessThan(RSS_BOUND_MB);
}, 300_000); // ~15 CPU-seconds in all; the wall time is long only on a machine busy with other work
