// The CLI side of the relay: `--mp` (P2PRC's MAPPort) and the subcommands `proxy` (ssh's
// ProxyCommand), `forward` (a loopback listener for a relayed node's port) and `mappings`.
import type { ArgsDef } from "citty";
import {
  forwardPort,
  listMappings,
  type MappingView,
  mapPort,
  proxyStdio,
  routeTo,
  unmapPort,
} from "../../abstractions/index.ts";
import { P2prcError } from "../../core/index.ts";
import { type Command, stringFlag } from "../context.ts";
import { type CliIO, toJson, usageError, writeRaw } from "../io.ts";
import type { RunOptions } from "../run.ts";
import { subcommandArgs } from "../subcommand.ts";
import { RELAY_HELP, type RelaySubcommand } from "../verbs.ts";

function port(raw: unknown, what: string, usage: string): number {
  const n = Number(raw);
  if (typeof raw !== "string" || !/^\d{1,5}$/.test(raw) || n < 1 || n > 65535)
    throw usageError(
      `${what}: expected a port from 1 to 65535${raw === undefined ? "" : `, got "${raw}"`}`,
      usage,
    );
  return n;
}

function line(m: MappingView): string {
  const what = m.container
    ? `container ${m.container} (${m.target.host}:${m.target.port})`
    : `${m.target.host}:${m.target.port}`;
  const who =
    m.access === "public"
      ? `public ${m.public?.address ?? m.public?.error ?? "(waiting for the relay)"}, and `
      : "";
  const via = m.relay
    ? `${who}members via relay ${m.relay.nodeId?.slice(0, 12) ?? ""} ${m.relay.host}:${m.relay.port}`
    : "members, once this node is relayed (it is not now)";
  return `${m.port}  → ${what}  ${via}`;
}

function printMapping(io: CliIO, m: MappingView): void {
  io.out(`mapped:  ${line(m)}`);
  io.out(`node:    ${m.node}`);
  io.out(`members: ${m.forward}`);
  if (m.public?.address) io.out(`public:  ${m.public.address}  (anyone)`);
}

/** `--mp <port>` / `--MAPPort` [--id <container>] [--ra <node>]: a port members reach through the relay. */
export const mapPortCommand: Command = async (ctx) => {
  if (ctx.flags.udp === true)
    throw new P2prcError("E_NOT_AVAILABLE", "--udp is not supported: the relay carries TCP streams only");
  const raw = stringFlag(ctx, "map-port") as string;
  const usage = "p2prc --mp <port> [--id <container>] [--ra <relay node>]";
  const p = port(raw, "--mp", usage);
  const ra = stringFlag(ctx, "remote-address");
  let relayId: string | undefined;
  if (ra !== undefined) {
    const { node } = await routeTo(ctx.node, ra);
    relayId = node.id;
  }
  const domain = stringFlag(ctx, "domain-name");
  if (domain !== undefined && !/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/i.test(domain))
    throw usageError(`--dn: expected a domain name such as app.example.org, got "${domain}"`, usage);
  const isPublic = ctx.flags.public === true || domain !== undefined;
  let m = mapPort(ctx.node, { port: p, container: stringFlag(ctx, "id"), relayId, public: isPublic, domain });
  // the running node asks its relay for a public port within a second: wait a little for the answer
  for (let i = 0; i < 30 && isPublic && m.relay && !m.public; i++) {
    await Bun.sleep(100);
    m = listMappings(ctx.node).find((x) => x.port === p) ?? m;
  }
  if (ctx.json) return ctx.io.out(toJson(m));
  printMapping(ctx.io, m);
  if (m.public?.error) throw new P2prcError("E_LIMIT", `the relay refused a public port: ${m.public.error}`);
  if (relayId && m.relay?.nodeId !== relayId)
    ctx.io.err(
      `note: the node switches to relay ${relayId.slice(0, 12)} within a second if it offers to relay`,
    );
};

const ARGS: Record<RelaySubcommand, ArgsDef> = {
  proxy: {
    node: { type: "positional", description: "node" },
    port: { type: "positional", description: "port" },
  },
  forward: {
    node: { type: "positional", description: "node" },
    port: { type: "positional", description: "port" },
    local: { type: "string", description: "Local port (default: a free one)" },
    json: { type: "boolean", description: "Machine-readable output" },
  },
  mappings: {
    verb: { type: "positional", required: false, description: "rm" },
    port: { type: "positional", required: false, description: "port" },
    json: { type: "boolean", description: "Machine-readable output" },
  },
};

/** `p2prc proxy|forward|mappings …` */
export async function runRelaySubcommand(
  name: RelaySubcommand,
  argv: string[],
  io: CliIO,
  options: RunOptions,
): Promise<number> {
  const def: ArgsDef = {
    ...ARGS[name],
    "config-dir": { type: "string", description: "Node home directory" },
  };
  const args = subcommandArgs(argv, def, RELAY_HELP[name], io);
  if (!args) return 0;
  const node = { configDir: args["config-dir"] as string | undefined, env: options.env ?? process.env };
  const usage = RELAY_HELP[name];
  if (name === "proxy") {
    if (typeof args.node !== "string") throw usageError("proxy needs <node> <port>", usage);
    await proxyStdio(node, args.node, port(args.port, "port", usage), {
      input: Bun.stdin.stream(),
      output: (chunk) => writeRaw(io, chunk, "out"),
    });
    return 0;
  }
  if (name === "forward") {
    if (typeof args.node !== "string") throw usageError("forward needs <node> <port>", usage);
    const local = args.local === undefined ? undefined : port(args.local, "--local", usage);
    await using fwd = await forwardPort(node, args.node, port(args.port, "port", usage), { port: local });
    const relay = fwd.node.relay;
    if (args.json === true)
      io.out(
        toJson({ listen: `${fwd.host}:${fwd.port}`, node: fwd.node.id, port: Number(args.port), relay }),
      );
    else
      io.out(
        `forwarding ${fwd.host}:${fwd.port} → ${fwd.node.name ?? fwd.node.id.slice(0, 12)} port ${args.port} through relay ${relay?.host}:${relay?.port} (Ctrl-C stops)`,
      );
    const stop = options.stopSignal ?? new AbortController().signal;
    if (!stop.aborted)
      await new Promise((resolve) => stop.addEventListener("abort", resolve, { once: true }));
    return 0;
  }
  if (args.verb !== undefined) {
    if (args.verb !== "rm") throw usageError(`unknown mappings verb "${args.verb}"`, usage);
    const gone = unmapPort(node, port(args.port, "port", usage));
    io.out(
      args.json === true ? toJson({ removed: gone.port }) : `removed mapping ${gone.port}; its streams close`,
    );
    return 0;
  }
  const list = listMappings(node);
  if (args.json === true) io.out(toJson(list));
  else if (list.length === 0) io.out("(no mappings)");
  else for (const m of list) io.out(line(m));
  return 0;
}
