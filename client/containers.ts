import { randomUUID } from "node:crypto";
import { formatAddress, nodeOfUrl, nodeUrl, P2prcError, shellQuote } from "../core/index.ts";
import type { PeerView } from "../p2p/index.ts";
import type { ClientStore, TrackedContainer } from "../store/index.ts";
import { type CreateContainerBody, connect, type NodeClient, type PeerDeps } from "./node-client.ts";
import { type DeadNode, type NodeNeeds, type NodeTarget, resolveNode } from "./resolve.ts";

/** What the client calls need; built by the composition root. */
export interface ClientDeps extends PeerDeps {
  /** Tracked containers, groups and batches: the slice of the store the client owns. */
  tracking: ClientStore;
  /** The current IP table. */
  views: () => PeerView[];
  /** The nodes the table holds as dead (tombstones): reported as dead, not as unknown. */
  dead?: () => DeadNode[];
  /**
   * The ssh command for a container's published ssh port on node `nodeId` when the node's own one does
   * not work from here (a relayed node: an ssh `ProxyCommand` of p2prc); undefined: the node's own.
   */
  sshCommand?: ((nodeId: string, port: number) => string | undefined) | undefined;
}

/** What `--exec-container` prints (`--json`). */
export interface StartedContainer {
  id: string;
  node: { id: string; name: string | undefined; url: string };
  image: string;
  ports: { internal: number; external: number }[];
  ssh?: { port: number; user: string; command: string } | undefined;
  expiresAt: string;
}

/** A node's address as a user types it (`host:port`), from its URL. */
export function nodeAddress(url: string): string {
  return formatAddress(nodeOfUrl(url).node.address);
}

/**
 * The tracked container a user means: its id, a unique id prefix (6+), or its name as given to
 * `--touch --name` (the node keeps it as `p2prc-<name>`) or as the node reports it.
 */
export function findTracked(all: TrackedContainer[], ref: string): TrackedContainer[] {
  const exact = all.filter((t) => t.id === ref || t.name === ref || t.name === `p2prc-${ref}`);
  if (exact.length > 0) return exact;
  return ref.length >= 6 && /^[0-9a-f]+$/.test(ref) ? all.filter((t) => t.id.startsWith(ref)) : [];
}

export async function identify(
  deps: ClientDeps,
  ref: string,
  needs: NodeNeeds = {},
): Promise<{ target: NodeTarget; client: NodeClient; id: string }> {
  const target = resolveNode(ref, deps.views(), needs, deps.dead?.());
  // A host:port not in the table: the transport's TLS probe proves whose node it is (no request of its
  // own: --touch was 1.07× of `docker run -d` with a /v1/health round trip for the id); over plain HTTP
  // the health answer names it. Then every request is bound to that id.
  const address = nodeOfUrl(target.url).node.address;
  const id =
    target.id ??
    (await deps.transport?.identify?.(address).catch(() => undefined)) ?? // unreachable: health says so
    (await connect(deps, target).health()).nodeId;
  // and the transport has found out whether it serves TLS: the URL says so from now on (--tc, messages)
  if (!target.id && deps.transport?.servesTls?.(address)) target.url = nodeUrl(address, true);
  const client = connect(deps, { url: target.url, id });
  return { target, client, id };
}

/** What the client adds to a create, beyond the body it sends. */
export interface StartContainerOptions {
  /** The private key to log in with, when ssh would not try it by itself: the ssh command gets `-i <it>`. */
  identityFile?: string;
}

/** The node's `ssh -p PORT root@HOST`, with `-i <key>` when the key is not one ssh tries by itself. */
export function sshWithIdentity(command: string, identityFile: string | undefined): string {
  if (!identityFile || !command.startsWith("ssh ")) return command;
  return `ssh -i ${shellQuote(identityFile)} ${command.slice(4)}`;
}

/** Creates a container on a node and tracks it. Nothing is tracked when the node refuses. */
export async function startContainer(
  deps: ClientDeps,
  nodeRef: string,
  body: CreateContainerBody,
  o: StartContainerOptions = {},
): Promise<StartedContainer> {
  const { target, client, id: nodeId } = await identify(deps, nodeRef, { gpu: body.gpu === true });
  const reply = await client.createContainer(body);
  // a relayed node's ssh goes through `p2prc proxy` (deps.sshCommand); either way with the key when needed
  const via = reply.ssh && deps.sshCommand?.(nodeId, reply.ssh.port);
  const created = reply.ssh
    ? { ...reply, ssh: { ...reply.ssh, command: sshWithIdentity(via || reply.ssh.command, o.identityFile) } }
    : reply;
  deps.tracking.track({
    id: created.id,
    nodeId,
    nodeUrl: target.url,
    name: created.name,
    image: created.image,
    ports: created.ports,
    ssh: created.ssh,
    createdAt: deps.clock.now(),
  });
  return {
    id: created.id,
    node: { id: nodeId, name: target.name, url: target.url },
    image: created.image,
    ports: created.ports,
    ssh: created.ssh,
    expiresAt: created.expiresAt,
  };
}

/** What `removeContainer` did: removed it, or found it already gone (a tracked one: no longer tracked). */
export interface RemovedContainer {
  id: string;
  node: string;
  alreadyGone: boolean;
}

/**
 * Removes a container from its node and stops tracking it. A tracked container the node no longer has
 * is forgotten (`alreadyGone`); one that is neither tracked nor on the node (a typo, another member's)
 * is an error, never reported as removed.
 */
export async function removeContainer(
  deps: ClientDeps,
  nodeRef: string,
  containerId: string,
): Promise<RemovedContainer> {
  const { client, tracked, where } = await locate(deps, nodeRef, containerId);
  const target = tracked?.id ?? containerId;
  let alreadyGone = false;
  try {
    await client.removeContainer(target);
  } catch (err) {
    if (!(err instanceof P2prcError && err.code === "E_NOT_FOUND" && tracked)) throw err;
    alreadyGone = true;
  }
  if (tracked) deps.tracking.untrack(tracked.id);
  return { id: target, node: where, alreadyGone };
}

/** A container found: the client of its node, what is tracked of it, and the node as a user types it. */
export interface Located {
  client: NodeClient;
  tracked: TrackedContainer | undefined;
  /** The container's id (tracked) or the reference as given. */
  id: string;
  where: string;
}

/**
 * The node of a container: the one named (`nodeRef`: id, name, host:port), else the one `--tc` tracks it
 * on. Naming a node other than the tracked one is refused, so that a 404 from the wrong node never makes
 * the client forget a container that still runs elsewhere.
 */
export async function locate(
  deps: ClientDeps,
  nodeRef: string | undefined,
  containerRef: string,
): Promise<Located> {
  const matches = findTracked(deps.tracking.tracked(), containerRef);
  if (matches.length > 1 && !nodeRef) {
    throw new P2prcError(
      "E_INVALID",
      `container ${containerRef} is ambiguous: name its node or a longer id`,
      {
        field: "id",
      },
    );
  }
  const named = nodeRef ? await identify(deps, nodeRef) : undefined;
  const tracked = named ? matches.find((t) => t.nodeId === named.id) : matches[0];
  if (named) {
    const elsewhere = matches.find((t) => t.nodeId !== named.id);
    if (!tracked && elsewhere) {
      const at = nodeAddress(elsewhere.nodeUrl);
      throw new P2prcError("E_INVALID", `container ${containerRef} is on ${at}, not ${nodeRef}`, {
        field: "node",
        hint: `name its node ${at} (or leave the node out: --tc knows it)`,
      });
    }
    return {
      client: named.client,
      tracked,
      id: tracked?.id ?? containerRef,
      where: named.target.name ?? formatAddress(nodeOfUrl(named.target.url).node.address),
    };
  }
  if (!tracked) {
    throw new P2prcError("E_NOT_FOUND", `container ${containerRef} is not tracked here: name its node`, {
      field: "node",
      hint: "give the node first (a node id, name from --ls, or host:port); --tc lists tracked containers",
    });
  }
  const client = connect(deps, { url: tracked.nodeUrl, id: tracked.nodeId });
  return { client, tracked, id: tracked.id, where: nodeAddress(tracked.nodeUrl) };
}

export type TrackedState = "running" | "exited" | "created" | "gone" | "unreachable" | string;

/** `--tc`: the tracked containers, each checked against its node. */
export async function trackedContainers(
  deps: ClientDeps,
): Promise<(TrackedContainer & { state: TrackedState })[]> {
  const all = deps.tracking.tracked();
  return Promise.all(
    all.map(async (t) => {
      try {
        const c = await connect(deps, { url: t.nodeUrl, id: t.nodeId }, 5000).getContainer(t.id);
        return { ...t, state: c.state };
      } catch (err) {
        if (err instanceof P2prcError && err.code === "E_NOT_FOUND") return { ...t, state: "gone" };
        return { ...t, state: "unreachable" };
      }
    }),
  );
}

/** Specs of a node. */
export async function getSpecs(deps: ClientDeps, nodeRef: string): Promise<Record<string, unknown>> {
  return (await identify(deps, nodeRef)).client.specs();
}

/** Images a node offers. */
export async function viewImages(deps: ClientDeps, nodeRef: string) {
  return (await identify(deps, nodeRef)).client.images();
}

// ---- groups (P2PRC's) ----------------------------------------------------------------------------

export interface GroupView {
  id: string;
  createdAt: string;
  containers: TrackedContainer[];
}

function groupView(deps: ClientDeps, id: string): GroupView {
  const g = deps.tracking.groups().find((x) => x.id === id);
  if (!g) throw new P2prcError("E_NOT_FOUND", `no group ${id}`, { field: "group" });
  const tracked = new Map(deps.tracking.tracked().map((t) => [t.id, t]));
  return {
    id: g.id,
    createdAt: new Date(g.createdAt).toISOString(),
    containers: g.members.flatMap((m) => {
      const t = tracked.get(m);
      return t ? [t] : [];
    }),
  };
}

export function createGroup(deps: ClientDeps): GroupView {
  const id = `grp${randomUUID()}`;
  deps.tracking.createGroup(id, deps.clock.now());
  return groupView(deps, id);
}

function trackedId(deps: ClientDeps, ref: string): string {
  const all = deps.tracking.tracked();
  const matches = findTracked(all, ref);
  if (matches.length !== 1) {
    throw new P2prcError(
      "E_NOT_FOUND",
      `no tracked container ${ref}${matches.length > 1 ? " (ambiguous)" : ""}`,
      { field: "id" },
    );
  }
  return (matches[0] as TrackedContainer).id;
}

export function addToGroup(deps: ClientDeps, groupId: string, containerRef: string): GroupView {
  groupView(deps, groupId);
  deps.tracking.addToGroup(groupId, trackedId(deps, containerRef));
  return groupView(deps, groupId);
}

export function removeFromGroup(deps: ClientDeps, groupId: string, containerRef: string): GroupView {
  groupView(deps, groupId);
  deps.tracking.removeFromGroup(groupId, trackedId(deps, containerRef));
  return groupView(deps, groupId);
}

export function removeGroup(deps: ClientDeps, groupId: string): void {
  if (!deps.tracking.removeGroup(groupId))
    throw new P2prcError("E_NOT_FOUND", `no group ${groupId}`, { field: "group" });
}

export function showGroup(deps: ClientDeps, groupId: string): GroupView {
  return groupView(deps, groupId);
}

export function listGroups(deps: ClientDeps): GroupView[] {
  return deps.tracking.groups().map((g) => groupView(deps, g.id));
}
