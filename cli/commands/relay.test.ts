import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CliIO } from "../io.ts";
import { runCli } from "../run.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-mp-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function cli(argv: string[], home: string) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = { out: (t) => out.push(t), err: (t) => err.push(t) };
  const code = await runCli(argv, { io, env: { P2PRC: home } });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

test("--mp maps a port for members, mappings lists it, mappings rm removes it", async () => {
  const home = join(root, "alice");
  const mapped = await cli(["--mp", "8080"], home);
  expect(mapped.err).toBe("");
  expect(mapped.code).toBe(0);
  expect(mapped.out).toContain("mapped:  8080  → 127.0.0.1:8080  members, once this node is relayed");
  expect(mapped.out).toMatch(/members: p2prc forward [0-9a-f]{64} 8080 --local 8080/);
  // again, the same: a no-op; P2PRC's spelling works
  expect((await cli(["-MAPPort", "8080"], home)).code).toBe(0);
  const listed = await cli(["mappings", "--json"], home);
  const list = JSON.parse(listed.out) as { port: number; access: string; target: { port: number } }[];
  expect(list.map((m) => [m.port, m.access, m.target.port])).toEqual([[8080, "members", 8080]]);
  expect((await cli(["mappings", "rm", "8080"], home)).out).toContain("removed mapping 8080");
  expect((await cli(["mappings"], home)).out).toBe("(no mappings)");
  const again = await cli(["mappings", "rm", "8080"], home);
  expect(again.code).toBe(1);
  expect(again.err).toContain("p2prc: port 8080 is not mapped");
});

test("refusals are one clear line: --udp, a bad --dn, a bad port, an unknown container", async () => {
  const home = join(root, "bob");
  const udp = await cli(["--mp", "5353", "--udp"], home);
  expect(udp.code).toBe(2);
  expect(udp.err).toBe("p2prc: --udp is not supported: the relay carries TCP streams only");
  const dn = await cli(["--mp", "80", "--dn", "not a domain"], home);
  expect(dn.code).toBe(2);
  expect(dn.err.split("\n")[0]).toBe(
    'p2prc: --dn: expected a domain name such as app.example.org, got "not a domain"',
  );
  const bad = await cli(["--mp", "0"], home);
  expect(bad.code).toBe(2);
  expect(bad.err.split("\n")[0]).toBe('p2prc: --mp: expected a port from 1 to 65535, got "0"');
  const container = await cli(["--mp", "80", "--id", "nosuch"], home);
  expect(container.code).toBe(1);
  expect(container.err.split("\n")[0]).toBe("p2prc: no container nosuch on this node");
  expect((await cli(["mappings"], home)).out).toBe("(no mappings)");
  const other = await cli(["proxy", "nosuchnode", "22"], home);
  expect(other.code).not.toBe(0);
  expect(other.err.split("\n")[0]).toStartWith("p2prc: ");
});

test("--dn maps a port publicly, routed by that Host on the relay's HTTP port", async () => {
  const home = join(root, "carol");
  expect((await cli(["--mp", "8080", "--DomainName", "App.Example.org"], home)).code).toBe(0);
  const list = JSON.parse((await cli(["mappings", "--json"], home)).out) as {
    access: string;
    domain: string;
  }[];
  expect(list.map((m) => [m.access, m.domain])).toEqual([["public", "app.example.org"]]);
  // mapped again without it: members only, no domain
  expect((await cli(["--mp", "8080"], home)).code).toBe(0);
  const again = JSON.parse((await cli(["mappings", "--json"], home)).out) as {
    access: string;
    domain?: string;
  }[];
  expect(again.map((m) => [m.access, m.domain])).toEqual([["members", undefined]]);
});
