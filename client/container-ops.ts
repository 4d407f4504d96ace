import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, posix } from "node:path";
import { createTar, parseTar } from "nanotar";
import { FrameDemuxer, nodeUrl, P2prcError } from "../core/index.ts";
import type { ContainerView } from "../server/index.ts";
import type { TrackedContainer } from "../store/index.ts";
import { safeJoin } from "./batch/safe-join.ts";
import { type ClientDeps, identify, locate, nodeAddress } from "./containers.ts";
import { connect, type ExecReply } from "./node-client.ts";

/** A container as its node reports it (`ps`, lease, stop, start). */
export type ContainerStatus = ContainerView;

/** Which container: on a named node, or (node left out) where `--tc` tracks it. */
export interface ContainerRef {
  node?: string | undefined;
  id: string;
}

/** `logs`: the container's output as a stream; with `follow` it stays open until `signal` aborts. */
export async function containerLogs(
  deps: ClientDeps,
  ref: ContainerRef,
  opts: { follow?: boolean; tail?: number; since?: string; signal?: AbortSignal } = {},
): Promise<ReadableStream<Uint8Array>> {
  const { client, id } = await locate(deps, ref.node, ref.id);
  return client.logs(id, opts);
}

/** `exec`: runs a command in a running container and returns its exit code and output. */
export async function execInContainer(
  deps: ClientDeps,
  ref: ContainerRef,
  command: string[],
  opts: { env?: Record<string, string>; workingDir?: string; timeoutSeconds?: number } = {},
): Promise<ExecReply> {
  const { client, id } = await locate(deps, ref.node, ref.id);
  return client.exec(id, command, opts);
}

/**
 * A container as its node reports it (its published ports and ssh among it), with its node (`host:port`)
 * and the tracked record when there is one. The node answers only for a container the caller may manage.
 */
export async function inspectContainer(
  deps: ClientDeps,
  ref: ContainerRef,
): Promise<{ view: ContainerStatus; node: string; nodeUrl: string; tracked: TrackedContainer | undefined }> {
  const { client, id, tracked, where } = await locate(deps, ref.node, ref.id);
  const view = await client.getContainer(id);
  const nodeUrl = tracked?.nodeUrl ?? nodeUrlOf(client);
  return { view, node: tracked ? nodeAddress(tracked.nodeUrl) : where, nodeUrl, tracked };
}

/** A NodeClient's node as a URL. */
function nodeUrlOf(client: { node: { address: { host: string; port: number }; tls?: boolean | undefined } }) {
  return nodeUrl(client.node.address, client.node.tls !== false);
}

/** What an interactive exec (`exec -i/-t`) is given and where its output goes. */
export interface InteractiveExec {
  /** A terminal: output comes raw (stdout and stderr are one) and the size can change. */
  tty: boolean;
  env?: Record<string, string>;
  workingDir?: string;
  /** The terminal's size at the start. */
  cols?: number;
  rows?: number;
  /** The command's stdin (the user's keys, or a pipe); its end closes the command's stdin. */
  stdin: ReadableStream<Uint8Array>;
  /** Output as it comes: stream 1 stdout, 2 stderr (with a TTY everything is 1). */
  output: (stream: 1 | 2, data: Uint8Array) => void;
  /** Registers a listener for size changes of the terminal; returns its removal. */
  onResize?: (listener: (cols: number, rows: number) => void) => () => void;
  signal?: AbortSignal;
}

/**
 * `exec -i/-t`: runs a command with its stdin attached (and a terminal with `tty`) in a running container,
 * streaming both ways through the node's signed session (and a relay, for a relayed node); resolves with
 * the command's exit code.
 */
export async function execInteractive(
  deps: ClientDeps,
  ref: ContainerRef,
  command: string[],
  o: InteractiveExec,
) {
  const { client, id } = await locate(deps, ref.node, ref.id);
  const opened = await client.openExec(id, {
    command,
    tty: o.tty,
    ...(o.env ? { env: o.env } : {}),
    ...(o.workingDir ? { workingDir: o.workingDir } : {}),
    ...(o.tty && o.cols && o.rows ? { cols: o.cols, rows: o.rows } : {}),
  });
  const stop = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
  const unlisten = o.onResize?.((cols, rows) => {
    client.resizeExec(opened.session, cols, rows).catch(() => undefined);
  });
  try {
    const output = await client.attachExec(opened.session, opened.token, o.stdin, signal);
    const demux = o.tty ? undefined : new FrameDemuxer();
    for await (const chunk of output) {
      if (!demux) o.output(1, chunk);
      else for (const p of demux.push(chunk)) o.output(p.stream === 2 ? 2 : 1, p.data);
    }
  } finally {
    unlisten?.();
    stop.abort(); // the command ended: stop sending the user's input
  }
  // the engine may say "running" for a moment after the output ended
  for (let i = 0; i < 50; i++) {
    const st = await client.execStatus(opened.session);
    if (st.exitCode !== null) return st.exitCode;
    await Bun.sleep(40);
  }
  throw new P2prcError("E_NODE_UNREACHABLE", "exec: the output ended but the node reports no exit code", {
    retryable: true,
  });
}

/** A container in `ps`: as its node reports it, and the node (`host:port`). */
export type ListedContainer = ContainerView & { node: string };

/**
 * `ps [<node>]`: the caller's containers on a node (its admin sees every one); without a node, on each
 * node `--tc` tracks a container on (a node that cannot be reached is an error).
 */
export async function listContainers(deps: ClientDeps, nodeRef?: string): Promise<ListedContainer[]> {
  if (nodeRef) {
    const { client, target } = await identify(deps, nodeRef);
    const where = nodeAddress(target.url);
    return (await client.listContainers()).containers.map((c) => ({ ...c, node: where }));
  }
  const nodes = new Map(deps.tracking.tracked().map((t) => [t.nodeId, t.nodeUrl]));
  const lists = await Promise.all(
    [...nodes].map(async ([id, url]) => {
      const listed = await connect(deps, { url, id }).listContainers();
      return listed.containers.map((c) => ({ ...c, node: nodeAddress(url) }));
    }),
  );
  return lists.flat();
}

/** `lease`: the container's lease now ends `ttlSeconds` from now (at most the node's maxTtlSeconds). */
export async function renewLease(deps: ClientDeps, ref: ContainerRef, ttlSeconds: number) {
  const { client, id } = await locate(deps, ref.node, ref.id);
  return client.renewLease(id, ttlSeconds);
}

/** `stop`: stops the container without removing it (lease, files and tracking stay). */
export async function stopContainer(deps: ClientDeps, ref: ContainerRef, timeoutSeconds?: number) {
  const { client, id } = await locate(deps, ref.node, ref.id);
  return client.stopContainer(id, timeoutSeconds);
}

/** `start`: starts a stopped container again; its published ports may have changed (see the answer). */
export async function resumeContainer(deps: ClientDeps, ref: ContainerRef) {
  const { client, id, tracked } = await locate(deps, ref.node, ref.id);
  const view = await client.startContainer(id);
  if (tracked) deps.tracking.track({ ...tracked, ports: view.ports, ssh: view.ssh });
  return view;
}

type TarInput = Parameters<typeof createTar>[0][number];

/** A local file or directory as tar entries named under `name` (regular files and directories only). */
function tarEntries(local: string, name: string, out: TarInput[]): void {
  const st = lstatSync(local);
  const mode = (st.mode & 0o7777).toString(8);
  if (st.isDirectory()) {
    out.push({ name: `${name}/`, attrs: { mode, uid: 0, gid: 0 } });
    for (const child of readdirSync(local).sort()) tarEntries(join(local, child), `${name}/${child}`, out);
  } else if (st.isFile()) {
    out.push({ name, data: readFileSync(local), attrs: { mode, uid: 0, gid: 0 } });
  } else {
    throw new P2prcError("E_INVALID", `cp: ${local} is not a regular file or a directory`, {
      field: "source",
    });
  }
}

/**
 * `cp <local> [node:]id:/path`: copies a local file or directory into the container. `path` is the copy's
 * own name; a path ending in `/` is a directory (that exists) the copy goes into under its local name.
 */
export async function copyToContainer(
  deps: ClientDeps,
  ref: ContainerRef,
  local: string,
  path: string,
): Promise<{ path: string; bytes: number }> {
  if (!existsSync(local)) throw new P2prcError("E_INVALID", `cp: no file ${local}`, { field: "source" });
  const into = path.endsWith("/") ? path : posix.dirname(path);
  const name = path.endsWith("/") ? basename(local) : posix.basename(path);
  const entries: TarInput[] = [];
  tarEntries(local, name, entries);
  const tar = createTar(entries);
  const { client, id } = await locate(deps, ref.node, ref.id);
  await client.putFiles(id, into, tar);
  return { path: posix.join(into, name), bytes: tar.length };
}

/**
 * `cp [node:]id:/path <local>`: copies a file or directory out of the container. An existing local
 * directory receives it under its own name; any other `local` is the copy's name.
 */
export async function copyFromContainer(
  deps: ClientDeps,
  ref: ContainerRef,
  path: string,
  local: string,
): Promise<{ files: string[] }> {
  const { client, id } = await locate(deps, ref.node, ref.id);
  const tar = await client.getFiles(id, path);
  const intoDir = existsSync(local) && statSync(local).isDirectory();
  const files: string[] = [];
  for (const entry of parseTar(tar.slice())) {
    // the archive names everything under the basename of `path`; strip it unless copying into a dir
    const rel = intoDir ? entry.name : entry.name.split("/").slice(1).join("/");
    const target = rel === "" ? local : safeJoin(local, rel);
    if (!target) continue;
    if (entry.type === "directory") {
      mkdirSync(target, { recursive: true });
    } else if (entry.type === "file" && entry.data) {
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, entry.data);
      files.push(target);
    }
  }
  return { files };
}
