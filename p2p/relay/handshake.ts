// The relay's opening lines: the relay speaks first with a fresh challenge, the dialer answers with one
// signed hello, the relay answers with one verdict. One JSON object per line, before any raw byte.

import type { ErrorCode, Identity } from "../../core/index.ts";
import { NODE_ID_RE, P2prcError, verifySignature } from "../../core/index.ts";

/** Most bytes of one handshake line: a line without its newline beyond this is refused. */
export const MAX_LINE = 2048;

/** What the relay sends on accept. */
export interface RelayHello {
  v: 1;
  relay: string;
  challenge: string;
}

/** What a dialer answers: a node's control connection, a caller's stream, or a node's work connection. */
export type UnsignedHello =
  | { kind: "control"; node: string; nonce: string }
  | { kind: "stream"; node: string; target: string; port?: number | undefined }
  | { kind: "work"; node: string; token: string };
export type DialerHello = UnsignedHello & { sig: string };

/** The relay's verdict; `sig` (to a control hello) is the relay's signature over the node's nonce. */
export type Verdict = { ok: true; sig?: string } | { ok: false; code: ErrorCode; message: string };

const HEX32 = /^[0-9a-f]{32}$/;

/**
 * The text a dialer signs: bound to this relay, to its challenge for this one connection, and to what
 * is asked, so a signature cannot be replayed on another connection, relay, target or token.
 */
export function helloText(relayId: string, challenge: string, h: UnsignedHello): string {
  const what =
    h.kind === "control"
      ? h.nonce
      : h.kind === "stream"
        ? h.port === undefined
          ? h.target
          : `${h.target}\n${h.port}`
        : h.token;
  return ["p2prc-relay-v1", h.kind, relayId, challenge, h.node, what].join("\n");
}

/** The text a relay signs to prove its key to a node that opens a control connection. */
export function relayProofText(relayId: string, node: string, nonce: string): string {
  return ["p2prc-relay-v1", "relay", relayId, node, nonce].join("\n");
}

/** The dialer's hello for a relay hello, signed with `identity`. */
export function signHello(identity: Identity, relay: RelayHello, h: UnsignedHello): DialerHello {
  return { ...h, sig: identity.sign(helloText(relay.relay, relay.challenge, h)) } as DialerHello;
}

/** Parses and checks a dialer's hello against this connection's challenge; throws a P2prcError. */
export function checkHello(line: string, relayId: string, challenge: string): DialerHello {
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(line);
  } catch {
    throw new P2prcError("E_INVALID", "relay hello: not JSON");
  }
  const str = (k: string, re: RegExp) => {
    const v = h?.[k];
    if (typeof v !== "string" || !re.test(v)) throw new P2prcError("E_INVALID", `relay hello: bad ${k}`);
    return v;
  };
  const kind = h?.kind;
  const node = str("node", NODE_ID_RE);
  const sig = str("sig", /^[A-Za-z0-9+/]{86}==$/);
  let hello: DialerHello;
  if (kind === "control") hello = { kind, node, nonce: str("nonce", HEX32), sig };
  else if (kind === "stream") {
    const port = h.port;
    if (port !== undefined && !(Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535))
      throw new P2prcError("E_INVALID", "relay hello: bad port");
    hello = { kind, node, target: str("target", NODE_ID_RE), sig };
    if (port !== undefined) hello.port = port as number;
  } else if (kind === "work") hello = { kind, node, token: str("token", HEX32), sig };
  else throw new P2prcError("E_INVALID", "relay hello: unknown kind");
  if (!verifySignature(node, helloText(relayId, challenge, hello), sig))
    throw new P2prcError("E_UNAUTHORIZED", "relay hello: bad signature");
  return hello;
}

/** Parses the relay's hello (the first line a dialer reads). */
export function parseRelayHello(line: string): RelayHello {
  let h: Partial<RelayHello>;
  try {
    h = JSON.parse(line);
  } catch {
    throw new P2prcError("E_NODE_UNREACHABLE", "relay: the peer is not a p2prc relay");
  }
  if (h?.v !== 1 || !NODE_ID_RE.test(String(h.relay)) || !HEX32.test(String(h.challenge)))
    throw new P2prcError("E_NODE_UNREACHABLE", "relay: the peer is not a p2prc relay (bad hello)");
  return h as RelayHello;
}

/** Parses a verdict line; a refusal becomes the relay's own error. */
export function parseVerdict(line: string): { sig?: string; pingMs?: number } {
  let v: { ok?: boolean; code?: ErrorCode; message?: string; sig?: string; pingMs?: number };
  try {
    v = JSON.parse(line);
  } catch {
    throw new P2prcError("E_NODE_UNREACHABLE", "relay: bad answer");
  }
  if (v?.ok === true) return v as { sig?: string; pingMs?: number };
  throw new P2prcError(
    v?.code ?? "E_NODE_UNREACHABLE",
    `relay refused: ${String(v?.message ?? "no reason")}`,
    {
      retryable: v?.code === "E_LIMIT" || v?.code === "E_NODE_UNREACHABLE",
    },
  );
}

/**
 * Collects bytes up to one newline. Returns the line and whatever followed it in the same chunk (the
 * first raw bytes of the stream), or undefined while the line is incomplete; throws past MAX_LINE.
 */
export class LineReader {
  private parts: Buffer[] = [];
  private size = 0;

  push(chunk: Uint8Array): { line: string; rest: Uint8Array } | undefined {
    const nl = chunk.indexOf(10);
    if (nl < 0) {
      this.size += chunk.length;
      if (this.size > MAX_LINE) throw new P2prcError("E_INVALID", "relay: handshake line too long");
      this.parts.push(Buffer.from(chunk));
      return undefined;
    }
    if (this.size + nl > MAX_LINE) throw new P2prcError("E_INVALID", "relay: handshake line too long");
    this.parts.push(Buffer.from(chunk.subarray(0, nl)));
    const line = Buffer.concat(this.parts).toString("utf8");
    this.parts = [];
    this.size = 0;
    return { line, rest: chunk.subarray(nl + 1) };
  }
}
