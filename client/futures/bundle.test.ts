// A future's imports: a package is bundled into the program (it runs where no node_modules is), a runtime
// module is imported as it is, and a name or module that cannot be used is refused before sending.
import { expect, test } from "bun:test";
import { buildProgram } from "./bundle.ts";
import { encodeArgs, readReply } from "./program.ts";

/** Runs a program in an empty directory, as a node's runtime would. */
function run(program: string, args: unknown[]) {
  const p = Bun.spawnSync([process.execPath, "-e", program], {
    env: { PATH: process.env.PATH ?? "", P2PRC_FUTURE_ARGS: encodeArgs(args), P2PRC_FUTURE_NONCE: "n" },
    cwd: "/",
  });
  return readReply(
    { containerId: "c", exitCode: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() },
    undefined,
    "n",
  );
}

test("a package is bundled with the function; node:* is the runtime's own", async () => {
  const fn =
    "(n) => [nanotar.createTar([{ name: 'a.txt', data: 'x'.repeat(n) }]).length, zlib.gzipSync('z').length > 0]";
  const program = await buildProgram(fn, { nanotar: "nanotar", zlib: "node:zlib" }, import.meta.dir);
  expect(program).not.toContain('from "nanotar"');
  expect(run(program, [10])).toMatchObject({ ok: true, value: [10240, true] });
  // built once per function and import list
  expect(await buildProgram(fn, { nanotar: "nanotar", zlib: "node:zlib" }, import.meta.dir)).toBe(program);
});

test("a module that cannot be found, or a name a function cannot use, is refused", async () => {
  await expect(buildProgram("() => 1", { x: "no-such-package-p2prc" }, import.meta.dir)).rejects.toThrow(
    "cannot find no-such-package-p2prc",
  );
  expect(() => buildProgram("() => 1", { "not a name": "node:fs" })).toThrow(
    "is not a name a function can use",
  );
  expect(() => buildProgram("() => 1", { __s: "node:fs" })).toThrow("is not a name a function can use");
});
