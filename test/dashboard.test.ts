// The dashboard in a real browser (Debian's chromium, driven by playwright-core) against three real nodes
// on 127.0.0.1 sharing the test engine: node A (the one whose dashboard is open, and the batch client),
// B and C. One set-up for the file; the tests run in order and build on each other. Each page is checked
// against what the CLI says (`--ls --json`, `--tc --json`, `--clusters --json`, the batch's results.json)
// and against the engine, and saved as a screenshot into Docs/dashboard/ (Docs/Dashboard.md shows them).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import type { Identity } from "../core/index.ts";
import { parsePrometheusText, sampleValue } from "./prometheus-text.ts";
import {
  nodeIdentity,
  openNetworkEnv,
  removeTestNodes,
  type SpawnedNode,
  signedFetch,
  spawnNode,
  waitFor,
} from "./support.ts";

const ROOT = resolve(import.meta.dir, "..");
const CHROMIUM = "/usr/bin/chromium";
const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const BUSYBOX = "p2prc-test/busybox";
const METRICS_TOKEN = "dashboard-test-scrape-token";
const root = mkdtempSync(join(tmpdir(), "p2prc-ui-"));
/**
 * Where the screenshots go: Docs/dashboard/ (Docs/Dashboard.md shows them) with P2PRC_SCREENSHOTS=docs,
 * else the test's own directory, so that `make test` leaves the working tree as it was. Each is taken and
 * checked either way.
 */
const SHOTS =
  process.env.P2PRC_SCREENSHOTS === "docs" ? join(ROOT, "Docs", "dashboard") : join(root, "shots");
const procs: Subprocess[] = [];

interface Node extends Pick<SpawnedNode, "url" | "stderr" | "proc"> {
  name: string;
  home: string;
  id: string;
  key: Identity;
}

async function startNode(name: string, bootstrap: string, env: Record<string, string> = {}): Promise<Node> {
  const home = join(root, name);
  const command = [process.execPath, join(ROOT, "cli/main.ts")];
  const extra = { P2PRC_LOG_LEVEL: "info", ...env }; // info: the start-up log's login link
  const n = await spawnNode({
    home,
    procs,
    name,
    command,
    env: { ...openNetworkEnv(home, name, bootstrap), ...extra },
  });
  return { name, home, url: n.url, id: n.nodeId, key: nodeIdentity(home), stderr: n.stderr, proc: n.proc };
}

/** Runs the CLI as node A's own operator (its home); resolves with its output. */
function spawnCli(args: string[]) {
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli/main.ts"), ...args], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: root,
      DOCKER_HOST,
      P2PRC: join(root, "ui-a"),
      P2PRC_TLS: "false",
      P2PRC_LOG_LEVEL: "warn",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  procs.push(proc);
  return (async () => {
    const [out, err] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    await proc.exited;
    return { code: proc.exitCode ?? -1, out, err };
  })();
}

async function cliJson<T>(args: string[]): Promise<T> {
  // --json goes before a container's command (`-- sh -c …`), which is never parsed as flags
  const dashes = args.indexOf("--");
  const r = await spawnCli(
    dashes < 0 ? [...args, "--json"] : [...args.slice(0, dashes), "--json", ...args.slice(dashes)],
  );
  if (r.code !== 0) throw new Error(`p2prc ${args.join(" ")}: exit ${r.code}: ${r.err}`);
  return JSON.parse(r.out) as T;
}

/** The test finds chromium, or installs Debian's package (as test/run.sh does); no browser is a failure. */
function ensureChromium(): void {
  if (existsSync(CHROMIUM)) return;
  if (process.getuid?.() === 0 && Bun.which("apt-get")) {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    Bun.spawnSync(["apt-get", "update", "-qq"], { env, stdout: "ignore", stderr: "ignore" });
    Bun.spawnSync(["apt-get", "install", "-y", "-qq", "chromium"], {
      env,
      stdout: "ignore",
      stderr: "ignore",
    });
  }
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no ${CHROMIUM}, and it could not be installed: apt-get install chromium (as root)`);
  }
}

const nodes: Node[] = [];
let a: Node;
let b: Node;
let c: Node;
let browser: BrowserContext;
let page: Page;
/** The two containers on A: one A's operator made with the CLI (tracked, prints a tick a second), one B's. */
let tickId = "";
let memberId = "";
const TICKS = "i=0; while :; do echo tick $i; i=$((i+1)); sleep 1; done";

beforeAll(async () => {
  ensureChromium();
  mkdirSync(SHOTS, { recursive: true });
  a = await startNode("ui-a", "");
  [b, c] = await Promise.all([
    startNode("ui-b", `127.0.0.1:${new URL(a.url).port}`),
    startNode("ui-c", `127.0.0.1:${new URL(a.url).port}`, { P2PRC_METRICS_TOKEN: METRICS_TOKEN }),
  ]);
  nodes.push(a, b, c);
  await waitFor(
    "A knows B and C",
    async () => {
      const rows = await cliJson<{ id: string; latencyMs: number | null }[]>(["--ls"]);
      return nodes.every((n) => rows.some((r) => r.id === n.id && (n === a || r.latencyMs !== null)))
        ? true
        : undefined;
    },
    20_000,
    300,
  );
  const hosted = await spawnCli(["--host-cluster", "ui-lab", "--users", `${b.id}=bob`]);
  if (hosted.code !== 0) throw new Error(`--host-cluster: ${hosted.err}`);
  const touched = await cliJson<{ id: string }>([
    "--touch",
    a.url.replace("http://", ""),
    "--image",
    BUSYBOX,
    "--cn",
    `ticker-${process.pid}`,
    "--",
    "sh",
    "-c",
    TICKS,
  ]);
  tickId = touched.id;
  const res = await signedFetch(b.key, `${a.url}/v1/containers`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ image: BUSYBOX, command: ["sleep", "600"] }),
  });
  if (res.status !== 201) throw new Error(`B's container: ${res.status} ${await res.text()}`);
  memberId = ((await res.json()) as { id: string }).id;
  browser = await chromium.launchPersistentContext(mkdtempSync(join(root, "chromium-")), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  page = await browser.newPage();
  page.on("dialog", (d) => void d.accept());
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await removeTestNodes(docker, procs, [a?.id, b?.id, c?.id]);
  rmSync(root, { recursive: true, force: true });
});

/** A new login link from `p2prc ui`, as the operator would get it. */
async function loginLink(): Promise<string> {
  const r = await spawnCli(["ui"]);
  if (r.code !== 0) throw new Error(`p2prc ui: ${r.err}`);
  return r.out.trim();
}

/** A full-page screenshot, checked to be a real picture of some size. */
const shot = async (name: string) => {
  const png = await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  expect(png.subarray(1, 4).toString()).toBe("PNG");
  expect(png.length).toBeGreaterThan(5_000);
};
const text = async (selector: string) => ((await page.textContent(selector)) ?? "").trim();

describe("the dashboard, in chromium, against three nodes", () => {
  test("without the token every page and API answer is refused; a reused token and a cross-site POST too", async () => {
    const paths = [
      "/ui",
      "/ui/nodes",
      "/ui/containers",
      `/ui/containers/${tickId}`,
      "/ui/batches",
      "/ui/clusters",
    ];
    paths.push("/ui/events/overview", `/ui/containers/${tickId}/logs`, "/ui/assets/app.js");
    for (const p of paths)
      expect({ p, status: (await fetch(`${a.url}${p}`)).status }).toEqual({ p, status: 401 });
    const remove = await fetch(`${a.url}/ui/containers/${tickId}/remove`, { method: "POST" });
    expect(remove.status).toBe(401);
    // a signed API is no way in either: the dashboard's routes take only its session
    expect((await signedFetch(a.key, `${a.url}/ui/containers`)).status).toBe(401);
    // not even the node's own browser page, logged in, from elsewhere: a cross-site POST is refused
    const link = await loginLink();
    const login = await fetch(link, { redirect: "manual" });
    expect(login.status).toBe(303);
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] as string;
    expect((await fetch(`${a.url}/ui/nodes`, { headers: { cookie } })).status).toBe(200);
    expect((await fetch(link, { redirect: "manual" })).status).toBe(401); // reused
    const page = await (await fetch(`${a.url}/ui/containers`, { headers: { cookie } })).text();
    const csrf = /name="_csrf" value="([0-9a-f]+)"/.exec(page)?.[1] ?? "";
    const crossSite = await fetch(`${a.url}/ui/containers/${tickId}/remove`, {
      method: "POST",
      redirect: "manual",
      headers: { cookie, origin: "http://evil.example", "content-type": "application/x-www-form-urlencoded" },
      body: `_csrf=${csrf}`,
    });
    expect(crossSite.status).toBe(403);
    expect((await docker.getContainer(tickId).inspect()).State.Running).toBe(true);
  });

  test("log in through the one-time URL; the overview shows this node, its peers, containers and cluster", async () => {
    await page.goto(await loginLink());
    expect(new URL(page.url()).pathname).toBe("/ui");
    const cookies = await browser.cookies(`${a.url}/ui`);
    expect(cookies.find((k) => k.name.startsWith("p2prc_ui_"))).toMatchObject({
      httpOnly: true,
      sameSite: "Strict",
    });
    await page.waitForSelector("#live.on");
    expect(await text("[data-field=id]")).toBe(a.id);
    expect(await text("[data-field=name]")).toBe("ui-a");
    expect(await text("[data-field=address]")).toBe(a.url);
    expect(await text("[data-field=reach]")).toBe("direct");
    expect(await page.getAttribute("[data-field=engine]", "class")).toBe("ok");
    expect(await text("[data-count=peers]")).toBe("2");
    expect(await text("[data-count=containers]")).toBe("2");
    expect(await text("[data-count=clusters]")).toBe("1");
    expect(await text("#clusters")).toContain("ui-lab");
    await shot("overview");
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(SHOTS, "overview-phone.png") });
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  test("/metrics parses and matches the node: two containers, two peers alive, the version", async () => {
    const f = parsePrometheusText(await (await fetch(`${a.url}/metrics`)).text());
    const running = await docker.listContainers({ filters: { label: [`p2prc.node=${a.id}`] } });
    expect(running).toHaveLength(2);
    expect(sampleValue(f, "p2prc_containers", { state: "running" })).toBe(2);
    expect(sampleValue(f, "p2prc_peers", { state: "alive" })).toBe(2);
    expect(sampleValue(f, "p2prc_build_info")).toBe(1);
    expect(f.get("p2prc_build_info")?.samples[0]?.labels.version).toBe(
      (await spawnCli(["--version"])).out.trim(),
    );
    expect(sampleValue(f, "p2prc_gossip_rounds_total")).toBeGreaterThan(0);
    expect(sampleValue(f, "p2prc_gossip_bytes_total", { direction: "received" })).toBeGreaterThan(0);
    expect(sampleValue(f, "p2prc_container_start_duration_seconds_count")).toBe(2);
    expect(sampleValue(f, "p2prc_http_requests_total", { route: "/ui", status: "200" })).toBeGreaterThan(0);
    expect(sampleValue(f, "p2prc_http_requests_total", { route: "/v1/containers", status: "201" })).toBe(2);
    // no container ids as labels
    for (const fam of f.values())
      for (const s of fam.samples)
        for (const v of Object.values(s.labels)) expect(v).not.toContain(tickId.slice(0, 12));
    // node C wants its scrape token
    expect((await fetch(`${c.url}/metrics`)).status).toBe(401);
    const scraped = await fetch(`${c.url}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    expect(scraped.status).toBe(200);
    expect(
      sampleValue(parsePrometheusText(await scraped.text()), "p2prc_containers", { state: "running" }),
    ).toBe(0);
  });

  test("nodes: the IP table as --ls --json has it, and the picture has every node", async () => {
    await page.goto(`${a.url}/ui/nodes`);
    type Row = { id: string; name: string; address: string | null; port: number | null; reach: string };
    const ls = await cliJson<Row[]>(["--ls"]);
    expect(ls.map((n) => n.id).sort()).toEqual([a.id, b.id, c.id].sort());
    for (const n of ls) {
      const row = `#table tr[data-node="${n.id}"]`;
      expect(await text(`${row} td:first-child`)).toContain(n.name);
      expect(await text(`${row} td:nth-child(3)`)).toBe(`${n.address}:${n.port}`);
      expect(await text(`${row} td:nth-child(10)`)).toBe(n.reach);
      // --ls lists the live nodes
      expect(await text(`${row} [data-field=state]`)).toBe("alive");
      expect(Number(await text(`${row} [data-field=cpus]`))).toBeGreaterThan(0);
      expect(await page.locator(`#graph g[data-node="${n.id}"]`).count()).toBe(1);
    }
    expect(await page.locator("#graph line").count()).toBe(2);
    await shot("nodes");
  });

  test("batches: the grid advances without a reload, and ends as results.json says", async () => {
    const job = join(root, "job.json");
    writeFileSync(
      job,
      JSON.stringify({
        image: BUSYBOX,
        command: ["sh", "-c", "sleep 2; echo task $I"],
        tasks: 6,
        maxPerNode: 1,
      }),
    );
    const out = join(root, "out");
    const run = spawnCli(["batch", job, "--out", out, "--nodes", `${b.id},${c.id}`, "--json"]);
    await page.goto(`${a.url}/ui/batches`);
    // browser-side code as strings: this file is type-checked without the DOM's types
    await page.evaluate("window.marker = 1");
    const done = async () => Number((await page.textContent("[data-batch] [data-count=done]")) ?? -1);
    await page.waitForSelector("[data-batch] .grid i", { timeout: 30_000 });
    await page.waitForSelector("[data-batch] .grid i.running", { timeout: 30_000 });
    const before = await done();
    expect(before).toBeLessThan(6);
    await shot("batches-running");
    await waitFor("the grid advances", async () => ((await done()) > before ? true : undefined), 40_000, 250);
    await waitFor("the batch ends", async () => ((await done()) === 6 ? true : undefined), 60_000, 250);
    // the same document all along: no reload
    expect(await page.evaluate("window.marker")).toBe(1);
    const r = await run;
    expect(r.code).toBe(0);
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as {
      index: number;
      node: string;
      state: string;
    }[];
    expect(results).toHaveLength(6);
    for (const t of results) {
      expect(await page.getAttribute(`[data-batch] .grid i[data-task="${t.index}"]`, "data-state")).toBe(
        t.state,
      );
      const title = (await page.getAttribute(`[data-batch] .grid i[data-task="${t.index}"]`, "title")) ?? "";
      expect(title).toContain(t.node === b.id || t.node === "ui-b" ? "ui-b" : "ui-c");
    }
    const perNode = await page.locator("[data-batch] tr[data-batch-node]").count();
    expect(perNode).toBe(new Set(results.map((t) => t.node)).size);
  }, 120_000);

  test("batches: the Mandelbrot demo's image is shown once its batch is done", async () => {
    const png = join(root, "mandelbrot.png");
    const demo = spawnCli([
      "demo",
      "mandelbrot",
      "--tiles",
      "4",
      "--size",
      "96x64",
      "--image",
      BUSYBOX,
      "--out",
      png,
      "--nodes",
      `${b.id},${c.id}`,
    ]);
    await page.goto(`${a.url}/ui/batches`);
    const r = await demo;
    expect(r.code).toBe(0);
    await page.waitForSelector("img[data-image]", { timeout: 15_000 });
    const src = (await page.getAttribute("img[data-image]", "src")) ?? "";
    const served = await page.evaluate(async (u) => {
      const res = await fetch(u);
      return { status: res.status, bytes: (await res.arrayBuffer()).byteLength };
    }, src);
    expect(served).toEqual({ status: 200, bytes: readFileSync(png).length });
    expect(await page.evaluate('document.querySelector("img[data-image]").naturalWidth')).toBe(96);
    await shot("batches");
  }, 60_000);

  test("containers: every container on the node with its owner, the tracked one as --tc has it", async () => {
    await page.goto(`${a.url}/ui/containers`);
    const tracked = await cliJson<{ id: string; name: string }[]>(["--tc"]);
    expect(tracked.map((t) => t.id)).toContain(tickId);
    expect(await text(`tr[data-container="${tickId}"] td:first-child`)).toContain("ticker");
    expect(await text(`tr[data-container="${tickId}"] [data-field=owner]`)).toBe("this node");
    expect(await text(`tr[data-container="${memberId}"] [data-field=owner]`)).toBe("ui-b");
    expect(await text(`tr[data-container="${tickId}"] [data-field=state]`)).toBe("running");
    expect(await page.locator("tr[data-container]").count()).toBe(2);
    await shot("containers");
  });

  test("a container's page streams its logs live, renews its lease, and removes it from the engine", async () => {
    const logs = async () =>
      (await docker.getContainer(tickId).logs({ stdout: true, stderr: true, tail: 1 })).toString();
    const last = Number(/tick (\d+)/.exec(await logs())?.[1] ?? 0);
    await page.goto(`${a.url}/ui/containers/${tickId}`);
    // a line the container prints after the page opened
    const later = `tick ${last + 3}`;
    // (polled from here: the page's CSP forbids the eval that waitForFunction would use)
    await waitFor(
      "the log line",
      async () => ((await text("#logs")).includes(later) ? true : undefined),
      20_000,
      200,
    );
    await shot("container");
    await page.fill("#lease input[name=ttl]", "7200");
    await Promise.all([page.waitForURL(`**/ui/containers/${tickId}`), page.click("#lease button")]);
    const view = (await (await signedFetch(a.key, `${a.url}/v1/containers/${tickId}`)).json()) as {
      expiresAt: string;
    };
    const left = Date.parse(view.expiresAt) - Date.now();
    expect(left).toBeGreaterThan(7100_000);
    expect(left).toBeLessThanOrEqual(7200_000);
    expect(await text("[data-field=lease]")).toMatch(/^(1h 59m|2h 0m)/);
    await Promise.all([page.waitForURL("**/ui/containers"), page.click("#remove button")]);
    const gone = () =>
      docker
        .getContainer(tickId)
        .inspect()
        .then(
          () => false,
          (e: { statusCode?: number }) => e.statusCode === 404,
        );
    await waitFor("the engine no longer has it", async () => ((await gone()) ? true : undefined), 10_000);
    expect(await page.locator(`tr[data-container="${tickId}"]`).count()).toBe(0);
  }, 60_000);

  test("clusters: members and roles; the host adds and removes a member here", async () => {
    await page.goto(`${a.url}/ui/clusters`);
    const section = '[data-cluster="ui-lab"]';
    expect(await text(`${section} tr[data-member="${a.id}"]`)).toContain("host");
    expect(await text(`${section} tr[data-member="${b.id}"] [data-field=role]`)).toBe("member");
    await page.fill("#add-member input[name=id]", c.id);
    await page.fill("#add-member input[name=label]", "carol");
    await page.selectOption("#add-member select[name=role]", "admin");
    await Promise.all([page.waitForURL("**/ui/clusters"), page.click("#add-member button")]);
    expect(await text(`${section} tr[data-member="${c.id}"] [data-field=role]`)).toBe("admin");
    type Cl = { name: string; members: { id: string; role: string }[] }[];
    const withC = (await cliJson<Cl>(["--clusters"])).find((x) => x.name === "ui-lab");
    expect(withC?.members.find((m) => m.id === c.id)?.role).toBe("admin");
    await shot("clusters");
    await Promise.all([
      page.waitForURL("**/ui/clusters"),
      page.click(`${section} tr[data-member="${c.id}"] button`),
    ]);
    expect(await page.locator(`${section} tr[data-member="${c.id}"]`).count()).toBe(0);
    const withoutC = (await cliJson<Cl>(["--clusters"])).find((x) => x.name === "ui-lab");
    expect(withoutC?.members.map((m) => m.id)).not.toContain(c.id);
  });

  test("the server's start-up log carries a login link of its own", () => {
    expect(a.stderr.join("")).toMatch(/dashboard: http:\/\/127\.0\.0\.1:\d+\/ui\/login\?token=[0-9a-f]{64}/);
  });

  test("an open page does not hold the node's graceful stop", async () => {
    await page.goto(`${a.url}/ui/batches`);
    await page.waitForSelector("#live.on");
    const began = Date.now();
    a.proc.kill("SIGTERM");
    expect(await a.proc.exited).toBe(0);
    // the server waits up to 10 s for requests in flight; the page's event stream is ended at once
    expect(Date.now() - began).toBeLessThan(6000);
    await page.waitForSelector("#live:not(.on)");
  });
});
