import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Address,
  DEFAULT_PORT,
  formatAddress,
  isP2prcError,
  NODE_ID_RE,
  type NodeRef,
  P2prcError,
  parseAddress,
  tryParseAddress,
  wrapError,
} from "../core/index.ts";
import type { ClusterBook, ClusterMember, SignedCluster } from "../p2p/index.ts";
import type { Store } from "../store/index.ts";
import { openClusterBook } from "./gossip.ts";
import { init, type NodeContext, type NodeOptions } from "./node.ts";
import { localNode, nodeFetch } from "./transport.ts";

/** A cluster as the CLI shows it. */
export interface ClusterView {
  name: string;
  host: string;
  version: number;
  members: ClusterMember[];
  bootstrap: string[];
  /** This node hosts it. */
  hosting: boolean;
  /** This node is the host or a member (so the cluster's members may use it). */
  active: boolean;
  /** Where the signed document was written (hosted clusters): give it to members for `--join`. */
  file?: string;
  /** The running local node took the new version (and sent it on to its peers). */
  notified?: boolean;
}

async function withBook<T>(
  options: NodeOptions,
  fn: (book: ClusterBook, ctx: NodeContext, store: Store) => Promise<T> | T,
): Promise<T> {
  const ctx = init(options);
  const store = ctx.openStore();
  try {
    return await fn(await openClusterBook(ctx, store), ctx, store);
  } finally {
    store.close();
  }
}

function view(signed: SignedCluster, selfId: string, extra: Partial<ClusterView> = {}): ClusterView {
  const c = signed.cluster;
  return {
    name: c.name,
    host: c.host,
    version: c.version,
    members: c.members,
    bootstrap: c.bootstrap,
    hosting: c.host === selfId,
    active: c.host === selfId || c.members.some((m) => m.id === selfId),
    ...extra,
  };
}

/** `id` or `id=label` → a member. */
export function parseMember(text: string, role: string | undefined, field: string): ClusterMember {
  const [id = "", label = ""] = text.trim().split("=", 2);
  if (!NODE_ID_RE.test(id)) {
    throw new P2prcError("E_INVALID", `${field}: "${id.slice(0, 80)}" is not a node id (64 hex characters)`, {
      field,
      hint: "each member runs p2prc --whoami and sends you the id",
    });
  }
  if (label.length > 64) {
    throw new P2prcError("E_INVALID", `${field}: label longer than 64 characters`, { field });
  }
  if (role !== undefined && role !== "member" && role !== "admin") {
    throw new P2prcError("E_INVALID", `role: expected member or admin, got "${role.slice(0, 40)}"`, {
      field: "role",
    });
  }
  return { id, label, role: (role ?? "member") as ClusterMember["role"] };
}

function checkName(name: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new P2prcError(
      "E_INVALID",
      `host-cluster: "${name.slice(0, 80)}" is not a cluster name (1-64 letters, digits, '.', '_' or '-')`,
      { field: "host-cluster" },
    );
  }
  return name;
}

/** The addresses this node is reachable at, for a hosted cluster's bootstrap list. */
function ownAddresses(ctx: NodeContext, store: Store): string[] {
  const out = new Set<string>();
  // with its port spelled out: a member's node would otherwise assume DEFAULT_PORT, not this node's
  const advertised = tryParseAddress(ctx.config.advertiseAddress, ctx.config.serverPort);
  if (advertised) out.add(formatAddress(advertised));
  const row = store.peers.get(ctx.identity.nodeId);
  if (row?.record) {
    const rec = JSON.parse(row.record) as { record?: { addresses?: Address[] } };
    for (const a of rec.record?.addresses ?? []) out.add(formatAddress(a));
  }
  return [...out];
}

/** Writes a hosted cluster's signed document to `<home>/clusters/<name>.json` (members `--join` with it). */
export function writeClusterFile(ctx: NodeContext, signed: SignedCluster): string {
  const dir = join(ctx.paths.home, "clusters");
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${signed.cluster.name}.json`);
  writeFileSync(file, `${JSON.stringify(signed, null, 2)}\n`);
  return file;
}

/** Writes a hosted cluster's signed document, and tells the local node. */
async function publishLocally(ctx: NodeContext, store: Store, signed: SignedCluster): Promise<ClusterView> {
  const file = writeClusterFile(ctx, signed);
  return view(signed, ctx.identity.nodeId, { file, notified: await notifyLocalNode(ctx, store, signed) });
}

/**
 * Hands a new version to this machine's running node (if one runs), which applies it at once and
 * sends it to every peer: a removed member loses access everywhere within one round trip. When no
 * node runs, it picks the version up from the store when it starts.
 */
async function notifyLocalNode(ctx: NodeContext, store: Store, signed: SignedCluster): Promise<boolean> {
  // the running server is this node itself (the same identity): the request is bound to it
  const node = localNode(ctx, store);
  try {
    await nodeFetch(ctx, store, node, "/v1/p2p/cluster", { method: "POST", json: signed, timeoutMs: 3000 });
    return true;
  } catch {
    return false;
  }
}

/** `--host-cluster <name> --users <id,…>`: creates (or re-issues) a shared cluster this node hosts. */
export async function hostCluster(
  options: NodeOptions,
  name: string,
  users: string[],
  role?: string,
): Promise<ClusterView> {
  checkName(name);
  const members = users.filter((u) => u.trim()).map((u) => parseMember(u, role, "users"));
  return withBook(options, async (book, ctx, store) => {
    const signed = book.host(ctx.identity, name, members, ownAddresses(ctx, store));
    return publishLocally(ctx, store, signed);
  });
}

/** `--cluster-add <id[=label]> [--cluster <name>] [--role admin]`: a new version with the member. */
export async function clusterAdd(
  options: NodeOptions,
  member: string,
  cluster?: string,
  role?: string,
): Promise<ClusterView> {
  const m = parseMember(member, role, "cluster-add");
  return withBook(options, async (book, ctx, store) => {
    const held = book.hosted(ctx.identity, cluster);
    return publishLocally(ctx, store, book.addMember(ctx.identity, held.name, m));
  });
}

/** `--cluster-remove <id> [--cluster <name>]`: a new version without the member. */
export async function clusterRemove(
  options: NodeOptions,
  id: string,
  cluster?: string,
): Promise<ClusterView> {
  const m = parseMember(id, undefined, "cluster-remove");
  return withBook(options, async (book, ctx, store) => {
    const held = book.hosted(ctx.identity, cluster);
    return publishLocally(ctx, store, book.removeMember(ctx.identity, held.name, m.id));
  });
}

/**
 * `--leave-cluster <name>`: forgets a cluster this node joined; its members lose access here (a running
 * node re-reads its clusters every gossip round). The host cannot leave its own cluster.
 */
export async function leaveCluster(
  options: NodeOptions,
  name: string,
): Promise<{ name: string; host: string }> {
  return withBook(options, (book, ctx) => {
    const matches = book.list().filter((s) => s.cluster.name === name);
    if (matches.length === 0) {
      throw new P2prcError(
        "E_NOT_FOUND",
        `leave-cluster: this node holds no cluster named "${name.slice(0, 80)}"`,
        {
          field: "leave-cluster",
          hint: "see p2prc --clusters",
        },
      );
    }
    if (matches.length > 1) {
      throw new P2prcError(
        "E_INVALID",
        `leave-cluster: ${matches.length} clusters are named "${name}" (hosts ${matches.map((m) => m.cluster.host.slice(0, 12)).join(", ")})`,
        { field: "leave-cluster" },
      );
    }
    const { cluster } = matches[0] as SignedCluster;
    if (cluster.host === ctx.identity.nodeId) {
      throw new P2prcError("E_INVALID", `leave-cluster: this node hosts ${name}; it cannot leave it`, {
        field: "leave-cluster",
        hint: "remove its members with --cluster-remove instead",
      });
    }
    book.leave(cluster.host, cluster.name);
    return { name: cluster.name, host: cluster.host };
  });
}

/** `--clusters`: the cluster documents this node hosts or joined. */
export async function listClusters(options: NodeOptions): Promise<ClusterView[]> {
  return withBook(options, (book, ctx) => book.list().map((s) => view(s, ctx.identity.nodeId)));
}

/**
 * `--join <file|host:port> [--cluster <name>]`: joins from a document file, or asks a node (the host
 * or any member) for the clusters it holds that list this node. The host's signature is checked; the
 * bootstrap addresses (and the node asked) become seeds, so a running node meets the members at its
 * next round.
 */
export async function joinCluster(
  options: NodeOptions,
  source: string,
  name?: string,
): Promise<ClusterView[]> {
  return withBook(options, async (book, ctx, store) => {
    let docs: unknown[];
    let asked: Address | undefined;
    if (existsSync(source)) {
      let raw: unknown;
      try {
        raw = JSON.parse(readFileSync(source, "utf8"));
      } catch {
        throw new P2prcError("E_INVALID", `join: ${source} is not a JSON cluster document`, {
          field: "join",
        });
      }
      docs = [raw];
    } else {
      asked = parseAddress(source, "join", "a cluster document file or host:port");
      // a node not yet in the table: the transport probes whether it serves TLS, as this node should
      const node: NodeRef = { address: asked, tls: ctx.config.tls };
      let res: Response;
      try {
        res = await nodeFetch(ctx, store, node, "/v1/p2p/clusters", { method: "GET", timeoutMs: 10_000 });
      } catch (err) {
        if (isP2prcError(err, "E_FORBIDDEN")) {
          throw new P2prcError(
            "E_FORBIDDEN",
            `join: ${source} answered 403: this node is not a member of any cluster it holds`,
            { cause: err, hint: "ask the cluster's host to run: p2prc --cluster-add <your p2prc --whoami>" },
          );
        }
        throw wrapError(err, `join: ${source}`);
      }
      docs = ((await res.json()) as { clusters?: unknown[] }).clusters ?? [];
    }
    const chosen = docs.filter(
      (d) => !name || (d as { cluster?: { name?: unknown } })?.cluster?.name === name,
    );
    if (chosen.length === 0) {
      throw new P2prcError(
        "E_NOT_FOUND",
        `join: ${source} has no cluster${name ? ` named "${name}"` : ""} that lists this node`,
        { field: "join" },
      );
    }
    const joined = chosen.map((d) => book.join(d));
    const now = ctx.clock.now();
    if (asked) store.peers.addSeed(asked.host, asked.port, true, now);
    for (const s of joined) {
      for (const b of s.cluster.bootstrap) {
        const a = tryParseAddress(b, DEFAULT_PORT);
        if (a) store.peers.addSeed(a.host, a.port, true, now);
      }
    }
    return Promise.all(
      joined.map(async (s) =>
        view(s, ctx.identity.nodeId, { notified: await notifyLocalNode(ctx, store, s) }),
      ),
    );
  });
}
