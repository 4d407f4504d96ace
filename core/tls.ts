import { chmodSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatAddress } from "./address.ts";
import { nodeCrypto } from "./crypto.ts";
import { P2prcError } from "./errors.ts";

// node:crypto, node:tls and @peculiar/x509 are loaded on first use: start-up of `--vc` need not pay for them
// (@peculiar/x509 alone costs about 150 ms, and is needed only the one time the certificate is created).

/**
 * This node's TLS certificate: self-signed, trusted by peers because its fingerprint is pinned (as in
 * Syncthing), never because of a CA or a host name.
 */
export interface TlsMaterial {
  /** The certificate, PEM (serve it with Bun.serve `tls.cert`; peers pin it with `pinnedTls`). */
  certPem: string;
  /** The private key, PKCS#8 PEM (ECDSA P-256 for certificates p2prc created). */
  keyPem: string;
  /** SHA-256 of the certificate's DER, 64 lowercase hex characters: the fingerprint peers pin. */
  sha256: string;
}

const CERT_FILE = "tls.crt";
const KEY_FILE = "tls.key";
const VALIDITY_YEARS = 20;
/** notBefore lies this far in the past, so that a peer whose clock is behind still accepts a new certificate. */
const BACKDATE_MS = 24 * 60 * 60 * 1000;
const EC_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING = { ...EC_P256, hash: "SHA-256" } as const;

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/;

/** The DER bytes of the first certificate in a PEM text (throws E_INVALID when there is none). */
function certDer(certPem: string): Buffer {
  const body = PEM_CERT_RE.exec(certPem)?.[1]?.replace(/\s+/g, "");
  if (!body) throw new P2prcError("E_INVALID", "not a PEM certificate");
  return Buffer.from(body, "base64");
}

/** The first line of an error's message: P2prcError messages are one line. */
const firstLine = (err: unknown) => String((err as Error)?.message ?? err).split("\n")[0];

function derToPem(der: Uint8Array, label: string): string {
  const lines =
    Buffer.from(der)
      .toString("base64")
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** SHA-256 of a certificate's DER as 64 lowercase hex characters, no colons (throws E_INVALID for non-PEM). */
export function certSha256(certPem: string): string {
  return nodeCrypto().createHash("sha256").update(certDer(certPem)).digest("hex");
}

/**
 * The `tls` option of Bun's fetch that trusts exactly this certificate: it is the only trust anchor (`ca`
 * replaces the default roots), so any other certificate fails verification. Host names are not checked:
 * peers are reached by whatever address gossip gave, and the pin is the certificate itself.
 * Never use `rejectUnauthorized: false` for a request.
 */
export function pinnedTls(certPem: string): { ca: string; checkServerIdentity: () => undefined } {
  return { ca: certPem, checkServerIdentity: () => undefined };
}

let x509Module: Promise<typeof import("@peculiar/x509")> | undefined;

/**
 * Loads @peculiar/x509. It pulls in tsyringe, which refuses to load unless a `reflect-metadata` polyfill
 * is present, yet only calls `Reflect.getMetadata` (and kin) while @peculiar/x509's own modules are
 * evaluated, to read constructor parameter types that its classes do not have. A stand-in that knows no
 * metadata is therefore enough; it is put in place for the import only and removed after, so the global
 * Reflect is left as it was (and a real polyfill loaded later works as usual).
 */
function loadX509(): Promise<typeof import("@peculiar/x509")> {
  x509Module ??= (async () => {
    const reflect = Reflect as unknown as Record<string, unknown>;
    const shim: Record<string, () => undefined> = {
      getMetadata: () => undefined,
      getOwnMetadata: () => undefined,
      defineMetadata: () => undefined,
    };
    const added = Object.keys(shim).filter((name) => reflect[name] === undefined);
    for (const name of added) reflect[name] = shim[name];
    try {
      return await import("@peculiar/x509");
    } finally {
      for (const name of added) delete reflect[name];
    }
  })();
  x509Module.catch(() => {
    x509Module = undefined;
  });
  return x509Module;
}

/** A self-signed certificate for the key pair: CN = commonName, ~20 years, end entity (CA false). */
async function createCertificate(keys: CryptoKeyPair, commonName: string): Promise<string> {
  const x509 = await loadX509();
  const notBefore = new Date(Date.now() - BACKDATE_MS);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + VALIDITY_YEARS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    // No serialNumber: the library draws 16 random bytes (a positive integer).
    // The name as an object value: a string would be parsed (commas, quotes, backslashes, '#').
    name: new x509.Name([{ CN: [{ utf8String: commonName }] }]),
    notBefore,
    notAfter,
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      // An end-entity certificate: used as the only trust anchor it accepts itself and nothing it might sign.
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      // Not needed by pinnedTls (no host name check); lets local tools such as curl --cacert work.
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
        { type: "ip", value: "::1" },
      ]),
    ],
  });
  return cert.toString("pem");
}

/** A file's text, or undefined when it does not exist (throws E_IDENTITY when it cannot be read). */
function readIfExists(path: string, what: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new P2prcError("E_IDENTITY", `cannot read ${what} ${path}: ${firstLine(err)}`, {
      cause: err,
    });
  }
}

/**
 * Writes `text` to `path` only if no file is there, atomically: written beside it, then hard-linked into
 * place (link fails when the name exists). Returns what `path` holds afterwards: `text`, or the file a
 * concurrent process published first.
 */
function publishOnce(path: string, text: string, mode: number, what: string): string {
  const tmp = `${path}.${process.pid}.${nodeCrypto().randomBytes(4).toString("hex")}.tmp`;
  try {
    writeFileSync(tmp, text, { mode, flag: "wx" });
    chmodSync(tmp, mode); // the umask may have narrowed 0644
    linkSync(tmp, path);
    return text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      const existing = readIfExists(path, what);
      if (existing !== undefined) return existing;
    }
    throw new P2prcError("E_IDENTITY", `cannot write ${what} ${path}: ${firstLine(err)}`, {
      cause: err,
    });
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
}

/** The WebCrypto key pair of a PEM private key (ECDSA P-256 only: the kind createCertificate signs with). */
async function webCryptoKeys(keyPem: string, keyPath: string): Promise<CryptoKeyPair> {
  const c = nodeCrypto();
  const key = c.createPrivateKey(keyPem);
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new P2prcError("E_IDENTITY", `TLS key ${keyPath} is not an ECDSA P-256 key`);
  }
  const spki = c.createPublicKey(key).export({ type: "spki", format: "der" });
  const pkcs8 = key.export({ type: "pkcs8", format: "der" });
  return {
    publicKey: await crypto.subtle.importKey("spki", spki, EC_P256, true, ["verify"]),
    privateKey: await crypto.subtle.importKey("pkcs8", pkcs8, EC_P256, false, ["sign"]),
  };
}

/**
 * Loads this node's TLS certificate and key from `identityDir` (`tls.crt`, mode 0644; `tls.key`, mode
 * 0600), or creates them on first use (ECDSA P-256, self-signed, CN = commonName, valid 20 years; the
 * directory is made 0700). Later calls return the same material, so the fingerprint stays stable.
 * A key left without a certificate (a crash between the two writes) gets a new certificate for that key.
 * Files that cannot be read, are not PEM, or do not belong together throw E_IDENTITY naming the file.
 */
export async function loadOrCreateTlsCertificate(
  identityDir: string,
  commonName: string,
): Promise<TlsMaterial> {
  const keyPath = join(identityDir, KEY_FILE);
  const certPath = join(identityDir, CERT_FILE);
  mkdirSync(identityDir, { recursive: true, mode: 0o700 });

  let keyPem = readIfExists(keyPath, "TLS key");
  let certPem = readIfExists(certPath, "TLS certificate");
  if (certPem !== undefined && keyPem === undefined) {
    throw new P2prcError(
      "E_IDENTITY",
      `TLS certificate ${certPath} has no key beside it (${KEY_FILE} missing)`,
      {
        hint: `remove ${certPath} to create a new certificate`,
      },
    );
  }

  let keys: CryptoKeyPair | undefined;
  if (keyPem === undefined) {
    const fresh = (await crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as CryptoKeyPair;
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", fresh.privateKey));
    const pem = derToPem(pkcs8, "PRIVATE KEY");
    keyPem = publishOnce(keyPath, pem, 0o600, "TLS key");
    if (keyPem === pem) keys = fresh;
  }
  if (certPem === undefined) {
    try {
      keys ??= await webCryptoKeys(keyPem, keyPath);
    } catch (err) {
      if (err instanceof P2prcError) throw err;
      throw new P2prcError("E_IDENTITY", `TLS key ${keyPath} is unreadable: ${firstLine(err)}`, {
        cause: err,
      });
    }
    certPem = publishOnce(certPath, await createCertificate(keys, commonName), 0o644, "TLS certificate");
  }
  return checkPair(certPem, keyPem, certPath, keyPath);
}

/** Parses both files and checks that the key is the certificate's (throws E_IDENTITY naming the file). */
function checkPair(certPem: string, keyPem: string, certPath: string, keyPath: string): TlsMaterial {
  const c = nodeCrypto();
  let cert: import("node:crypto").X509Certificate;
  try {
    cert = new c.X509Certificate(certPem);
    certDer(certPem);
  } catch (err) {
    throw new P2prcError("E_IDENTITY", `TLS certificate ${certPath} is unreadable: ${firstLine(err)}`, {
      cause: err,
    });
  }
  let key: import("node:crypto").KeyObject;
  try {
    key = c.createPrivateKey(keyPem);
  } catch (err) {
    throw new P2prcError("E_IDENTITY", `TLS key ${keyPath} is unreadable: ${firstLine(err)}`, {
      cause: err,
    });
  }
  if (!cert.checkPrivateKey(key)) {
    throw new P2prcError("E_IDENTITY", `TLS certificate ${certPath} does not match the key ${keyPath}`);
  }
  return { certPem, keyPem, sha256: certSha256(certPem) };
}

/** TLS errors that mean the peer answered with something that is not TLS (a plain HTTP server, say). */
const NOT_TLS_RE =
  /WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|UNKNOWN_PROTOCOL|HTTP_REQUEST|RECORD_TOO_LARGE/;

/**
 * Reads the certificate a node serves, to learn whether it speaks TLS and what to pin.
 *
 * This is the one connection where the certificate is NOT verified (there is nothing to verify it against
 * yet). Nothing is sent over it but the TLS handshake, and it is closed as soon as the certificate is read.
 * The result is a claim to check, never to trust: the caller pins `certPem` (pinnedTls) for the real
 * request and accepts it only when the node's signed identity names its fingerprint (certSha256).
 *
 * Returns `{ tls: false }` when the server answers but not with TLS (a plain HTTP server). Throws
 * E_NODE_UNREACHABLE (retryable) when the connection is refused, fails, or takes over `timeoutMs`.
 */
export function probeCertificate(
  host: string,
  port: number,
  timeoutMs: number,
): Promise<{ tls: true; certPem: string } | { tls: false }> {
  const tls = require("node:tls") as typeof import("node:tls");
  const { isIP } = require("node:net") as typeof import("node:net");
  const where = formatAddress({ host, port });
  return new Promise((resolve, reject) => {
    let settled = false;
    const socket = tls.connect({
      host,
      port,
      // SNI takes host names only; an IP there is refused by some servers (and Node warns).
      ...(isIP(host) === 0 ? { servername: host } : {}),
      // Read-only probe: see above. The certificate is checked by the caller, never trusted from here.
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
    });
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      outcome();
    };
    const unreachable = (detail: string, cause?: unknown) =>
      finish(() =>
        reject(
          new P2prcError("E_NODE_UNREACHABLE", `node ${where} unreachable: ${detail}`, {
            cause,
            retryable: true,
          }),
        ),
      );
    const timer = setTimeout(() => unreachable(`no TLS handshake within ${timeoutMs} ms`), timeoutMs);
    socket.once("secureConnect", () => {
      const raw = socket.getPeerCertificate(false)?.raw;
      if (!raw || raw.length === 0) unreachable("the server sent no certificate");
      else finish(() => resolve({ tls: true, certPem: derToPem(raw, "CERTIFICATE") }));
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (NOT_TLS_RE.test(`${err.code ?? ""} ${err.message}`)) finish(() => resolve({ tls: false }));
      else unreachable(err.code ?? err.message, err);
    });
    socket.once("close", () => unreachable("connection closed during the TLS handshake"));
  });
}
