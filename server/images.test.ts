// Image references: Docker's grammar, and registries a member may make the engine contact. The last
// block runs the real app over the real engine with a TCP listener standing in for a private registry.
import { afterAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:net";
import { hostname, tmpdir } from "node:os";
import { type Config, defaultConfig } from "../config/index.ts";
import { memoryLogger, systemClock } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import {
  checkImage,
  type HostResolver,
  type ImagePolicy,
  nonPublicHost,
  parseImageRef,
  parseIPv4Loose,
} from "./images.ts";
import { ContainerService, createDockerEngine, createServerApp } from "./index.ts";

describe("parseImageRef (Docker's grammar)", () => {
  test.each([
    ["busybox", { path: "busybox" }],
    ["debian:bookworm-slim", { path: "debian", tag: "bookworm-slim" }],
    ["p2prc-test/busybox", { path: "p2prc-test/busybox" }],
    [
      "registry.example.com:5000/team/app:1.2",
      { domain: "registry.example.com:5000", host: "registry.example.com", path: "team/app", tag: "1.2" },
    ],
    ["localhost/x", { domain: "localhost", host: "localhost", path: "x" }],
    ["[::1]:5000/x", { domain: "[::1]:5000", host: "::1", path: "x" }],
    ["a__b/c-d--e.f", { path: "a__b/c-d--e.f" }],
    [`x@sha256:${"a".repeat(64)}`, { path: "x", digest: `sha256:${"a".repeat(64)}` }],
  ])("%s parses", (ref, want) => {
    expect(parseImageRef(ref)).toMatchObject(want);
  });

  test.each([
    "a/../../b",
    "localhost/../x",
    "../x",
    "a/./b",
    "a//b",
    "a/",
    "/a",
    ".a",
    "a.",
    "a-",
    "A/b/C",
    "a:",
    "a:-x",
    "a:.x",
    "a@sha256:short",
    "a@",
    "local host/x",
    "host:99999/x",
    "[zz::1]/x",
    "",
    "a".repeat(256),
  ])("%s is refused", (ref) => {
    expect(typeof parseImageRef(ref)).toBe("string");
  });
});

describe("nonPublicHost", () => {
  test.each([
    "127.0.0.1",
    "127.1",
    "0x7f000001",
    "2130706433",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "0",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "999.1.1.1",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:a9fe:a9fe",
    "::127.0.0.1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "64:ff9b::a00:1",
    "2002:7f00:1::",
    "localhost",
    "LOCALHOST",
    "foo.localhost",
    "registry",
    "registry.local",
    "box.internal",
  ])("%s is not public", (host) => {
    expect(nonPublicHost(host)).toBeString();
  });

  test.each([
    "registry.example.com",
    "ghcr.io",
    "8.8.8.8",
    "172.32.0.1",
    "2606:4700::1111",
    "::ffff:8.8.8.8",
    "1.2.3.example",
  ])("%s is public", (host) => {
    expect(nonPublicHost(host)).toBeUndefined();
  });

  test("inet_aton's forms all read as 127.0.0.1", () => {
    for (const form of ["127.0.0.1", "127.1", "127.0.1", "0x7f000001", "2130706433", "0177.0.0.01"]) {
      expect(parseIPv4Loose(form)).toBe(0x7f000001);
    }
    expect(parseIPv4Loose("256.0.0.1")).toBeUndefined();
    expect(parseIPv4Loose("1.2.3.4.5")).toBeUndefined();
    expect(parseIPv4Loose("example")).toBeUndefined();
  });
});

describe("checkImage", () => {
  const open: ImagePolicy = { allowedImages: [], privateRegistries: [] };
  const status = (image: string, policy = open) => {
    try {
      checkImage(image, policy);
      return "ok";
    } catch (err) {
      return `${(err as { code: string }).code} ${(err as { field?: string }).field}`;
    }
  };

  test("private registries are refused, public ones and Docker Hub are not", () => {
    expect(status("127.0.0.1:5000/probe")).toBe("E_FORBIDDEN image");
    expect(status("[::1]:5000/probe")).toBe("E_FORBIDDEN image");
    expect(status("localhost/probe")).toBe("E_FORBIDDEN image");
    expect(status("2130706433:80/probe")).toBe("E_FORBIDDEN image");
    expect(status("registry:5000/probe")).toBe("E_FORBIDDEN image");
    expect(status("ghcr.io/team/app:1")).toBe("ok");
    expect(status("debian:bookworm-slim")).toBe("ok");
    expect(status("a/../../b")).toBe("E_INVALID image");
  });

  test("the operator allows a private registry by host or host:port, or by listing the image", () => {
    expect(status("127.0.0.1:5000/app", { allowedImages: [], privateRegistries: ["127.0.0.1:5000"] })).toBe(
      "ok",
    );
    expect(status("127.0.0.1:5001/app", { allowedImages: [], privateRegistries: ["127.0.0.1:5000"] })).toBe(
      "E_FORBIDDEN image",
    );
    expect(status("localhost:5000/app", { allowedImages: [], privateRegistries: ["LOCALHOST"] })).toBe("ok");
    expect(status("[::1]:5000/app", { allowedImages: [], privateRegistries: ["[::1]"] })).toBe("ok");
    expect(
      status("localhost:5000/app", { allowedImages: ["localhost:5000/app"], privateRegistries: [] }),
    ).toBe("ok");
    const chosen = { allowedImages: [], privateRegistries: [], defaultImage: "localhost:5000/app" };
    expect(status("localhost:5000/app", chosen)).toBe("ok");
    expect(status("localhost:5000/other", chosen)).toBe("E_FORBIDDEN image");
  });
});

describe("a member's image naming a private registry, on the real engine", () => {
  const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
  const store = openStore(":memory:");
  let server: Server | undefined;
  afterAll(() => {
    server?.close();
    store.close();
  });

  function app(config: Partial<Config> = {}, resolveHost?: HostResolver) {
    const deps = {
      resolveHost,
      nodeId: randomBytes(32).toString("hex"),
      config: { ...defaultConfig(hostname()), defaultMemoryMb: 64, defaultCpus: 0.5, ...config },
      engine: createDockerEngine({ host: DOCKER_HOST }),
      records: store.containers,
      clock: systemClock,
      logger: memoryLogger(),
      gpus: async () => [],
    };
    return createServerApp({
      ...deps,
      version: "test",
      containers: new ContainerService(deps),
      dataDir: tmpdir(),
      resolveCaller: () => ({ id: "member-a", admin: false, operator: false }),
    });
  }

  async function create(image: string, config: Partial<Config> = {}, resolveHost?: HostResolver) {
    const res = await app(config, resolveHost).request("http://127.0.0.1/v1/containers", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ image }),
    });
    return { status: res.status, json: (await res.json()) as { error: { field?: string; message: string } } };
  }

  test("127.0.0.1:<port>/probe → 403 naming image, and the engine never connects", async () => {
    let connections = 0;
    server = createServer((sock) => {
      connections++;
      sock.destroy();
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    for (const image of [`127.0.0.1:${port}/probe`, `localhost:${port}/probe`, `127.1:${port}/probe:1`]) {
      const r = await create(image);
      expect(r.status).toBe(403);
      expect(r.json.error.field).toBe("image");
      expect(r.json.error.message).toContain("not a public host");
    }
    await Bun.sleep(500);
    expect(connections).toBe(0);
    // The listener is reachable from the engine: with the operator's consent the pull does reach it
    // (and fails, since it is no registry), so the zero above is the check, not an unreachable port.
    const allowed = await create(`127.0.0.1:${port}/probe`, { privateRegistries: [`127.0.0.1:${port}`] });
    expect(allowed.status).toBe(404);
    await Bun.sleep(300);
    expect(connections).toBeGreaterThan(0);
    const seen = connections;
    await create(`[::ffff:127.0.0.1]:${port}/probe`);
    await Bun.sleep(500);
    expect(connections).toBe(seen);
  }, 60_000);

  test("a registry name that resolves to a private address → 403; one that does not resolve → 404; no pull", async () => {
    const asked: string[] = [];
    const resolver =
      (answer: string[] | Error): HostResolver =>
      async (host) => {
        asked.push(host);
        if (answer instanceof Error) throw answer;
        return answer;
      };
    const image = "registry.example.com/team/probe:1";
    const loop = await create(image, {}, resolver(["93.184.216.34", "127.0.0.1"]));
    expect(loop.status).toBe(403);
    expect(loop.json.error.field).toBe("image");
    expect(loop.json.error.message).toContain("resolves to 127.0.0.1");
    const v6 = await create(image, {}, resolver(["::ffff:10.0.0.1"]));
    expect(v6.status).toBe(403);
    const none = await create(image, {}, resolver(new Error("no answer within 2000 ms")));
    expect(none.status).toBe(404);
    expect(none.json.error.message).toContain("does not resolve");
    expect(asked).toEqual(["registry.example.com", "registry.example.com", "registry.example.com"]);
    // A literal address is judged as written, and the operator's registries are not looked up.
    await create(`127.0.0.1:1/x`, {}, resolver(["127.0.0.1"]));
    expect(asked).toHaveLength(3);
  });

  test("references outside Docker's grammar → 400 naming image, never 5xx", async () => {
    for (const image of ["a/../../b", "localhost/../x", "a//b", "x:", "a@sha256:zz"]) {
      const r = await create(image);
      expect(r.status).toBe(400);
      expect(r.json.error.field).toBe("body.image");
    }
    // The same check covers defaultImage, which the request does not pass through the schema.
    const res = await app({ defaultImage: "a/../../b" }).request("http://127.0.0.1/v1/containers", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(400);
  });
});
