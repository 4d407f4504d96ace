import { P2prcError } from "./errors.ts";

/** The port of a node's HTTP API when none is given (config `serverPort`, a bare host in a bootstrap list). */
export const DEFAULT_PORT = 8088;

/** Where a node listens: a host name, an IPv4 address or an IPv6 address (never bracketed here). */
export interface Address {
  host: string;
  port: number;
}

const NAME_OR_V4 = /^[A-Za-z0-9.-]+$/;
const V6 = /^[0-9A-Fa-f:.]+$/;

/**
 * `host:port`, `[v6]:port`, and — when `defaultPort` is given — `host`, `[v6]` or a bare `v6` → an
 * Address, or undefined. Hosts are names or IPv4 (letters, digits, '.', '-') or IPv6 (hex, ':', '.');
 * zones (`fe80::1%eth0`) are not accepted. The port is 1-65535.
 */
export function tryParseAddress(text: string, defaultPort?: number): Address | undefined {
  const s = text.trim();
  let host: string | undefined;
  let port: string | undefined;
  if (s.startsWith("[")) {
    const m = /^\[([^\]]*)\](?::(\d{1,5}))?$/.exec(s);
    if (!m?.[1] || !V6.test(m[1])) return undefined;
    [host, port] = [m[1], m[2]];
  } else if ((s.match(/:/g)?.length ?? 0) > 1) {
    // a bare IPv6 address: its last group cannot be told from a port, so it has none
    if (!V6.test(s)) return undefined;
    host = s;
  } else {
    const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
    if (!m?.[1] || !NAME_OR_V4.test(m[1])) return undefined;
    [host, port] = [m[1], m[2]];
  }
  const p = port === undefined ? defaultPort : Number(port);
  if (p === undefined || !Number.isInteger(p) || p < 1 || p > 65535) return undefined;
  return { host, port: p };
}

/**
 * Like tryParseAddress, but an invalid address throws E_INVALID naming `field` and what was `expected`
 * (`add-server: expected host:port (port 1-65535), got "x"`).
 */
export function parseAddress(
  text: string,
  field: string,
  expected = "host:port (port 1-65535)",
  defaultPort?: number,
): Address {
  const a = tryParseAddress(text, defaultPort);
  if (!a) {
    throw new P2prcError("E_INVALID", `${field}: expected ${expected}, got "${text.slice(0, 100)}"`, {
      field,
    });
  }
  return a;
}

/** A host as it is written before `:port` or in a URL: an IPv6 address in brackets. */
export function formatHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** A host as it is stored and compared: the brackets of `[v6]` (a URL's hostname) removed. */
export function unbracket(host: string): string {
  return host.replace(/^\[(.*)\]$/, "$1");
}

/** `host:port`, `[v6]:port` for IPv6. */
export function formatAddress(a: Address): string {
  return `${formatHost(a.host)}:${a.port}`;
}

/**
 * The base URL of a node's API: `https://` when the node serves TLS (its record carries a certificate,
 * or config `tls` for this node), else `http://`. PeerTransport still pins the certificate itself.
 */
export function nodeUrl(a: Address, tls: boolean): string {
  return `${tls ? "https" : "http"}://${formatAddress(a)}`;
}
