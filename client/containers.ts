import { randomUUID } from "node:crypto";
import { P2prcError, shellQuote } from "../core/index.ts";
import type { PeerView } from "../p2p/index.ts";
import type { ClientStore, TrackedContainer } from "../store/index.ts";
import { type CreateContainerBody, connect, type NodeClient, type PeerDeps } from "./node-client.ts";
import { type NodeTarget, resolveNode } from "./resolve.ts";

/** What the client calls need; built by the composition root. */
export interface ClientDeps extends PeerDeps {
  /** Tracked containers, groups and batches: the slice of the store the client owns. */
  tracking: ClientStore;
  /** The current IP table. */
  views: () => PeerView[];
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

async function identify(
  deps: ClientDeps,
  ref: string,
): Promise<{ target: NodeTarget; client: NodeClient; id: string }> {
  const target = resolveNode(ref, deps.views());
  // a host:port not in the table: its health answer names the node, then every request is bound to it
  const id = target.id ?? (await connect(deps, target).health()).nodeId;
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
  const { target, client, id: nodeId } = await identify(deps, nodeRef);
  const reply = await client.createContainer(body);
  const created = reply.ssh
    ? { ...reply, ssh: { ...reply.ssh, command: sshWithIdentity(reply.ssh.command, o.identityFile) } }
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

/** Removes a container from its node and stops tracking it. A container already gone is success. */
export async function removeContainer(deps: ClientDeps, nodeRef: string, containerId: string): Promise<void> {
  const tracked = deps.tracking
    .tracked()
    .find(
      (t) =>
        t.id === containerId ||
        t.name === containerId ||
        (containerId.length >= 6 && t.id.startsWith(containerId)),
    );
  const named = nodeRef ? await identify(deps, nodeRef) : undefined;
  const url = named?.target.url ?? tracked?.nodeUrl;
  if (url === undefined) {
    throw new P2prcError("E_NOT_FOUND", `container ${containerId} is not tracked here: name its node`, {
      field: "node",
      hint: `p2prc --rm <node> --id ${containerId}`,
    });
  }
  const client = named?.client ?? connect(deps, { url, id: tracked?.nodeId });
  if (tracked && url !== tracked.nodeUrl) {
    // a 404 from the wrong node must not make us forget a container that still runs elsewhere
    throw new P2prcError("E_INVALID", `container ${containerId} is on ${tracked.nodeUrl}, not ${url}`, {
      field: "node",
      hint: `p2prc --rm ${tracked.nodeUrl.replace(/^http:\/\//, "")} --id ${containerId}`,
    });
  }
  try {
    await client.removeContainer(tracked?.id ?? containerId);
  } catch (err) {
    if (!(err instanceof P2prcError && err.code === "E_NOT_FOUND")) throw err;
  }
  if (tracked) deps.tracking.untrack(tracked.id);
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
  const matches = all.filter(
    (t) => t.id === ref || t.name === ref || (ref.length >= 6 && t.id.startsWith(ref)),
  );
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
