import type {
  ContainerRef,
  ContainerStatus,
  ExecReply,
  InteractiveExec,
  ListedContainer,
} from "../client/index.ts";
import { withClient } from "./client.ts";
import { client } from "./lazy.ts";
import type { NodeOptions } from "./node.ts";

/** Which container: `{ node, id }`, or `{ id }` alone for one `--tc` tracks (its node is known). */
export type { ContainerRef, InteractiveExec };

/**
 * Daily use of one's containers on other nodes (`p2prc logs|exec|cp|ps|lease|stop|start`), through the
 * same signed client as every other call.
 *
 * @example
 *   const { exitCode, stdout } = await containers.exec(options, { id: "web1" }, ["cat", "/etc/hostname"]);
 *   await containers.renew(options, { node: "alpha", id: "web1" }, 3600);
 */
export const containers = {
  /** The caller's containers on a node (its admin sees all); no node: on every node --tc tracks one on. */
  async list(options: NodeOptions, node?: string): Promise<ListedContainer[]> {
    const c = await client();
    return withClient(options, (deps) => c.listContainers(deps, node));
  },
  /** The container's output; with `follow` the stream stays open until `signal` aborts. */
  async logs(
    options: NodeOptions,
    ref: ContainerRef,
    o: { follow?: boolean; tail?: number; since?: string; signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const c = await client();
    return withClient(options, (deps) => c.containerLogs(deps, ref, o));
  },
  /** Runs a command in the running container: its exit code, stdout and stderr. */
  async exec(
    options: NodeOptions,
    ref: ContainerRef,
    command: string[],
    o: { env?: Record<string, string>; workingDir?: string; timeoutSeconds?: number } = {},
  ): Promise<ExecReply> {
    const c = await client();
    return withClient(options, (deps) => c.execInContainer(deps, ref, command, o));
  },
  /**
   * Runs a command with its stdin attached (`exec -i`), in a terminal with `tty` (`exec -it`): input and
   * output stream both ways as they come; resolves with the command's exit code.
   *
   * @example
   *   const code = await containers.execInteractive(options, { id: "web1" }, ["sh"], {
   *     tty: false, stdin: new Response("echo hi; exit 3\n").body!, output: (_s, d) => process.stdout.write(d),
   *   });
   */
  async execInteractive(options: NodeOptions, ref: ContainerRef, command: string[], o: InteractiveExec) {
    const c = await client();
    return withClient(options, (deps) => c.execInteractive(deps, ref, command, o));
  },
  /** Copies a local file or directory to `path` in the container (`path/` = into that directory). */
  async copyIn(options: NodeOptions, ref: ContainerRef, local: string, path: string) {
    const c = await client();
    return withClient(options, (deps) => c.copyToContainer(deps, ref, local, path));
  },
  /** Copies `path` out of the container to `local` (into it when it is a directory). */
  async copyOut(options: NodeOptions, ref: ContainerRef, path: string, local: string) {
    const c = await client();
    return withClient(options, (deps) => c.copyFromContainer(deps, ref, path, local));
  },
  /** Renews the lease: it ends `ttlSeconds` from now. */
  async renew(options: NodeOptions, ref: ContainerRef, ttlSeconds: number): Promise<ContainerStatus> {
    const c = await client();
    return withClient(options, (deps) => c.renewLease(deps, ref, ttlSeconds));
  },
  /** Stops without removing (SIGKILL after `timeoutSeconds`, default 10). */
  async stop(options: NodeOptions, ref: ContainerRef, timeoutSeconds?: number): Promise<ContainerStatus> {
    const c = await client();
    return withClient(options, (deps) => c.stopContainer(deps, ref, timeoutSeconds));
  },
  /** Starts a stopped container again. */
  async start(options: NodeOptions, ref: ContainerRef): Promise<ContainerStatus> {
    const c = await client();
    return withClient(options, (deps) => c.resumeContainer(deps, ref));
  },
};
