import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isP2prcError } from "./errors.ts";
import {
  certSha256,
  loadOrCreateTlsCertificate,
  pinnedTls,
  probeCertificate,
  type TlsMaterial,
} from "./tls.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-tls-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ok = () => new Response("hello over tls");
let mine: TlsMaterial;
let other: TlsMaterial;
let server: ReturnType<typeof Bun.serve>;
let url: string;

beforeAll(async () => {
  mine = await loadOrCreateTlsCertificate(join(root, "a", "identity"), "node-a");
  other = await loadOrCreateTlsCertificate(join(root, "b", "identity"), "node-b");
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: mine.certPem, key: mine.keyPem },
    fetch: ok,
  });
  url = `https://127.0.0.1:${server.port}/`;
});
afterAll(() => server?.stop(true));

async function fetchError(input: string, init?: BunFetchRequestInit): Promise<unknown> {
  try {
    await fetch(input, init);
  } catch (err) {
    return err;
  }
  return undefined;
}

/** A TCP port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe("loadOrCreateTlsCertificate", () => {
  const dir = join(root, "a", "identity");

  test("creates tls.crt 0644 and tls.key 0600 in a 0700 directory", () => {
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, "tls.crt")).mode & 0o777).toBe(0o644);
    expect(statSync(join(dir, "tls.key")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, "tls.crt"), "utf8")).toBe(mine.certPem);
    expect(readFileSync(join(dir, "tls.key"), "utf8")).toBe(mine.keyPem);
    expect(mine.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(other.sha256).not.toBe(mine.sha256);
  });

  test("a second call returns the same material", async () => {
    const again = await loadOrCreateTlsCertificate(dir, "another name is ignored");
    expect(again).toEqual(mine);
  });

  test("the certificate: self-signed P-256, CN, end entity, ~20 years", () => {
    const cert = new X509Certificate(mine.certPem);
    expect(cert.subject).toBe("CN=node-a");
    expect(cert.issuer).toBe("CN=node-a");
    expect(cert.ca).toBe(false);
    expect(cert.publicKey.asymmetricKeyType).toBe("ec");
    expect(cert.verify(cert.publicKey)).toBe(true);
    const years = (Date.parse(cert.validTo) - Date.now()) / (365.25 * 24 * 3600 * 1000);
    expect(years).toBeGreaterThan(19.9);
    expect(years).toBeLessThan(20.1);
    expect(Date.parse(cert.validFrom)).toBeLessThan(Date.now());
  });

  test("a common name with commas and '=' is kept as one CN", async () => {
    const m = await loadOrCreateTlsCertificate(join(root, "odd"), 'p2prc, node="x"=1');
    // One CN holding the whole text (node:crypto escapes it when printing).
    expect(new X509Certificate(m.certPem).subject).toBe('CN=p2prc\\, node=\\"x\\"=1');
  });

  test("a key without a certificate gets a certificate for that key", async () => {
    const d = join(root, "half");
    const first = await loadOrCreateTlsCertificate(d, "half");
    rmSync(join(d, "tls.crt"));
    const second = await loadOrCreateTlsCertificate(d, "half");
    expect(second.keyPem).toBe(first.keyPem);
    expect(
      new X509Certificate(second.certPem).checkPrivateKey(
        (await import("node:crypto")).createPrivateKey(second.keyPem),
      ),
    ).toBe(true);
  });

  test("corrupt or mismatched files throw E_IDENTITY naming the file", async () => {
    const expectIdentityError = async (d: string, file: string) => {
      const err = await loadOrCreateTlsCertificate(d, "x").catch((e: unknown) => e);
      expect(isP2prcError(err, "E_IDENTITY")).toBe(true);
      expect((err as Error).message).toContain(join(d, file));
      expect((err as Error).message).not.toContain("\n");
    };
    const badCert = join(root, "bad-cert");
    mkdirSync(badCert);
    writeFileSync(join(badCert, "tls.key"), mine.keyPem);
    writeFileSync(join(badCert, "tls.crt"), "not a certificate");
    await expectIdentityError(badCert, "tls.crt");

    const badKey = join(root, "bad-key");
    mkdirSync(badKey);
    writeFileSync(join(badKey, "tls.key"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    writeFileSync(join(badKey, "tls.crt"), mine.certPem);
    await expectIdentityError(badKey, "tls.key");

    const keyOnlyBad = join(root, "key-only-bad");
    mkdirSync(keyOnlyBad);
    writeFileSync(join(keyOnlyBad, "tls.key"), "garbage");
    await expectIdentityError(keyOnlyBad, "tls.key");

    const mismatch = join(root, "mismatch");
    mkdirSync(mismatch);
    writeFileSync(join(mismatch, "tls.key"), other.keyPem);
    writeFileSync(join(mismatch, "tls.crt"), mine.certPem);
    await expectIdentityError(mismatch, "tls.crt");

    const certOnly = join(root, "cert-only");
    mkdirSync(certOnly);
    writeFileSync(join(certOnly, "tls.crt"), mine.certPem);
    await expectIdentityError(certOnly, "tls.crt");

    // a key that cannot be read whoever runs this (root reads any file, so a mode-000 file proves
    // nothing under `make test`): a directory in its place
    const keyIsDir = join(root, "key-is-dir");
    mkdirSync(join(keyIsDir, "tls.key"), { recursive: true });
    writeFileSync(join(keyIsDir, "tls.crt"), mine.certPem);
    await expectIdentityError(keyIsDir, "tls.key");
    const certIsDir = join(root, "cert-is-dir");
    mkdirSync(join(certIsDir, "tls.crt"), { recursive: true });
    writeFileSync(join(certIsDir, "tls.key"), mine.keyPem);
    await expectIdentityError(certIsDir, "tls.crt");

    if (process.getuid?.() !== 0) {
      const unreadable = join(root, "unreadable");
      mkdirSync(unreadable);
      writeFileSync(join(unreadable, "tls.key"), mine.keyPem, { mode: 0o000 });
      chmodSync(join(unreadable, "tls.key"), 0o000);
      await expectIdentityError(unreadable, "tls.key");
    }
  });
});

describe("certSha256", () => {
  test("matches node:crypto's fingerprint256", () => {
    const expected = new X509Certificate(mine.certPem).fingerprint256.replaceAll(":", "").toLowerCase();
    expect(certSha256(mine.certPem)).toBe(expected);
    expect(mine.sha256).toBe(expected);
  });

  test("throws for text that is not a PEM certificate", () => {
    expect(() => certSha256("hello")).toThrow("not a PEM certificate");
  });
});

describe("pinnedTls", () => {
  test("a fetch pinned to the served certificate succeeds", async () => {
    const res = await fetch(url, { tls: pinnedTls(mine.certPem) });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("hello over tls");
  });

  test("a fetch pinned to another certificate fails", async () => {
    const err = await fetchError(url, { tls: pinnedTls(other.certPem) });
    expect(err).toBeInstanceOf(Error);
  });

  test("a fetch with no tls option fails (self-signed)", async () => {
    const err = await fetchError(url);
    expect(err).toBeInstanceOf(Error);
  });

  test("pins the same way in a Bun.FetchSession (which keeps the connection alive)", async () => {
    const session = new Bun.FetchSession({ tls: pinnedTls(mine.certPem) });
    const wrong = new Bun.FetchSession({ tls: pinnedTls(other.certPem) });
    try {
      const res = await session.fetch(url);
      expect(await res.text()).toBe("hello over tls");
      expect(await wrong.fetch(url).catch((e: unknown) => e)).toBeInstanceOf(Error);
    } finally {
      session.close();
      wrong.close();
    }
  });

  test("host names are not checked: localhost and 127.0.0.1 both work", async () => {
    const res = await fetch(`https://localhost:${server.port}/`, { tls: pinnedTls(mine.certPem) });
    expect(res.status).toBe(200);
    await res.text();
  });
});

describe("probeCertificate", () => {
  test("returns the certificate a TLS server serves", async () => {
    const probed = await probeCertificate("127.0.0.1", server.port!, 2000);
    expect(probed.tls).toBe(true);
    if (!probed.tls) return;
    expect(certSha256(probed.certPem)).toBe(mine.sha256);
    const res = await fetch(url, { tls: pinnedTls(probed.certPem) });
    expect(res.status).toBe(200);
    await res.text();
  });

  test("works with a host name (SNI)", async () => {
    const probed = await probeCertificate("localhost", server.port!, 2000);
    expect(probed.tls && certSha256(probed.certPem)).toBe(mine.sha256);
  });

  test("returns { tls: false } for a plain HTTP server", async () => {
    const plain = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: ok });
    try {
      expect(await probeCertificate("127.0.0.1", plain.port!, 2000)).toEqual({ tls: false });
    } finally {
      plain.stop(true);
    }
  });

  test("throws E_NODE_UNREACHABLE for a closed port", async () => {
    const port = await closedPort();
    const err = await probeCertificate("127.0.0.1", port, 2000).catch((e: unknown) => e);
    expect(isP2prcError(err, "E_NODE_UNREACHABLE")).toBe(true);
    expect((err as { retryable: boolean }).retryable).toBe(true);
  });

  test("throws E_NODE_UNREACHABLE when the server never answers the handshake", async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const started = Date.now();
      const err = await probeCertificate("127.0.0.1", port, 150).catch((e: unknown) => e);
      expect(isP2prcError(err, "E_NODE_UNREACHABLE")).toBe(true);
      expect((err as Error).message).toContain("150 ms");
      expect(Date.now() - started).toBeLessThan(1500);
    } finally {
      silent.close();
    }
  });
});
