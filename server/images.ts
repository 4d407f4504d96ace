import { lookup } from "node:dns/promises";
import { isIPv6 } from "node:net";
import { formatHost, P2prcError } from "../core/index.ts";

/** An image reference split by Docker's grammar (distribution/reference). */
export interface ImageRef {
  /** Registry host and optional port as written (`registry.example.com:5000`); undefined = Docker Hub. */
  domain?: string | undefined;
  /** The host alone, brackets of an IPv6 address removed, lower-cased. */
  host?: string | undefined;
  /** Repository path below the registry (`library/debian`, `team/app`). */
  path: string;
  tag?: string | undefined;
  digest?: string | undefined;
}

// distribution/reference's grammar, written out. A path component is lower-case alphanumerics joined
// by one separator (`.`, `_`, `__` or one or more `-`), so `..`, `.x`, `x/` and empty components fail.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:.]+\\])(?::[0-9]{1,5})?$`,
);
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
/** Docker's limit on the name part (registry and path). */
const NAME_MAX = 255;

/**
 * Parses `ref` by Docker's reference grammar; a string why it is not one otherwise. Stricter than the
 * engine's own parser in one way only: a numeric port must be 1-65535.
 */
export function parseImageRef(ref: string): ImageRef | string {
  if (ref.length === 0) return "empty";
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return `bad digest "${digest}" (algorithm:hex, such as sha256:<64 hex>)`;
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.indexOf(":", lastSlash + 1);
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag))
      return `bad tag "${tag}" (1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-')`;
  }
  if (rest.length > NAME_MAX) return `name longer than ${NAME_MAX} characters`;
  const parts = rest.split("/");
  let domain: string | undefined;
  const first = parts[0] ?? "";
  // Docker's rule: the first component names a registry when it has a '.' or ':', is `localhost`, or
  // has an upper-case letter (a repository path never does).
  if (parts.length > 1 && (/[.:]/.test(first) || first === "localhost" || first !== first.toLowerCase())) {
    domain = first;
    parts.shift();
    if (!DOMAIN.test(domain)) return `bad registry "${domain}"`;
  }
  for (const p of parts) {
    if (!PATH_COMPONENT.test(p)) {
      return `bad path component "${p}" (lower-case letters and digits joined by '.', '_', '__' or '-')`;
    }
  }
  let host: string | undefined;
  if (domain) {
    const port = /:([0-9]+)$/.exec(domain)?.[1];
    if (port !== undefined && !(Number(port) >= 1 && Number(port) <= 65535))
      return `bad registry port ${port}`;
    host = (port === undefined ? domain : domain.slice(0, -port.length - 1)).toLowerCase();
    if (host.startsWith("[")) {
      host = host.slice(1, -1);
      if (!isIPv6(host)) return `bad IPv6 address "${host}"`;
    }
  }
  return { domain, host, path: parts.join("/"), tag, digest };
}

/**
 * The canonical form of an image reference: a tag is added when there is neither tag nor digest, so
 * `busybox` and `busybox:latest` name the same image.
 */
export function normalizeImageRef(ref: string): string {
  if (ref.includes("@")) return ref;
  const lastSlash = ref.lastIndexOf("/");
  return ref.slice(lastSlash + 1).includes(":") ? ref : `${ref}:latest`;
}

/** Whether `ref` is allowed by `allowed` (empty allows every image). */
export function imageAllowed(allowed: readonly string[], ref: string): boolean {
  if (allowed.length === 0) return true;
  const want = normalizeImageRef(ref);
  return allowed.some((a) => normalizeImageRef(a) === want);
}

/**
 * An IPv4 address as `inet_aton` reads it (what a C resolver accepts): 1 to 4 parts, each decimal,
 * octal (leading 0) or hex (0x), the last filling the remaining bytes, so `127.1`, `0x7f000001`,
 * `2130706433` and `0177.0.0.1` are all 127.0.0.1. undefined when `host` is not such a number.
 */
export function parseIPv4Loose(host: string): number | undefined {
  const parts = host.split(".");
  if (parts.length < 1 || parts.length > 4) return undefined;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0x[0-9a-f]*$/i.test(p)) n = p.length === 2 ? 0 : Number.parseInt(p.slice(2), 16);
    else if (/^0[0-7]*$/.test(p)) n = Number.parseInt(p, 8);
    else if (/^[1-9][0-9]*$/.test(p)) n = Number(p);
    else return undefined;
    nums.push(n);
  }
  const last = nums.pop() as number;
  if (nums.some((n) => n > 255)) return undefined;
  if (last >= 256 ** (4 - nums.length)) return undefined;
  let value = 0;
  for (const n of nums) value = value * 256 + n;
  return value * 256 ** (4 - nums.length) + last;
}

/** IPv4 ranges that are not public unicast: [first address, prefix length, what it is]. */
const V4_NOT_PUBLIC: [number, number, string][] = [
  [0x00000000, 8, "this-network"],
  [0x0a000000, 8, "private"],
  [0x64400000, 10, "shared (CGNAT)"],
  [0x7f000000, 8, "loopback"],
  [0xa9fe0000, 16, "link-local"],
  [0xac100000, 12, "private"],
  [0xc0000000, 24, "IETF protocol"],
  [0xc0000200, 24, "documentation"],
  [0xc0a80000, 16, "private"],
  [0xc6120000, 15, "benchmarking"],
  [0xc6336400, 24, "documentation"],
  [0xcb007100, 24, "documentation"],
  [0xe0000000, 4, "multicast"],
  [0xf0000000, 4, "reserved"],
];

function v4Class(addr: number): string | undefined {
  for (const [base, bits, what] of V4_NOT_PUBLIC) {
    const size = 2 ** (32 - bits);
    if (addr >= base && addr < base + size) return what;
  }
  return undefined;
}

/** The eight 16-bit groups of an IPv6 address (a trailing dotted IPv4 part included). */
function v6Groups(addr: string): number[] {
  let text = addr.toLowerCase().replace(/%.*$/, "");
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1];
  if (v4) {
    const n = v4.split(".").map(Number);
    text = `${text.slice(0, -v4.length)}${(((n[0] ?? 0) << 8) | (n[1] ?? 0)).toString(16)}:${(((n[2] ?? 0) << 8) | (n[3] ?? 0)).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = tail === undefined ? [] : new Array(8 - h.length - t.length).fill("0");
  return [...h, ...fill, ...t].map((g) => Number.parseInt(g, 16));
}

function v6Class(addr: string): string | undefined {
  const g = v6Groups(addr);
  const [a = 0, b = 0] = g;
  const embeddedV4 = ((g[6] ?? 0) * 65536 + (g[7] ?? 0)) >>> 0;
  const zeroUpTo = (n: number) => g.slice(0, n).every((x) => x === 0);
  if (zeroUpTo(7) && g[7] === 1) return "loopback";
  if (zeroUpTo(8)) return "unspecified";
  if (zeroUpTo(5) && g[5] === 0xffff) return v4Class(embeddedV4) && `IPv4-mapped ${v4Class(embeddedV4)}`;
  if (zeroUpTo(6)) return "IPv4-compatible";
  if (a === 0x64 && b === 0xff9b) return v4Class(embeddedV4) && `NAT64 of ${v4Class(embeddedV4)}`;
  if (a === 0x2002) {
    const inner = (b * 65536 + (g[2] ?? 0)) >>> 0;
    return v4Class(inner) && `6to4 of ${v4Class(inner)}`;
  }
  if ((a & 0xfe00) === 0xfc00) return "unique local (private)";
  if ((a & 0xffc0) === 0xfe80) return "link-local";
  if ((a & 0xffc0) === 0xfec0) return "site-local";
  if ((a & 0xff00) === 0xff00) return "multicast";
  if (a === 0x2001 && b === 0xdb8) return "documentation";
  return undefined;
}

/** Name suffixes that never name a public host. */
const LOCAL_NAMES = /(?:^|\.)(?:localhost|localdomain|local|internal|lan|home\.arpa)$/;

/**
 * Why a registry host is not a public one: loopback, link-local, private or other non-public IPv4 and
 * IPv6 addresses in any notation (`127.1`, `0x7f000001`, `[::ffff:127.0.0.1]`), `localhost` and names
 * under local-only suffixes, and single-label names (resolved only by a local resolver or hosts file).
 * undefined for a public name or address. Names are not resolved: a public name that resolves to a
 * private address is the operator's resolver's to refuse.
 */
export function nonPublicHost(host: string): string | undefined {
  const h = host.toLowerCase();
  if (isIPv6(h)) return v6Class(h);
  const v4 = parseIPv4Loose(h);
  if (v4 !== undefined) return v4Class(v4);
  if (/^[0-9a-fx.]+$/.test(h) && h.split(".").every((l) => /^(?:0x[0-9a-f]*|[0-9]+)$/.test(l))) {
    return "numeric host that is not a valid public IPv4 address";
  }
  if (LOCAL_NAMES.test(h)) return "local name";
  if (!h.includes(".")) return "single-label (local) name";
  return undefined;
}

/** What decides which images a node runs (config fields of the same names). */
export interface ImagePolicy {
  allowedImages: readonly string[];
  privateRegistries: readonly string[];
  /** The operator's own choice, like an image in allowedImages. */
  defaultImage?: string | undefined;
}

/**
 * Checks an image a member asked for before the engine sees it: a reference by Docker's grammar (400),
 * one of `allowedImages` when that is set, and a registry that is public unless the operator named it in
 * `privateRegistries`, listed the image in `allowedImages` or made it `defaultImage` (403). Throws
 * P2prcError naming `image`.
 */
export function checkImage(image: string, policy: ImagePolicy): ImageRef {
  const ref = parseImageRef(image);
  if (typeof ref === "string") {
    throw new P2prcError("E_INVALID", `image: not an image reference (${ref})`, { field: "image" });
  }
  if (!imageAllowed(policy.allowedImages, image)) {
    throw new P2prcError(
      "E_FORBIDDEN",
      `image ${image} is not offered by this node (allowedImages: ${policy.allowedImages.join(", ")})`,
      { field: "image" },
    );
  }
  if (ref.host && !registryConsented(image, ref, policy)) {
    const why = nonPublicHost(ref.host);
    if (why) throw privateRegistry(image, ref, why);
  }
  return ref;
}

/** Whether the operator agreed to this image's registry: it chose the image, or named the registry. */
function registryConsented(image: string, ref: ImageRef, policy: ImagePolicy): boolean {
  if (policy.allowedImages.length > 0 || image === policy.defaultImage) return true;
  return policy.privateRegistries.some((r) => {
    const want = r.toLowerCase();
    return want === ref.domain?.toLowerCase() || want === ref.host || want === formatHost(ref.host ?? "");
  });
}

function privateRegistry(image: string, ref: ImageRef, why: string): P2prcError {
  return new P2prcError(
    "E_FORBIDDEN",
    `image ${image}: registry ${ref.domain} is not a public host (${why}); this node pulls only from public registries and those in privateRegistries`,
    { field: "image" },
  );
}

/** Looks a host name up the way the engine's resolver would (hosts file, DNS); every address. */
export type HostResolver = (host: string) => Promise<string[]>;

/** getaddrinfo through node:dns, at most `timeoutMs`. */
export function systemResolver(timeoutMs = 2000): HostResolver {
  return async (host) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const found = await Promise.race([lookup(host, { all: true, verbatim: true }), timeout]);
      return found.map((a) => a.address);
    } finally {
      clearTimeout(timer);
    }
  };
}

/**
 * Before a pull: the registry's name must not resolve to a non-public address either (a public-looking
 * name pointing at 127.0.0.1). Fails closed: a name that does not resolve in time is 404, since the
 * engine could not pull from it either. The engine resolves again on its own, so a name whose answers
 * change between the two lookups (DNS rebinding) is not covered; `allowedImages` is.
 */
export async function checkRegistryAddresses(
  image: string,
  ref: ImageRef,
  policy: ImagePolicy,
  resolve: HostResolver,
): Promise<void> {
  if (!ref.host || registryConsented(image, ref, policy)) return;
  if (isIPv6(ref.host) || parseIPv4Loose(ref.host) !== undefined) return; // a literal: checked already
  let addresses: string[];
  try {
    addresses = await resolve(ref.host);
  } catch (err) {
    throw new P2prcError(
      "E_NOT_FOUND",
      `image ${image}: registry ${ref.domain} does not resolve (${(err as Error).message})`,
      { field: "image", cause: err },
    );
  }
  for (const address of addresses) {
    const why = nonPublicHost(address);
    if (why) throw privateRegistry(image, ref, `${ref.host} resolves to ${address}, ${why}`);
  }
}
