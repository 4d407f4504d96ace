import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { P2prcError } from "../core/index.ts";
import {
  completeConfigFile,
  defaultConfig,
  envName,
  readConfigFile,
  resolveConfig,
  writeConfigFile,
} from "./load.ts";
import { nodePaths, resolveHome } from "./paths.ts";
import { CONFIG_FIELDS } from "./types.ts";

const HOST = "test-host";

/** Runs fn and returns the error it throws; fails the test when it throws nothing. */
function thrown(fn: () => unknown): P2prcError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(P2prcError);
    return err as P2prcError;
  }
  throw new Error("expected an error, got none");
}

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "p2prc-load-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("resolveConfig precedence", () => {
  test("defaults only: every source is default and values match defaultConfig", () => {
    const { config, sources } = resolveConfig({ hostname: HOST, env: {} });
    expect(config).toEqual(defaultConfig(HOST));
    expect(config.machineName).toBe(HOST);
    for (const field of Object.keys(CONFIG_FIELDS))
      expect(sources[field as keyof typeof sources]).toBe("default");
  });

  test("default < file < env < flags, with sources", () => {
    const { config, sources } = resolveConfig({
      hostname: HOST,
      file: { serverPort: 9000, maxContainers: 3, machineName: "from-file", logLevel: "warn" },
      env: { P2PRC_SERVER_PORT: "9100", P2PRC_MAX_CONTAINERS: "4" },
      flags: { serverPort: 9200 },
    });
    expect(config.serverPort).toBe(9200);
    expect(sources.serverPort).toBe("flag");
    expect(config.maxContainers).toBe(4);
    expect(sources.maxContainers).toBe("env");
    expect(config.machineName).toBe("from-file");
    expect(sources.machineName).toBe("file");
    expect(config.logLevel).toBe("warn");
    expect(sources.logLevel).toBe("file");
    expect(config.defaultCpus).toBe(1);
    expect(sources.defaultCpus).toBe("default");
  });

  test("a flag that is undefined does not override", () => {
    const { config, sources } = resolveConfig({
      hostname: HOST,
      env: { P2PRC_SERVER_PORT: "9100" },
      flags: { serverPort: undefined },
    });
    expect(config.serverPort).toBe(9100);
    expect(sources.serverPort).toBe("env");
  });

  test("unrelated env variables are ignored", () => {
    const { sources } = resolveConfig({ hostname: HOST, env: { PATH: "/bin", P2PRC: "/x", HOME: "/root" } });
    expect(Object.values(sources).every((s) => s === "default")).toBe(true);
  });

  test("machineName default is derived from an unusual hostname", () => {
    expect(defaultConfig("my host!.lan").machineName).toBe("my-host-.lan");
    expect(defaultConfig("").machineName).toBe("p2prc-node");
    expect(defaultConfig("a".repeat(100)).machineName).toHaveLength(64);
  });
});

describe("env coercion", () => {
  test("numbers, floats and surrounding whitespace", () => {
    const { config } = resolveConfig({
      hostname: HOST,
      env: { P2PRC_SERVER_PORT: " 8081 ", P2PRC_MAX_CPUS_PER_CONTAINER: "1.5" },
    });
    expect(config.serverPort).toBe(8081);
    expect(config.maxCpusPerContainer).toBe(1.5);
  });

  test.each([
    ["true", true],
    ["1", true],
    ["YES", true],
    ["on", true],
    ["false", false],
    ["0", false],
    ["No", false],
    ["off", false],
  ])("boolean %p → %p", (raw, expected) => {
    const { config, sources } = resolveConfig({ hostname: HOST, env: { P2PRC_OPEN_NETWORK: raw } });
    expect(config.openNetwork).toBe(expected);
    expect(sources.openNetwork).toBe("env");
  });

  test("a non-boolean string is rejected", () => {
    const err = thrown(() => resolveConfig({ hostname: HOST, env: { P2PRC_OPEN_NETWORK: "maybe" } }));
    expect(err.code).toBe("E_CONFIG");
    expect(err.message).toContain("openNetwork");
    expect(err.message).toContain("P2PRC_OPEN_NETWORK");
  });

  test("comma lists are split and trimmed; empty items dropped", () => {
    const { config } = resolveConfig({
      hostname: HOST,
      env: { P2PRC_BOOTSTRAP: "10.0.0.1:8088, node-b.lan:9000,,", P2PRC_ALLOWED_IMAGES: "alpine:3" },
    });
    expect(config.bootstrap).toEqual(["10.0.0.1:8088", "node-b.lan:9000"]);
    expect(config.allowedImages).toEqual(["alpine:3"]);
  });

  test("an empty env value is an empty list", () => {
    const { config, sources } = resolveConfig({
      hostname: HOST,
      file: { bootstrap: ["10.0.0.1:8088"] },
      env: { P2PRC_BOOTSTRAP: "" },
    });
    expect(config.bootstrap).toEqual([]);
    expect(sources.bootstrap).toBe("env");
  });

  test("a bad list item names the field and the env variable", () => {
    const err = thrown(() => resolveConfig({ hostname: HOST, env: { P2PRC_BOOTSTRAP: "no-port-here" } }));
    expect(err.code).toBe("E_CONFIG");
    expect(err.message).toContain("bootstrap");
    expect(err.message).toContain("env P2PRC_BOOTSTRAP");
  });

  test("bootstrap and advertiseAddress are checked by the address parser (IPv6 in brackets before a port)", () => {
    const ok = (env: Record<string, string>) => resolveConfig({ hostname: HOST, env }).config;
    expect(ok({ P2PRC_BOOTSTRAP: "[fd00::7]:8088,node-b.lan:9000" }).bootstrap).toEqual([
      "[fd00::7]:8088",
      "node-b.lan:9000",
    ]);
    for (const a of ["node-b.lan", "10.0.0.7:9000", "fd00::7", "[fd00::7]", "[fd00::7]:9000"])
      expect(ok({ P2PRC_ADVERTISE_ADDRESS: a }).advertiseAddress).toBe(a);
    for (const [env, bad] of [
      ["P2PRC_BOOTSTRAP", "[fd00::7]:0"],
      ["P2PRC_BOOTSTRAP", "fd00::7"],
      ["P2PRC_ADVERTISE_ADDRESS", "a]b"],
      ["P2PRC_ADVERTISE_ADDRESS", "node:70000"],
    ] as const)
      expect(thrown(() => ok({ [env]: bad })).code).toBe("E_CONFIG");
  });
});

describe("errors", () => {
  test("P2PRC_SERVER_PORT=abc names field, value, source and allowed range", () => {
    const err = thrown(() => resolveConfig({ hostname: HOST, env: { P2PRC_SERVER_PORT: "abc" } }));
    expect(err.code).toBe("E_CONFIG");
    expect(err.field).toBe("serverPort");
    expect(err.message).toContain("serverPort");
    expect(err.message).toContain('"abc"');
    expect(err.message).toContain("env P2PRC_SERVER_PORT");
    expect(err.message).toContain(CONFIG_FIELDS.serverPort.allowed);
    expect(err.message).toContain("1 to 65535");
    expect(err.message).not.toContain("\n");
  });

  test("out-of-range port from the file names the file path", () => {
    const err = thrown(() =>
      resolveConfig({ hostname: HOST, file: { serverPort: 70000 }, filePath: "/etc/p2prc.json", env: {} }),
    );
    expect(err.code).toBe("E_CONFIG");
    expect(err.message).toContain("serverPort = 70000");
    expect(err.message).toContain("file /etc/p2prc.json");
  });

  test("a bad flag value says it came from a command-line flag", () => {
    const err = thrown(() =>
      resolveConfig({ hostname: HOST, env: {}, flags: { serverPort: "abc" as unknown as number } }),
    );
    expect(err.code).toBe("E_CONFIG");
    expect(err.message).toContain("serverPort");
    expect(err.message).toContain("command-line flag");
  });

  test("unknown field in the file is named", () => {
    const err = thrown(() =>
      resolveConfig({ hostname: HOST, file: { serverPrt: 1 }, filePath: "/tmp/c.json", env: {} }),
    );
    expect(err.code).toBe("E_CONFIG");
    expect(err.field).toBe("serverPrt");
    expect(err.message).toContain('"serverPrt"');
    expect(err.message).toContain("/tmp/c.json");
    expect(err.hint).toContain("serverPort");
  });

  test.each([
    ["an array", [1, 2]],
    ["null", null],
    ["a string", "hello"],
    ["a number", 42],
  ])("a file holding %s is rejected", (_label, file) => {
    const err = thrown(() => resolveConfig({ hostname: HOST, file, filePath: "/tmp/c.json", env: {} }));
    expect(err.code).toBe("E_CONFIG");
    expect(err.message).toContain("must hold a JSON object");
  });

  test("wrong type in the file (string for a number) is rejected", () => {
    const err = thrown(() => resolveConfig({ hostname: HOST, file: { maxContainers: "5" }, env: {} }));
    expect(err.code).toBe("E_CONFIG");
    expect(err.message).toContain("maxContainers");
  });

  test("a non-integer port from env is rejected", () => {
    const err = thrown(() => resolveConfig({ hostname: HOST, env: { P2PRC_SERVER_PORT: "80.5" } }));
    expect(err.code).toBe("E_CONFIG");
    expect(err.message).toContain("serverPort");
  });
});

describe("envName", () => {
  test("camelCase → P2PRC_UPPER_SNAKE", () => {
    expect(envName("maxMemoryMbPerContainer")).toBe("P2PRC_MAX_MEMORY_MB_PER_CONTAINER");
    expect(envName("serverPort")).toBe("P2PRC_SERVER_PORT");
    expect(envName("bootstrap")).toBe("P2PRC_BOOTSTRAP");
  });

  test("every field's env name is distinct", () => {
    const names = Object.keys(CONFIG_FIELDS).map(envName);
    expect(new Set(names).size).toBe(names.length);
  });
});

describe("config file", () => {
  test("readConfigFile: absent → undefined; bad JSON → E_CONFIG naming the path", () => {
    const dir = tempDir();
    const path = join(dir, "config.json");
    expect(readConfigFile(path)).toBeUndefined();
    writeFileSync(path, "{ not json");
    const err = thrown(() => readConfigFile(path));
    expect(err.code).toBe("E_CONFIG");
    expect(err.message).toContain(path);
    expect(err.message).toContain("not valid JSON");
  });

  test("writeConfigFile writes 0600 JSON and leaves no temp file", () => {
    const dir = tempDir();
    const path = join(dir, "sub", "config.json");
    writeConfigFile(path, { serverPort: 1234 });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readConfigFile(path)).toEqual({ serverPort: 1234 });
    expect(existsSync(`${path}.${process.pid}.tmp`)).toBe(false);
  });

  test("completeConfigFile creates every field, then is idempotent", () => {
    const dir = tempDir();
    const path = join(dir, "config.json");
    const first = completeConfigFile(path, HOST);
    expect(first.added.sort()).toEqual(Object.keys(CONFIG_FIELDS).sort());
    const written = readFileSync(path, "utf8");
    expect(JSON.parse(written)).toEqual(defaultConfig(HOST));

    const mtime = statSync(path).mtimeMs;
    const second = completeConfigFile(path, HOST);
    expect(second.added).toEqual([]);
    expect(readFileSync(path, "utf8")).toBe(written);
    expect(statSync(path).mtimeMs).toBe(mtime);
    expect(second.config).toEqual(first.config);
  });

  test("completeConfigFile keeps edited fields and fills missing ones", () => {
    const dir = tempDir();
    const path = join(dir, "config.json");
    writeFileSync(path, JSON.stringify({ machineName: "edited", serverPort: 9999 }));
    const { config, added } = completeConfigFile(path, HOST);
    expect(config.machineName).toBe("edited");
    expect(config.serverPort).toBe(9999);
    expect(added).not.toContain("machineName");
    expect(added).toContain("maxContainers");
    const onDisk = JSON.parse(readFileSync(path, "utf8"));
    expect(onDisk.machineName).toBe("edited");
    expect(onDisk.serverPort).toBe(9999);
    expect(onDisk.maxContainers).toBe(defaultConfig(HOST).maxContainers);
    expect(Object.keys(onDisk).sort()).toEqual(Object.keys(CONFIG_FIELDS).sort());
  });

  test("completeConfigFile does not overwrite an invalid file", () => {
    const dir = tempDir();
    const path = join(dir, "config.json");
    const bad = JSON.stringify({ serverPort: "abc" });
    writeFileSync(path, bad);
    const err = thrown(() => completeConfigFile(path, HOST));
    expect(err.code).toBe("E_CONFIG");
    expect(readFileSync(path, "utf8")).toBe(bad);
  });
});

describe("resolveHome", () => {
  const userHome = "/home/u";
  test("--config-dir wins over everything", () => {
    expect(
      resolveHome({ configDir: "/flag", env: { P2PRC: "/env", XDG_CONFIG_HOME: "/xdg" }, userHome }),
    ).toBe("/flag");
  });
  test("$P2PRC next", () => {
    expect(resolveHome({ env: { P2PRC: "/env", XDG_CONFIG_HOME: "/xdg" }, userHome })).toBe("/env");
  });
  test("$XDG_CONFIG_HOME/p2prc next", () => {
    expect(resolveHome({ env: { XDG_CONFIG_HOME: "/xdg" }, userHome })).toBe("/xdg/p2prc");
  });
  test("~/.config/p2prc last; empty values are ignored", () => {
    expect(resolveHome({ env: {}, userHome })).toBe("/home/u/.config/p2prc");
    expect(resolveHome({ configDir: "", env: { P2PRC: "", XDG_CONFIG_HOME: "" }, userHome })).toBe(
      "/home/u/.config/p2prc",
    );
  });
  test("nodePaths: dataDir moves only the database", () => {
    const p = nodePaths("/h", "/data");
    expect(p.configFile).toBe("/h/config.json");
    expect(p.privateKey).toBe("/h/identity/node.key");
    expect(p.stateDb).toBe("/data/state.db");
    expect(nodePaths("/h").stateDb).toBe("/h/state.db");
    expect(p.plugins).toBe("/h/plugins");
  });
});

test("VERSION matches package.json", async () => {
  const { VERSION } = await import("../core/index.ts");
  const pkg = JSON.parse(await Bun.file(new URL("../package.json", import.meta.url)).text()) as {
    version: string;
  };
  expect(VERSION).toBe(pkg.version);
});

describe("sandbox limits (disk, logs, private registries)", () => {
  test("defaults: 4096 MiB of writable layer, 10 MiB × 3 log files, no private registry", () => {
    const { config } = resolveConfig({ hostname: HOST, env: {} });
    expect(config.maxDiskMbPerContainer).toBe(4096);
    expect(config.containerLogMaxMb).toBe(10);
    expect(config.containerLogMaxFiles).toBe(3);
    expect(config.privateRegistries).toEqual([]);
  });

  test("env sets them; out-of-range or malformed values are E_CONFIG naming the field", () => {
    const { config } = resolveConfig({
      hostname: HOST,
      env: {
        P2PRC_MAX_DISK_MB_PER_CONTAINER: "512",
        P2PRC_CONTAINER_LOG_MAX_FILES: "5",
        P2PRC_PRIVATE_REGISTRIES: "127.0.0.1:5000, [::1]:5000,registry",
      },
    });
    expect(config.maxDiskMbPerContainer).toBe(512);
    expect(config.containerLogMaxFiles).toBe(5);
    expect(config.privateRegistries).toEqual(["127.0.0.1:5000", "[::1]:5000", "registry"]);
    for (const [name, value, field] of [
      ["P2PRC_MAX_DISK_MB_PER_CONTAINER", "0", "maxDiskMbPerContainer"],
      ["P2PRC_CONTAINER_LOG_MAX_MB", "2048", "containerLogMaxMb"],
      ["P2PRC_CONTAINER_LOG_MAX_FILES", "1", "containerLogMaxFiles"],
      ["P2PRC_PRIVATE_REGISTRIES", "http://127.0.0.1:5000", "privateRegistries"],
    ] as const) {
      const err = thrown(() => resolveConfig({ hostname: HOST, env: { [name]: value } }));
      expect(err.code).toBe("E_CONFIG");
      expect(err.field).toBe(field);
    }
  });
});

test('swarmPorts: "auto" by default; "mesh" or "host" from env; anything else is E_CONFIG naming the field', () => {
  expect(resolveConfig({ hostname: HOST, env: {} }).config.swarmPorts).toBe("auto");
  expect(resolveConfig({ hostname: HOST, env: { P2PRC_SWARM_PORTS: "host" } }).config.swarmPorts).toBe(
    "host",
  );
  expect(resolveConfig({ hostname: HOST, env: { P2PRC_SWARM_PORTS: "mesh" } }).config.swarmPorts).toBe(
    "mesh",
  );
  const err = thrown(() => resolveConfig({ hostname: HOST, env: { P2PRC_SWARM_PORTS: "ipvs" } }));
  expect(err.code).toBe("E_CONFIG");
  expect(err.field).toBe("swarmPorts");
});
