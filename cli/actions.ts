import type { Command } from "./context.ts";

/** A root flag: its type, P2PRC's names and short aliases (they stay working), and its help line. */
export interface FlagDef {
  type: "boolean" | "string";
  alias?: readonly string[];
  description: string;
  valueHint?: string;
  /** A string flag that may be given several times: its value is then every value given, in order. */
  repeat?: boolean;
}

/**
 * One action, kept as data the way citty's `defineCommand` keeps a command: its flag and help line, and
 * either `run` or `pending` (the issue that builds it; until then it answers "not available yet", exit 2).
 * `run` imports its command module when called, so a command pays only for what it uses (the engine
 * client alone costs ~130 ms, and `--ls` start-up is benchmarked).
 */
export type ActionDef = FlagDef & { name: string } & (
    | { run: Command; pending?: undefined }
    | { pending: string; run?: undefined }
  );

/**
 * Every action, in the order they run when several are given (as P2PRC's action.go; the server runs
 * last). The help lists them in this order too, with `--as-server` first. Adding an action is adding an
 * entry here (and its command in `commands/`); see Docs/CLI.md "Adding an action".
 */
export const ACTIONS = [
  {
    name: "set-default-config",
    type: "boolean",
    alias: ["dc", "SetDefaultConfig"],
    description: "Create or complete config.json, node keys and state.db (idempotent)",
    run: async (ctx) => (await import("./commands/config.ts")).setDefaultConfigCommand(ctx),
  },
  {
    name: "update-server-list",
    type: "boolean",
    alias: ["us", "UpdateServerList"],
    description: "Exchange with peers now, then print the IP table",
    run: async (ctx) => (await import("./commands/network-table.ts")).updateServerListCommand(ctx),
  },
  {
    name: "list-servers",
    type: "boolean",
    alias: ["ls", "ListServers"],
    description: "Print the IP table sorted by latency",
    run: async (ctx) => (await import("./commands/network-table.ts")).listServersCommand(ctx),
  },
  {
    name: "add-server",
    type: "string",
    alias: ["as", "AddServer"],
    valueHint: "host:port",
    description: "Add a node to the IP table",
    run: async (ctx) => (await import("./commands/network-table.ts")).addServerCommand(ctx),
  },
  {
    name: "view-images",
    type: "string",
    alias: ["vi", "ViewImages"],
    valueHint: "node",
    description: "List the images a node offers",
    run: async (ctx) => (await import("./commands/client.ts")).viewImagesCommand(ctx),
  },
  {
    name: "remove-vm",
    type: "string",
    alias: ["rm", "RemoveVM"],
    valueHint: "node",
    description: "Remove container --id from a node",
    run: async (ctx) => (await import("./commands/client.ts")).removeVmCommand(ctx),
  },
  {
    name: "exec-container",
    type: "string",
    alias: ["touch", "CreateVM"],
    valueHint: "node",
    description: "Create a container on a node (id, name, host:port or auto); its command after --",
    run: async (ctx) => (await import("./commands/client.ts")).execContainerCommand(ctx),
  },
  {
    name: "specs",
    type: "string",
    alias: ["Specification"],
    valueHint: "node",
    description: "Print a node's specs",
    run: async (ctx) => (await import("./commands/client.ts")).specsCommand(ctx),
  },
  {
    name: "network-interfaces",
    type: "boolean",
    alias: ["ni", "NetworkInterfaces"],
    description: "List this machine's network interfaces",
    run: async (ctx) => (await import("./commands/network.ts")).networkInterfacesCommand(ctx),
  },
  {
    name: "view-plugins",
    type: "boolean",
    alias: ["vp", "ViewPlugins"],
    description: "List installed plugins",
    run: async (ctx) => (await import("./commands/plugins.ts")).viewPluginsCommand(ctx),
  },
  {
    name: "tracked-containers",
    type: "boolean",
    alias: ["tc", "TrackedContainers"],
    description: "List the containers this client created",
    run: async (ctx) => (await import("./commands/client.ts")).trackedCommand(ctx),
  },
  {
    name: "execute-plugin",
    type: "string",
    alias: ["plugin", "ExecutePlugin"],
    valueHint: "name",
    description: "Run a plugin against container or group --id (options as --env NAME=value)",
    run: async (ctx) => (await import("./commands/plugins.ts")).executePluginCommand(ctx),
  },
  {
    name: "create-group",
    type: "boolean",
    alias: ["cgroup", "CreateGroup"],
    description: "Create a container group",
    run: async (ctx) => (await import("./commands/client.ts")).createGroupCommand(ctx),
  },
  {
    name: "group",
    type: "string",
    alias: ["Group"],
    valueHint: "gid",
    description: "Show a group; with --id add a container; with --rmcgroup remove it",
    run: async (ctx) => (await import("./commands/client.ts")).groupCommand(ctx),
  },
  {
    name: "remove-group",
    type: "string",
    alias: ["rmgroup", "RemoveGroup"],
    valueHint: "gid",
    description: "Remove a group",
    run: async (ctx) => (await import("./commands/client.ts")).removeGroupCommand(ctx),
  },
  {
    name: "groups",
    type: "boolean",
    alias: ["Groups"],
    description: "List container groups",
    run: async (ctx) => (await import("./commands/client.ts")).groupsCommand(ctx),
  },
  {
    name: "pull-plugin",
    type: "string",
    alias: ["pp", "PullPlugin"],
    valueHint: "source",
    description: "Install a plugin from a folder, a tar, a git URL or peer:<node>/<name>",
    run: async (ctx) => (await import("./commands/plugins.ts")).pullPluginCommand(ctx),
  },
  {
    name: "remove-plugin",
    type: "string",
    alias: ["rp", "RemovePlugin"],
    valueHint: "name",
    description: "Remove a plugin",
    run: async (ctx) => (await import("./commands/plugins.ts")).removePluginCommand(ctx),
  },
  {
    name: "add-metadata",
    type: "string",
    alias: ["amd", "AddMetaData"],
    valueHint: "text",
    description: "Set this node's metadata and spread it",
    run: async (ctx) => (await import("./commands/network-table.ts")).addMetadataCommand(ctx),
  },
  {
    name: "map-port",
    type: "string",
    alias: ["mp", "MAPPort"],
    valueHint: "port",
    description: "Map a local port (or --id container's) for members through this node's relay",
    run: async (ctx) => (await import("./commands/relay.ts")).mapPortCommand(ctx),
  },
  {
    name: "add-root-node",
    type: "boolean",
    alias: ["arn", "AddRootNode"],
    description: "Add a root node (with --ip and -p) without wiping the table",
    run: async (ctx) => (await import("./commands/network-table.ts")).addRootNodeCommand(ctx),
  },
  {
    name: "host-cluster",
    type: "string",
    valueHint: "name",
    description: "Host a shared cluster (with --users id,…); writes its signed document",
    run: async (ctx) => (await import("./commands/cluster.ts")).hostClusterCommand(ctx),
  },
  {
    name: "cluster-add",
    type: "string",
    valueHint: "id[=label]",
    description: "Add a member to a cluster this node hosts (--role admin, --cluster name)",
    run: async (ctx) => (await import("./commands/cluster.ts")).clusterAddCommand(ctx),
  },
  {
    name: "cluster-remove",
    type: "string",
    valueHint: "id",
    description: "Remove a member from a cluster this node hosts; it loses access everywhere",
    run: async (ctx) => (await import("./commands/cluster.ts")).clusterRemoveCommand(ctx),
  },
  {
    name: "join",
    type: "string",
    valueHint: "file|host:port",
    description: "Join a cluster from its document or from a node that holds it",
    run: async (ctx) => (await import("./commands/cluster.ts")).joinCommand(ctx),
  },
  {
    name: "leave-cluster",
    type: "string",
    valueHint: "name",
    description: "Leave a cluster this node joined: its members lose access here",
    run: async (ctx) => (await import("./commands/cluster.ts")).leaveClusterCommand(ctx),
  },
  {
    name: "clusters",
    type: "boolean",
    description: "List the clusters this node hosts or joined",
    run: async (ctx) => (await import("./commands/cluster.ts")).clustersCommand(ctx),
  },
  {
    name: "view-config",
    type: "boolean",
    alias: ["vc", "ViewConfig"],
    description: "Print the effective config as JSON",
    run: async (ctx) => (await import("./commands/config.ts")).viewConfigCommand(ctx),
  },
  {
    name: "whoami",
    type: "boolean",
    description: "Print this node's id (derived from its Ed25519 key)",
    run: async (ctx) => (await import("./commands/config.ts")).whoamiCommand(ctx),
  },
  {
    name: "doctor",
    type: "boolean",
    description: "Check the container engine: reachable, version, images",
    run: async (ctx) => (await import("./commands/doctor.ts")).doctorCommand(ctx),
  },
  {
    name: "as-server",
    type: "boolean",
    alias: ["s", "Server"],
    description: "Run this node as a server in the foreground",
    run: async (ctx) => (await import("./commands/server.ts")).serverCommand(ctx),
  },
] as const satisfies readonly ActionDef[];

/** The canonical name of an action flag. */
export type ActionName = (typeof ACTIONS)[number]["name"];
