import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { createTar } from "nanotar";
import { P2prcError } from "../core/index.ts";
import { packPlugin, sha256 } from "./archive.ts";
import {
  findPlugin,
  gitFolderName,
  installFromArchive,
  installFromFolder,
  installFromGit,
  listPlugins,
  removePlugin,
} from "./installed.ts";

const EXAMPLES = resolve(import.meta.dir, "examples");
const tmp = mkdtempSync(join(tmpdir(), "p2prc-plugins-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(tmp, `root-${n++}`);

function p2prcLayout(dir: string, ports = "1") {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "description.txt"), "Installs a thing with Ansible\n");
  writeFileSync(join(dir, "ports.json"), `{"NumOfPorts": ${ports}}`);
  writeFileSync(join(dir, "site.yml"), "- hosts: all\n  tasks: []\n");
  writeFileSync(join(dir, "hosts"), "all:\n");
}

/** The P2prcError `fn` throws (anything else, or nothing, fails the test). */
const thrown = (fn: () => unknown): P2prcError => {
  const err = (() => {
    try {
      fn();
    } catch (e) {
      return e;
    }
  })();
  if (!(err instanceof P2prcError)) throw new Error(`expected a P2prcError, got ${String(err)}`);
  return err;
};

describe("install, list, remove", () => {
  test("a folder installs under its manifest's name; a second install is a conflict; remove", () => {
    const root = fresh();
    const p = installFromFolder(root, join(EXAMPLES, "web-hello"));
    expect(p).toMatchObject({ name: "web-hello", kind: "p2prc", version: "1.0.0", ports: 1 });
    expect(p.sha256).toBe(sha256(packPlugin(join(root, "web-hello"))));
    expect(thrown(() => installFromFolder(root, join(EXAMPLES, "web-hello"))).code).toBe("E_CONFLICT");
    expect(findPlugin(root, "web-hello").manifest?.options.GREETING?.default).toBe("hello from p2prc");
    removePlugin(root, "web-hello");
    expect(listPlugins(root)).toEqual([]);
    expect(thrown(() => removePlugin(root, "web-hello")).code).toBe("E_NOT_FOUND");
    expect(thrown(() => removePlugin(root, "../etc")).code).toBe("E_INVALID");
  });

  test("a broken folder is its own line beside good ones; running it says why", () => {
    const root = fresh();
    installFromFolder(root, join(EXAMPLES, "web-hello"));
    installFromFolder(root, join(EXAMPLES, "fail"));
    p2prcLayout(join(root, "legacy"));
    mkdirSync(join(root, "broken"));
    writeFileSync(join(root, "broken", "plugin.json"), '{"format":"p2prc-plugin/1","name":"broken"}');
    mkdirSync(join(root, "half"));
    writeFileSync(join(root, "half", "description.txt"), "P2PRC's TestAnsible had no ports.json");
    const list = listPlugins(root);
    expect(list.map((p) => [p.name, p.ok])).toEqual([
      ["broken", false],
      ["fail", true],
      ["half", false],
      ["legacy", true],
      ["web-hello", true],
    ]);
    const broken = list.find((p) => p.name === "broken");
    expect(broken && !broken.ok && broken.error).toContain("version");
    const half = list.find((p) => p.name === "half");
    expect(half && !half.ok && half.error).toContain("ports.json");
    expect(list.find((p) => p.name === "legacy")).toMatchObject({ kind: "p2prc-ansible", ports: 1 });
    expect(thrown(() => findPlugin(root, "broken")).message).toStartWith(
      "plugin broken is broken: plugin.json",
    );
  });

  test("a tar and a tar.gz with one top folder install; the sha256 is checked when given", () => {
    const root = fresh();
    const tar = packPlugin(join(EXAMPLES, "fail"), "fail-1.0.0");
    expect(thrown(() => installFromArchive(root, tar, "fail.tar", "00".repeat(32))).message).toContain(
      "sha256",
    );
    expect(existsSync(join(root, "fail"))).toBe(false);
    expect(installFromArchive(root, tar, "fail.tar", sha256(tar)).name).toBe("fail");
    const gz = gzipSync(packPlugin(join(EXAMPLES, "web-hello")));
    expect(installFromArchive(root, gz, "web.tgz").name).toBe("web-hello");
    // packing is deterministic: the same files give the same sha256 (what a peer's copy is checked against)
    expect(sha256(packPlugin(join(root, "fail")))).toBe(sha256(packPlugin(join(EXAMPLES, "fail"))));
  });

  test("archive entries outside the plugin, links and too much are refused; nothing is installed", () => {
    const root = fresh();
    const manifest = '{"format":"p2prc-plugin/1","name":"evil","version":"1.0.0"}';
    const evil = (name: string) =>
      createTar([
        { name: "plugin.json", data: manifest },
        { name: "run.sh", data: "exit 0" },
        { name, data: "x" },
      ]);
    // names that climb out land inside the plugin (the tar reader resolves them), never outside it
    for (const bad of ["../escape", "/etc/passwd", "a/../../b"]) {
      const p = installFromArchive(root, evil(bad), "evil.tar");
      expect(p.dir).toBe(join(root, "evil"));
      removePlugin(root, "evil");
    }
    expect(existsSync(join(root, "..", "escape"))).toBe(false);
    expect(existsSync(join(tmp, "b"))).toBe(false);
    const device = createTar([
      { name: "plugin.json", data: manifest },
      { name: "run.sh", data: "" },
    ]);
    device[1024 + 156] = "3".charCodeAt(0); // run.sh becomes a character device
    expect(thrown(() => installFromArchive(root, device, "dev.tar")).message).toContain("only files");
    const big = createTar([
      { name: "plugin.json", data: manifest },
      { name: "run.sh", data: new Uint8Array(17 * 1024 * 1024) },
    ]);
    expect(thrown(() => installFromArchive(root, big, "big.tar")).code).toBe("E_TOO_LARGE");
    const linked = join(tmp, "linked");
    mkdirSync(linked);
    writeFileSync(join(linked, "plugin.json"), manifest.replace("evil", "linked"));
    writeFileSync(join(linked, "run.sh"), "exit 0");
    symlinkSync("/etc/passwd", join(linked, "passwd"));
    expect(thrown(() => installFromFolder(root, linked)).message).toContain("passwd is not a regular file");
    expect(thrown(() => installFromArchive(root, new TextEncoder().encode("nope"), "x")).code).toBe(
      "E_INVALID",
    );
    expect(listPlugins(root)).toEqual([]);
  });

  test("a manifest's entry must be a relative path inside the plugin", () => {
    const dir = join(tmp, "bad-entry");
    mkdirSync(dir);
    writeFileSync(
      join(dir, "plugin.json"),
      '{"format":"p2prc-plugin/1","name":"bad-entry","version":"1.0.0","entry":"../../bin/sh"}',
    );
    expect(thrown(() => installFromFolder(fresh(), dir)).message).toContain("entry");
  });
});

describe("git", () => {
  test("the folder name is the repository's whole name (P2PRC cut its last character)", () => {
    expect(gitFolderName("https://github.com/Akilan1999/p2prc-vscode-browser")).toBe("p2prc-vscode-browser");
    expect(gitFolderName("https://github.com/a/repo.git")).toBe("repo");
    expect(gitFolderName("https://github.com/a/repo/")).toBe("repo");
    expect(gitFolderName("git@github.com:a/web-hello.git")).toBe("web-hello");
    expect(() => gitFolderName("https://github.com/")).toThrow(P2prcError);
  });

  test("without git on PATH: one clear line", async () => {
    const err = await installFromGit(fresh(), "https://example.org/a/b.git", {
      which: () => undefined,
    }).catch((e) => e);
    expect(err.code).toBe("E_NOT_AVAILABLE");
    expect(err.message).toContain("git is not installed");
  });

  test.skipIf(!Bun.which("git"))("clones a local repository", async () => {
    const repo = join(tmp, "repo-src", "p2prc-hello");
    p2prcLayout(repo, "0");
    const git = (...a: string[]) => Bun.spawnSync(["git", "-C", repo, ...a], { stderr: "pipe" });
    git("init", "-q");
    git("add", ".");
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x");
    const root = fresh();
    const p = await installFromGit(root, `file://${repo}`);
    expect(p).toMatchObject({ name: "p2prc-hello", kind: "p2prc-ansible" });
    expect(existsSync(join(root, "p2prc-hello", ".git"))).toBe(false);
  });
});
