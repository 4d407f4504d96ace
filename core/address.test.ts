// Addresses: parse host:port (names, IPv4, IPv6 with and without brackets), format, and node URLs.
import { describe, expect, test } from "bun:test";
import * as address from "./address.ts";
import { P2prcError } from "./errors.ts";

const { DEFAULT_PORT, formatAddress, formatHost, nodeUrl, parseAddress, tryParseAddress, unbracket } =
  address;

describe("tryParseAddress", () => {
  test("host names and IPv4 with a port", () => {
    expect(tryParseAddress("10.0.0.7:8088")).toEqual({ host: "10.0.0.7", port: 8088 });
    expect(tryParseAddress("node-b.lan:9000")).toEqual({ host: "node-b.lan", port: 9000 });
    expect(tryParseAddress("  localhost:1 ")).toEqual({ host: "localhost", port: 1 });
  });

  test("IPv6 in brackets, with or without a port; bare IPv6 only with a default port", () => {
    expect(tryParseAddress("[::1]:8088")).toEqual({ host: "::1", port: 8088 });
    expect(tryParseAddress("[fd00::7]:65535")).toEqual({ host: "fd00::7", port: 65535 });
    expect(tryParseAddress("[::ffff:10.0.0.1]:80")).toEqual({ host: "::ffff:10.0.0.1", port: 80 });
    expect(tryParseAddress("[::1]")).toBeUndefined();
    expect(tryParseAddress("[::1]", 9000)).toEqual({ host: "::1", port: 9000 });
    // a bare IPv6 address has no port: its last group is part of the address
    expect(tryParseAddress("fd00::1:8088")).toBeUndefined();
    expect(tryParseAddress("fd00::1:8088", DEFAULT_PORT)).toEqual({ host: "fd00::1:8088", port: 8088 });
  });

  test("a host alone takes the default port, when there is one", () => {
    expect(tryParseAddress("node-b.lan")).toBeUndefined();
    expect(tryParseAddress("node-b.lan", 7000)).toEqual({ host: "node-b.lan", port: 7000 });
    // a port given wins over the default
    expect(tryParseAddress("node-b.lan:7001", 7000)).toEqual({ host: "node-b.lan", port: 7001 });
  });

  test("bad ports are refused", () => {
    for (const bad of ["a:0", "a:65536", "a:99999", "a:123456", "a:", "a:-1", "a:1.5", "[::1]:0", "a:x"])
      expect([bad, tryParseAddress(bad, 8088)]).toEqual([bad, undefined]);
    expect(tryParseAddress("a", 0)).toBeUndefined();
  });

  test("bad hosts are refused, IPv6 zones included", () => {
    for (const bad of [
      "",
      ":80",
      "a b:80",
      "a_b:80",
      "[]:80",
      "[::1",
      "::1]:80",
      "[zz::1]:80",
      "[fe80::1%eth0]:80",
    ])
      expect([bad, tryParseAddress(bad, 8088)]).toEqual([bad, undefined]);
    expect(tryParseAddress("fe80::1%eth0", 8088)).toBeUndefined();
    expect(tryParseAddress("http://a:80")).toBeUndefined();
  });
});

describe("parseAddress", () => {
  test("names the field and what was expected", () => {
    let err: unknown;
    try {
      parseAddress("nope", "add-server");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(P2prcError);
    expect((err as P2prcError).code).toBe("E_INVALID");
    expect((err as P2prcError).field).toBe("add-server");
    expect((err as Error).message).toBe('add-server: expected host:port (port 1-65535), got "nope"');
    expect(() => parseAddress("x", "join", "a cluster document file or host:port")).toThrow(
      'join: expected a cluster document file or host:port, got "x"',
    );
  });

  test("returns the address", () => {
    expect(parseAddress("[::1]:9", "f")).toEqual({ host: "::1", port: 9 });
    expect(parseAddress("h", "f", undefined, 5)).toEqual({ host: "h", port: 5 });
  });
});

describe("format and URLs", () => {
  test("IPv6 in brackets, the rest as is", () => {
    expect(formatHost("::1")).toBe("[::1]");
    expect(formatHost("[::1]")).toBe("[::1]");
    expect(formatHost("10.0.0.1")).toBe("10.0.0.1");
    expect(formatAddress({ host: "fd00::7", port: 8088 })).toBe("[fd00::7]:8088");
    expect(formatAddress({ host: "node-b.lan", port: 9000 })).toBe("node-b.lan:9000");
    expect(unbracket("[::1]")).toBe("::1");
    expect(unbracket("::1")).toBe("::1");
    expect(unbracket("example.org")).toBe("example.org");
  });

  test("format and parse are inverses", () => {
    for (const a of [
      { host: "::1", port: 1 },
      { host: "10.0.0.1", port: 8088 },
      { host: "example.org", port: 65535 },
    ])
      expect(tryParseAddress(formatAddress(a))).toEqual(a);
  });

  test("the scheme says whether the node serves TLS", () => {
    expect(nodeUrl({ host: "::1", port: 8088 }, true)).toBe("https://[::1]:8088");
    expect(nodeUrl({ host: "127.0.0.1", port: 9002 }, false)).toBe("http://127.0.0.1:9002");
    expect(new URL(nodeUrl({ host: "fd00::7", port: 1 }, true)).hostname).toBe("[fd00::7]");
  });
});
