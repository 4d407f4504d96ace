import { type Clock, type Identity, type Logger, NODE_ID_RE, P2prcError, verifyJson } from "../core/index.ts";
import type { ClusterStore } from "../store/index.ts";
import {
  type ClusterDigest,
  type ClusterDocument,
  type ClusterMember,
  p2pSchemas,
  type SignedCluster,
} from "./types.ts";

/** Parses a signed cluster document and checks the host's signature and that member ids are unique. */
export function verifyCluster(input: unknown): SignedCluster | undefined {
  const parsed = p2pSchemas().SignedClusterSchema.safeParse(input);
  if (!parsed.success) return undefined;
  const { cluster, signature } = parsed.data;
  if (new Set(cluster.members.map((m) => m.id)).size !== cluster.members.length) return undefined;
  return verifyJson(cluster.host, cluster, signature) ? parsed.data : undefined;
}

/** `name` on its own, or `name@hostprefix` when two hosts use the same name. */
export function clusterLabel(c: ClusterDocument): string {
  return `${c.name}@${c.host.slice(0, 12)}`;
}

const keyOf = (host: string, name: string) => `${host}/${name}`;

/** `id` is the cluster's host or one of its members. */
const listed = (c: ClusterDocument, id: string) => c.host === id || c.members.some((m) => m.id === id);

/** What happened to a document offered to the book. */
export type ClusterAcceptResult = "newer" | "stale" | "unknown" | "invalid";

export interface ClusterBookDeps {
  /** The cluster documents hosted or joined: the slice of the store the book owns. */
  documents: ClusterStore;
  selfId: string;
  clock: Clock;
  logger: Logger;
  /** Config `trusted`: node ids this node accepts besides cluster members (its personal cluster). */
  trusted: readonly string[];
  /** Config `openNetwork`: accept any signed node. */
  openNetwork: boolean;
}

/**
 * Who may use this node: itself, its `trusted` ids, the members of every shared cluster it hosts or
 * joined (while it is a member itself), or anyone on an open network. Holds the newest validly signed
 * version of each cluster document (in the store, cached here); documents of clusters this node never
 * joined are refused, so a peer cannot make up a cluster to let itself in.
 */
export class ClusterBook {
  private docs = new Map<string, SignedCluster>();
  private roles = new Map<string, ClusterMember["role"]>();
  private readonly listeners: ((changed: SignedCluster) => void)[] = [];
  private readonly log: Logger;

  constructor(private readonly deps: ClusterBookDeps) {
    this.log = deps.logger.withTag("cluster");
    this.reload();
  }

  /** Called with every document that replaced an older version here. */
  onChange(listener: (changed: SignedCluster) => void): void {
    this.listeners.push(listener);
  }

  /**
   * Re-reads the store (another process, the CLI, may have hosted, joined or published); returns the
   * documents that are new or newer than the cached ones and tells the listeners.
   */
  reload(): SignedCluster[] {
    const next = new Map<string, SignedCluster>();
    const changed: SignedCluster[] = [];
    for (const row of this.deps.documents.list()) {
      const key = keyOf(row.host, row.name);
      const held = this.docs.get(key);
      if (held?.cluster.version === row.version) {
        next.set(key, held); // unchanged: already verified (this runs every gossip round)
        continue;
      }
      const signed = verifyCluster(JSON.parse(row.document));
      if (!signed) continue;
      next.set(key, signed);
      if (!held || held.cluster.version < signed.cluster.version) changed.push(signed);
    }
    this.docs = next;
    this.rebuild();
    for (const c of changed) for (const l of this.listeners) l(c);
    return changed;
  }

  private rebuild(): void {
    const roles = new Map<string, ClusterMember["role"]>();
    for (const { cluster } of this.active()) {
      for (const m of cluster.members) {
        if (roles.get(m.id) !== "admin") roles.set(m.id, m.role);
      }
      roles.set(cluster.host, "admin");
    }
    this.roles = roles;
  }

  /** Every document held, newest version of each. */
  list(): SignedCluster[] {
    return [...this.docs.values()];
  }

  get(host: string, name: string): SignedCluster | undefined {
    return this.docs.get(keyOf(host, name));
  }

  /** The documents that count here: this node is their host or one of their members. */
  active(): SignedCluster[] {
    return this.list().filter(({ cluster }) => listed(cluster, this.deps.selfId));
  }

  isMember(id: string): boolean {
    return (
      id === this.deps.selfId || this.deps.openNetwork || this.deps.trusted.includes(id) || this.roles.has(id)
    );
  }

  /**
   * This node, a `trusted` id, or the host or a member of a cluster this node is in: a node this node
   * vouches for (on an open network, everyone is a member, but only these are vouched for).
   */
  vouches(id: string): boolean {
    return id === this.deps.selfId || this.deps.trusted.includes(id) || this.roles.has(id);
  }

  /** The ids `vouches` is true for, this node's own aside: what a reachability check asks among. */
  vouchedIds(): string[] {
    return [...new Set([...this.deps.trusted, ...this.roles.keys()])].filter((id) => id !== this.deps.selfId);
  }

  /** This node's own key, a cluster's host, or a member with role admin: manages every container. */
  isAdmin(id: string): boolean {
    return id === this.deps.selfId || this.roles.get(id) === "admin";
  }

  /** The clusters a node is a member of (what `GET /v1/p2p/clusters` shows it). */
  visibleTo(id: string): SignedCluster[] {
    if (id === this.deps.selfId) return this.list();
    return this.active().filter(({ cluster }) => listed(cluster, id));
  }

  digest(): ClusterDigest {
    return this.list().map(({ cluster: c }) => [c.host, c.name, c.version]);
  }

  /** Documents held newer than `theirs` says (only for clusters both hold). */
  newerThan(theirs: ClusterDigest): SignedCluster[] {
    return theirs.flatMap(([host, name, version]) => {
      const held = this.get(host, name);
      return held && held.cluster.version > version ? [held] : [];
    });
  }

  /** Entries of `theirs` newer than what is held here: the sender should push those. */
  olderThan(theirs: ClusterDigest): ClusterDigest {
    return theirs.flatMap(([host, name, version]) => {
      const held = this.get(host, name);
      return held && held.cluster.version < version
        ? [[host, name, held.cluster.version] as ClusterDigest[number]]
        : [];
    });
  }

  /**
   * A document from a peer: kept only when it verifies, belongs to a cluster held here (same host and
   * name) and is newer.
   */
  accept(input: unknown): ClusterAcceptResult {
    const signed = verifyCluster(input);
    if (!signed) return "invalid";
    this.catchUp(signed.cluster.host, signed.cluster.name);
    const held = this.get(signed.cluster.host, signed.cluster.name);
    if (!held) return "unknown";
    if (held.cluster.version >= signed.cluster.version) return "stale";
    this.save(signed);
    return "newer";
  }

  /** Joins a cluster from a document (a file, or fetched from a member). This node must be in it. */
  join(input: unknown): SignedCluster {
    const signed = verifyCluster(input);
    if (!signed) {
      throw new P2prcError("E_INVALID", "cluster: not a cluster document signed by its host", {
        field: "cluster",
      });
    }
    const { cluster } = signed;
    if (!listed(cluster, this.deps.selfId)) {
      throw new P2prcError(
        "E_FORBIDDEN",
        `this node (${this.deps.selfId.slice(0, 12)}…) is not a member of cluster ${clusterLabel(cluster)}`,
        { hint: "ask the cluster's host to run: p2prc --cluster-add <your p2prc --whoami>" },
      );
    }
    this.catchUp(cluster.host, cluster.name);
    const held = this.get(cluster.host, cluster.name);
    if (held && held.cluster.version >= cluster.version) return held;
    this.save(signed);
    return signed;
  }

  /**
   * Reloads when the store holds a version the cache lacks or has older: the CLI joined or published
   * since the last round (and hands the document to its running node).
   */
  private catchUp(host: string, name: string): void {
    const stored = this.deps.documents.get(host, name);
    if (stored && stored.version > (this.get(host, name)?.cluster.version ?? 0)) this.reload();
  }

  /** Leaves a cluster: its members lose access here (unless trusted or in another cluster). */
  leave(host: string, name: string): boolean {
    const removed = this.deps.documents.remove(host, name);
    this.docs.delete(keyOf(host, name));
    this.rebuild();
    return removed;
  }

  /** Creates (or, when it exists, replaces the members of) a cluster this node hosts. */
  host(identity: Identity, name: string, members: ClusterMember[], bootstrap: string[]): SignedCluster {
    const byId = new Map<string, ClusterMember>();
    byId.set(identity.nodeId, { id: identity.nodeId, label: "host", role: "admin" });
    for (const m of members) {
      if (!NODE_ID_RE.test(m.id)) {
        throw new P2prcError("E_INVALID", `users: "${m.id.slice(0, 80)}" is not a node id (64 hex)`, {
          field: "users",
        });
      }
      if (m.id !== identity.nodeId) byId.set(m.id, m);
    }
    const held = this.get(identity.nodeId, name)?.cluster;
    return this.publish(identity, {
      name,
      host: identity.nodeId,
      members: [...byId.values()],
      bootstrap: bootstrap.length ? bootstrap : (held?.bootstrap ?? []),
      version: 0,
      issuedAt: 0,
    });
  }

  /** Adds or updates a member of a cluster this node hosts; a new version is signed. */
  addMember(identity: Identity, name: string, member: ClusterMember): SignedCluster {
    const held = this.hosted(identity, name);
    if (!NODE_ID_RE.test(member.id)) {
      throw new P2prcError(
        "E_INVALID",
        `cluster-add: "${member.id.slice(0, 80)}" is not a node id (64 hex)`,
        {
          field: "cluster-add",
        },
      );
    }
    const members = held.members.filter((m) => m.id !== member.id);
    members.push(member);
    return this.publish(identity, { ...held, members });
  }

  /** Removes a member of a cluster this node hosts; it loses access on every node with the new version. */
  removeMember(identity: Identity, name: string, id: string): SignedCluster {
    const held = this.hosted(identity, name);
    if (id === identity.nodeId) {
      throw new P2prcError("E_INVALID", "cluster-remove: the host cannot remove itself", {
        field: "cluster-remove",
      });
    }
    if (!held.members.some((m) => m.id === id)) {
      throw new P2prcError("E_NOT_FOUND", `cluster-remove: ${id.slice(0, 12)}… is not a member of ${name}`, {
        field: "cluster-remove",
      });
    }
    return this.publish(identity, { ...held, members: held.members.filter((m) => m.id !== id) });
  }

  /** The one cluster this node hosts by that name (or its only hosted cluster when no name is given). */
  hosted(identity: Identity, name: string | undefined): ClusterDocument {
    const mine = this.list().filter((s) => s.cluster.host === identity.nodeId);
    const found = name ? mine.find((s) => s.cluster.name === name) : mine.length === 1 ? mine[0] : undefined;
    if (found) return found.cluster;
    if (name) {
      throw new P2prcError("E_NOT_FOUND", `cluster: this node hosts no cluster named "${name}"`, {
        field: "cluster",
        hint: "create it with p2prc --host-cluster <name> --users <id,...>",
      });
    }
    throw new P2prcError(
      "E_INVALID",
      mine.length === 0
        ? "cluster: this node hosts no cluster"
        : `cluster: this node hosts ${mine.length} clusters; name one with --cluster`,
      { field: "cluster" },
    );
  }

  private publish(identity: Identity, draft: ClusterDocument): SignedCluster {
    const held = this.get(identity.nodeId, draft.name)?.cluster;
    const stored = this.deps.documents.get(identity.nodeId, draft.name)?.version ?? 0;
    const now = this.deps.clock.now();
    const cluster: ClusterDocument = {
      ...draft,
      version: Math.max(now, (held?.version ?? 0) + 1, stored + 1),
      issuedAt: now,
    };
    const signed = { cluster, signature: identity.signJson(cluster) };
    this.save(signed);
    return signed;
  }

  private save(signed: SignedCluster): void {
    const { cluster } = signed;
    this.deps.documents.put(
      { host: cluster.host, name: cluster.name, version: cluster.version, document: JSON.stringify(signed) },
      this.deps.clock.now(),
    );
    this.docs.set(keyOf(cluster.host, cluster.name), signed);
    this.rebuild();
    this.log.debug(
      `cluster ${clusterLabel(cluster)} version ${cluster.version}: ${cluster.members.length} members${listed(cluster, this.deps.selfId) ? "" : " (this node is no longer one of them)"}`,
    );
    for (const l of this.listeners) l(signed);
  }
}
